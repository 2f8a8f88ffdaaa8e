"""The one ViT encoder/decoder shared by the MAE objectives and (later) DRACO.

Built on timm's ``PatchEmbed``, ``Block`` and ``build_sincos2d_pos_embed`` (STYLE.md: reuse,
do not rewrite attention). Written from the papers, not copied from facebookresearch/mae:

* He et al. 2022 (MAE) §3: random masking, encoder on visible patches only, a light decoder
  with a shared learned mask token, MSE on masked patches (optionally per-patch normalised).
* Cryo-EMMAE (Zamanos et al. 2024) §3.2 and ``reference/cryoemmae.md`` §2: 64 px tiles,
  patch 4, encoder 192/14/1, decoder 128/7/8, MLP ratio 2, cls token, encoder position
  embedding scaled by 0.08.
* DRACO (2024) §4: patch 16, no cls token; its decoder input merges odd- and even-visible
  tokens plus mask tokens, so :class:`ViTDecoder` exposes ``embed`` / ``mask_token`` /
  ``forward_tokens`` and a ``neck`` hook.

Shapes: N batch, C channels, L = h·w patches, D encoder width, Dd decoder width, p patch (px).
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn
from timm.layers import PatchEmbed, build_sincos2d_pos_embed
from timm.models.vision_transformer import Block

from cryolib.core.errors import CryolibError
from cryolib.models.vit_sizes import MODEL_SIZES, ViTConfig, get_config  # noqa: F401  (re-exported)

__all__ = [
    "ViTConfig",
    "MODEL_SIZES",
    "get_config",
    "ViTEncoder",
    "ViTDecoder",
    "MaskedAutoencoder",
    "build_model",
    "patchify",
    "unpatchify",
    "random_masking",
    "sincos_pos_embed",
]


# ---------------------------------------------------------------------------------------------
# Pure helpers: patches, masking, position embedding
# ---------------------------------------------------------------------------------------------


def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, L, p·p·C], row-major patches, each flattened as (py, px, c)."""
    n, c, h, w = imgs.shape
    if h % p or w % p:
        raise CryolibError(f"image of {h}x{w} px is not a multiple of the patch size {p} px")
    gh, gw = h // p, w // p
    x = imgs.reshape(n, c, gh, p, gw, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # [N, gh, gw, p, p, C]
    return x.reshape(n, gh * gw, p * p * c)


def unpatchify(x: torch.Tensor, p: int, channels: int = 1, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Inverse of :func:`patchify`: [N, L, p·p·C] -> [N, C, h·p, w·p]; square grid unless given."""
    n, length, _ = x.shape
    if grid is None:
        side = int(round(length**0.5))
        if side * side != length:
            raise CryolibError(f"{length} patches do not form a square grid; pass grid=(h, w)")
        grid = (side, side)
    gh, gw = grid
    x = x.reshape(n, gh, gw, p, p, channels).permute(0, 5, 1, 3, 2, 4)  # [N, C, gh, p, gw, p]
    return x.reshape(n, channels, gh * p, gw * p)


def random_masking(
    n: int,
    length: int,
    mask_ratio: float,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE §3 random masking by argsort of uniform noise.

    Returns ``ids_keep`` [N, L_keep] (visible patch indices, L_keep = round(L·(1−r))),
    ``mask`` [N, L] (1 = masked, in the original patch order) and ``ids_restore`` [N, L]
    (position of each original patch in the shuffled order).
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise CryolibError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    len_keep = int(round(length * (1.0 - mask_ratio)))
    noise = torch.rand(n, length, device=device, generator=generator)  # [N, L]
    ids_shuffle = torch.argsort(noise, dim=1)  # [N, L] ascending: the first len_keep are kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)  # [N, L]
    ids_keep = ids_shuffle[:, :len_keep]  # [N, L_keep]
    mask = torch.ones(n, length, device=device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # [N, L] back in patch order
    return ids_keep, mask, ids_restore


def sincos_pos_embed(grid: tuple[int, int], dim: int, weight: float = 1.0) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding [1, h·w, dim] (timm), scaled by ``weight``."""
    pe = build_sincos2d_pos_embed(list(grid), dim=dim, temperature=10000.0)  # [h·w, dim]
    return (pe * weight).unsqueeze(0)


def _gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """x [N, L, D], ids [N, K] -> [N, K, D]."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _init_weights(module: nn.Module) -> None:
    """Xavier-uniform linears, zero biases, unit LayerNorms (MAE's initialisation)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# ---------------------------------------------------------------------------------------------
# Encoder and decoder
# ---------------------------------------------------------------------------------------------


class ViTEncoder(nn.Module):
    """Patch embedding + fixed sin-cos position (× ``pos_encode_weight``) + optional cls + Blocks + LN."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        norm = functools.partial(nn.LayerNorm, eps=cfg.norm_eps)  # timm passes device/dtype kwargs
        self.patch_embed = PatchEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, d, strict_img_size=False)
        self.register_buffer("pos_embed", sincos_pos_embed(cfg.grid_size, d, cfg.pos_encode_weight), persistent=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.cls_token else None
        self.blocks = nn.ModuleList(
            Block(d, cfg.num_heads, cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, norm_layer=norm) for _ in range(cfg.depth)
        )
        self.norm = norm(d)
        self.apply(_init_weights)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # conv as a linear layer
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)

    @property
    def num_prefix_tokens(self) -> int:
        """1 with a cls token, else 0."""
        return int(self.cls_token is not None)

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> position-embedded patch tokens [N, L, D] (no cls, before the blocks)."""
        tokens = self.patch_embed(x)  # [N, L, D]
        grid = (x.shape[-2] // self.cfg.patch_size, x.shape[-1] // self.cfg.patch_size)
        pos = self.pos_embed
        if grid != self.cfg.grid_size:  # another input size: build the embedding for its grid
            pos = sincos_pos_embed(grid, self.cfg.embed_dim, self.cfg.pos_encode_weight).to(tokens)
        return tokens + pos

    def forward(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """[N, C, H, W] -> tokens [N, P + L_keep, D] after the final LN (P = 1 with cls first).

        ``ids_keep`` [N, L_keep] selects the visible patches before the blocks; None keeps all.
        """
        x = self.patch_tokens(x)  # [N, L, D]
        if ids_keep is not None:
            x = _gather_tokens(x, ids_keep)  # [N, L_keep, D]
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # cls has zero position
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class ViTDecoder(nn.Module):
    """MAE decoder: Linear(D→Dd), mask token, fixed sin-cos position, Blocks, LN, [neck], head.

    DRACO builds its own token sequence: ``embed`` the visible tokens of each half, merge them with
    ``mask_token``, then call ``forward_tokens``. ``neck`` (optional) maps the grid image
    [N, Dd, h, w] -> [N, Dd, h, w] after the final LN and owns its residual connection.
    """

    def __init__(self, cfg: ViTConfig, neck: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        dd = cfg.decoder_embed_dim
        self.decoder_embed = nn.Linear(cfg.embed_dim, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.register_buffer("pos_embed", sincos_pos_embed(cfg.grid_size, dd, 1.0), persistent=False)
        norm = functools.partial(nn.LayerNorm, eps=cfg.norm_eps)
        self.blocks = nn.ModuleList(
            Block(dd, cfg.decoder_num_heads, cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, norm_layer=norm)
            for _ in range(cfg.decoder_depth)
        )
        self.norm = norm(dd)
        self.pred = nn.Linear(dd, cfg.patch_size**2 * cfg.in_chans)
        self.apply(_init_weights)
        nn.init.normal_(self.mask_token, std=0.02)
        self.neck = neck  # set after init so that the neck keeps its own initialisation

    def embed(self, latent: torch.Tensor) -> torch.Tensor:
        """Encoder tokens [N, T, D] -> decoder width [N, T, Dd]."""
        return self.decoder_embed(latent)

    def fill_masked(self, visible: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Visible decoder tokens [N, L_keep, Dd] + mask tokens -> [N, L, Dd] in patch order."""
        n, length = ids_restore.shape
        masks = self.mask_token.expand(n, length - visible.shape[1], -1)  # [N, L - L_keep, Dd]
        shuffled = torch.cat([visible, masks], dim=1)  # [N, L, Dd] in shuffled order
        return _gather_tokens(shuffled, ids_restore)  # [N, L, Dd]

    def forward_tokens(self, z: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Full patch sequence z [N, L, Dd] (+ optional prefix [N, P, Dd], e.g. cls) -> [N, L, p²C]."""
        n, length, dd = z.shape
        pos = self.pos_embed if length == self.cfg.num_patches else sincos_pos_embed(self._grid(length), dd).to(z)
        x = z + pos
        n_prefix = 0 if prefix is None else prefix.shape[1]
        if prefix is not None:
            x = torch.cat([prefix, x], dim=1)  # prefix tokens carry a zero position
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)[:, n_prefix:]  # [N, L, Dd]
        if self.neck is not None:
            h, w = self._grid(length)
            img = x.transpose(1, 2).reshape(n, dd, h, w)  # [N, Dd, h, w]
            x = self.neck(img).reshape(n, dd, length).transpose(1, 2)  # [N, L, Dd]
        return self.pred(x)  # [N, L, p²C]

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder output [N, P + L_keep, D] (+ ``ids_restore`` [N, L] when masked) -> [N, L, p²C]."""
        x = self.embed(latent)  # [N, P + L_keep, Dd]
        n_prefix = int(self.cfg.cls_token)
        prefix, visible = x[:, :n_prefix], x[:, n_prefix:]
        z = visible if ids_restore is None else self.fill_masked(visible, ids_restore)  # [N, L, Dd]
        return self.forward_tokens(z, prefix if n_prefix else None)

    def _grid(self, length: int) -> tuple[int, int]:
        if length == self.cfg.num_patches:
            return self.cfg.grid_size
        side = int(round(length**0.5))
        if side * side != length:
            raise CryolibError(f"decoder got {length} tokens, which is not a square patch grid")
        return (side, side)


# ---------------------------------------------------------------------------------------------
# The masked autoencoder
# ---------------------------------------------------------------------------------------------


class MaskedAutoencoder(nn.Module):
    """MAE (He et al. 2022) as used by Cryo-EMMAE §3.2: encoder, decoder, masked-patch MSE."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = ViTEncoder(cfg)
        self.decoder = ViTDecoder(cfg)

    def forward_encoder(
        self, imgs: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """imgs [N, C, H, W] -> latent [N, P + L_keep, D], mask [N, L], ids_restore [N, L]."""
        h, w = imgs.shape[-2] // self.cfg.patch_size, imgs.shape[-1] // self.cfg.patch_size
        ids_keep, mask, ids_restore = random_masking(imgs.shape[0], h * w, mask_ratio, imgs.device, generator)
        return self.encoder(imgs, ids_keep), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent [N, P + L_keep, D], ids_restore [N, L] -> predicted patches [N, L, p²C]."""
        return self.decoder(latent, ids_restore)

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MAE §3 loss: mean squared error per patch, averaged over the masked patches only.

        With ``norm_pix_loss`` each target patch becomes (t − mean)/sqrt(var + 1e-6).
        """
        target = patchify(imgs, self.cfg.patch_size)  # [N, L, p²C]
        if self.cfg.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        per_patch = ((pred.float() - target.float()) ** 2).mean(dim=-1)  # [N, L]
        return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)

    def forward(
        self, imgs: torch.Tensor, mask_ratio: float = 0.75, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """imgs [N, C, H, W] -> (scalar loss, pred [N, L, p²C], mask [N, L])."""
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, generator)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask

    @torch.no_grad()
    def embed(self, imgs: torch.Tensor) -> torch.Tensor:
        """The Cryo-EMMAE embedding image (cryoemmae.md §4): [N, C, H, W] -> [N, h, w, D].

        All patches visible, tokens after the encoder's final LayerNorm, cls dropped, laid out on
        the patch grid (h = H/p, w = W/p). Deterministic (no masking) and without autograd.
        """
        tokens = self.encoder(imgs)[:, self.encoder.num_prefix_tokens :]  # [N, L, D]
        h, w = imgs.shape[-2] // self.cfg.patch_size, imgs.shape[-1] // self.cfg.patch_size
        return tokens.reshape(imgs.shape[0], h, w, -1)  # [N, h, w, D]


def build_model(size: str | ViTConfig, /, **overrides) -> MaskedAutoencoder:
    """A freshly initialised :class:`MaskedAutoencoder` of a named size from :data:`MODEL_SIZES`."""
    return MaskedAutoencoder(get_config(size, **overrides))
