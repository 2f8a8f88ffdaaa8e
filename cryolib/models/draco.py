"""DRACO: the denoising-reconstruction autoencoder (DRACO 2024 §4, Eq. 5–10) on the shared ViT.

* Masking (§4): complementary odd/even masks with ratio γ (:mod:`cryolib.models.draco_masks`).
* Encoder (Eq. 5): the ONE :class:`~cryolib.models.vit.ViTEncoder` encodes the odd-visible and the
  even-visible patches separately (one call on the two halves stacked along the batch).
* Merge (Eq. 6): the visible latents are zero-padded onto the patch grid and merged as
  ``z = (1−m°)·z° + (1−mᵉ)·zᵉ + m°·mᵉ·[MASK]``. The merge is done at the decoder width, after the
  decoder's linear ``embed``: each patch takes exactly one of the three terms, so merging before or
  after a per-token linear map is the same, and [MASK] is then the decoder's ``mask_token`` (shared
  with a plain-MAE warm-up).
* Decoder (Eq. 7, §5 "Pre-training details"): the shared :class:`~cryolib.models.vit.ViTDecoder`
  with :class:`DracoNeck`, the residual 3-layer conv neck on the decoder's token grid, then the
  linear head to p·p pixels.
* Loss (Eq. 8–10): :func:`draco_loss`.
* Warm-up (§5: 200 epochs of plain MAE, then DRACO): the loop does not tell an objective its
  epoch, so the warm-up is a separate MAE run whose weights initialise DRACO
  (:func:`init_from_mae`, or ``draco_objective(init_from=checkpoint)``).

Units: the three images of a triplet must be in ONE set of units in which each is an estimate
of the same signal. :class:`cryolib.processing.triplets.TripletDataset` makes it so: it multiplies
each half by its dose ratio (≈ 2, since full = odd + even in counts) and standardises all three
with the full images' mean and std. So no target is rescaled here: the model predicts the
full-dose image everywhere (the even/odd half on single-visible patches, the full image on
patches masked in both), and :func:`denoise_tiles` returns full-dose units.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn as nn
from timm.layers import LayerNorm2d

from cryolib.core.errors import CryolibError
from cryolib.core.files import load_torch_file
from cryolib.models.draco_masks import DracoMasks, complementary_masking, merge_latents, scatter_to_grid, visible_per_half
from cryolib.models.objectives import OptimConfig
from cryolib.models.vit import ViTConfig, ViTDecoder, ViTEncoder, get_config, patchify, unpatchify

log = logging.getLogger(__name__)

__all__ = [
    "DracoNeck",
    "DracoOutput",
    "DracoModel",
    "draco_loss",
    "DRACO_OPTIM",
    "DracoObjective",
    "draco_objective",
    "init_from_mae",
    "denoise_tiles",
]

#: DRACO's optimiser. The paper gives none beyond "following the MAE framework" (§4) and batch
#: 4096 (§5), and methods.md lists none, so this is MAE's recipe (He et al. 2022, App. A.1):
#: AdamW(0.9, 0.95), weight decay 0.05, base lr 1.5e-4 (· batch/256), 40 warm-up epochs, cosine to 0.
DRACO_OPTIM = OptimConfig(base_lr=1.5e-4, weight_decay=0.05, betas=(0.9, 0.95), warmup_epochs=40, min_lr=0.0)


class DracoNeck(nn.Module):
    """DRACO's residual decoder neck on the token grid [N, Dd, h, w] -> [N, Dd, h, w] (methods.md).

    x + LN2d(Conv1×1(GELU(LN2d(Conv3×3(GELU(LN2d(Conv1×1(x)))))))) with widths Dd→Dd/2→Dd/2→Dd
    (512→256→256→512 in the paper). The last LN2d is zero-initialised: the neck starts as identity.
    """

    def __init__(self, dim: int, hidden: int | None = None, eps: float = 1e-6):
        super().__init__()
        hidden = hidden or max(1, dim // 2)
        self.conv1, self.norm1 = nn.Conv2d(dim, hidden, 1, bias=False), LayerNorm2d(hidden, eps=eps)
        self.conv2, self.norm2 = nn.Conv2d(hidden, hidden, 3, padding=1, bias=False), LayerNorm2d(hidden, eps=eps)
        self.conv3, self.norm3 = nn.Conv2d(hidden, dim, 1, bias=False), LayerNorm2d(dim, eps=eps)
        self.act = nn.GELU()
        nn.init.zeros_(self.norm3.weight)
        nn.init.zeros_(self.norm3.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.act(self.norm2(self.conv2(y)))
        return x + self.norm3(self.conv3(y))


class DracoOutput(NamedTuple):
    """One DRACO forward: ``pred`` [N, L, p²C] for every patch; ``mask_odd``/``mask_even`` [N, L] (1 = masked)."""

    pred: torch.Tensor
    mask_odd: torch.Tensor
    mask_even: torch.Tensor


class DracoModel(nn.Module):
    """Shared ViT encoder + decoder with :class:`DracoNeck` (DRACO §4). No cls token.

    Parameter names match :class:`~cryolib.models.vit.MaskedAutoencoder` (``encoder.*``,
    ``decoder.*``) plus ``decoder.neck.*``, so MAE weights load into it (:func:`init_from_mae`).
    """

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        if cfg.cls_token:
            raise CryolibError(f"DRACO has no cls token (§4); model {cfg.name!r} has cls_token=True: "
                               "use a draco-* size or pass cls_token=False")
        self.cfg = cfg
        self.encoder = ViTEncoder(cfg)
        self.decoder = ViTDecoder(cfg, neck=DracoNeck(cfg.decoder_embed_dim, eps=cfg.norm_eps))

    def _length(self, imgs: torch.Tensor) -> int:
        p = self.cfg.patch_size
        if imgs.ndim != 4 or imgs.shape[-2] % p or imgs.shape[-1] % p:
            raise CryolibError(f"DRACO needs images [N, C, H, W] with H and W multiples of the {p} px patch; "
                               f"got {tuple(imgs.shape)}")
        return (imgs.shape[-2] // p) * (imgs.shape[-1] // p)

    def forward_encoder(self, odd: torch.Tensor, even: torch.Tensor, masks: DracoMasks
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 5: the same encoder on each half's visible patches -> latents [N, K, D] (odd, even)."""
        x = torch.cat([odd, even], dim=0)  # [2N, C, H, W]
        ids = torch.cat([masks.ids_odd, masks.ids_even], dim=0)  # [2N, K]
        latent = self.encoder(x, ids)  # [2N, K, D] (position added before the gather)
        return latent[: odd.shape[0]], latent[odd.shape[0] :]

    def forward_decoder(self, latent_odd: torch.Tensor, latent_even: torch.Tensor, masks: DracoMasks) -> torch.Tensor:
        """Eq. 5 zero padding + Eq. 6 merge + Eq. 7 decoder (with neck) -> pred [N, L, p²C]."""
        length = masks.mask_odd.shape[1]
        z_odd = scatter_to_grid(self.decoder.embed(latent_odd), masks.ids_odd, length)  # [N, L, Dd]
        z_even = scatter_to_grid(self.decoder.embed(latent_even), masks.ids_even, length)  # [N, L, Dd]
        z = merge_latents(z_odd, z_even, masks.mask_odd, masks.mask_even, self.decoder.mask_token)  # Eq. 6
        return self.decoder.forward_tokens(z)  # [N, L, p²C]

    def forward(self, odd: torch.Tensor, even: torch.Tensor, mask_ratio: float = 0.75,
                generator: torch.Generator | None = None) -> DracoOutput:
        """odd, even [N, C, H, W] -> :class:`DracoOutput` (fresh complementary masks each call)."""
        if odd.shape != even.shape:
            raise CryolibError(f"odd {tuple(odd.shape)} and even {tuple(even.shape)} images differ in shape")
        length = self._length(odd)
        masks = complementary_masking(odd.shape[0], length, mask_ratio, odd.device, generator)
        latent_odd, latent_even = self.forward_encoder(odd, even, masks)
        pred = self.forward_decoder(latent_odd, latent_even, masks)
        return DracoOutput(pred, masks.mask_odd, masks.mask_even)

    def denoise(self, imgs: torch.Tensor) -> torch.Tensor:
        """All patches visible, no mask token, one pass (DRACO §5.2): [N, C, H, W] -> [N, C, H, W]."""
        self._length(imgs)
        z = self.decoder.embed(self.encoder(imgs))  # [N, L, Dd]
        pred = self.decoder.forward_tokens(z)  # [N, L, p²C]
        p = self.cfg.patch_size
        return unpatchify(pred, p, self.cfg.in_chans, (imgs.shape[-2] // p, imgs.shape[-1] // p))

    @torch.no_grad()
    def embed(self, imgs: torch.Tensor) -> torch.Tensor:
        """Encoder tokens of the whole image on the patch grid: [N, C, H, W] -> [N, h, w, D]."""
        self._length(imgs)
        tokens = self.encoder(imgs)  # [N, L, D]
        h, w = imgs.shape[-2] // self.cfg.patch_size, imgs.shape[-1] // self.cfg.patch_size
        return tokens.reshape(imgs.shape[0], h, w, -1)


def _patch_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-patch mean squared error: [N, L, p²C] x2 -> [N, L]."""
    return ((pred.float() - target.float()) ** 2).mean(dim=-1)


def draco_loss(
    pred: torch.Tensor,
    full: torch.Tensor,
    odd: torch.Tensor,
    even: torch.Tensor,
    mask_odd: torch.Tensor,
    mask_even: torch.Tensor,
    patch_size: int,
    n2n: bool = True,
    recon: bool = True,
    recon_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """DRACO Eq. 8–10: L = L_N2N + λ·L_recon -> (loss, {"loss_n2n", "loss_recon"}).

    ``pred`` [N, L, p²C]; ``full``/``odd``/``even`` [N, C, H, W] in one set of units (module
    docstring); masks [N, L] with 1 = masked. L_N2N (Eq. 8): on patches visible only in odd the
    target is the EVEN patch, and vice versa. L_recon (Eq. 9): on patches masked in both the target
    is the FULL patch. Each term is the per-patch pixel MSE averaged over its patches (0 when it
    has none). ``n2n``/``recon`` switch a term out of the loss (Table 6); both are always logged.
    """
    if not (n2n or recon):
        raise CryolibError("DRACO needs at least one loss term: n2n or recon")
    only_odd = (1.0 - mask_odd) * mask_even  # [N, L] visible in odd only -> target even
    only_even = (1.0 - mask_even) * mask_odd  # [N, L] visible in even only -> target odd
    both = mask_odd * mask_even  # [N, L] masked in both -> target full
    err_n2n = _patch_mse(pred, patchify(even, patch_size)) * only_odd + _patch_mse(pred, patchify(odd, patch_size)) * only_even
    loss_n2n = err_n2n.sum() / (only_odd + only_even).sum().clamp_min(1.0)
    loss_recon = (_patch_mse(pred, patchify(full, patch_size)) * both).sum() / both.sum().clamp_min(1.0)
    loss = (loss_n2n if n2n else 0.0) + (recon_weight * loss_recon if recon else 0.0)
    return loss, {"loss_n2n": float(loss_n2n.detach()), "loss_recon": float(loss_recon.detach())}


def _triplet(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(full, odd, even) of a batch: a dict with those keys, or a 3-tuple in that order."""
    if isinstance(batch, dict):
        missing = [k for k in ("full", "odd", "even") if k not in batch]
        if missing:
            raise CryolibError(f"a DRACO batch needs keys full, odd, even; missing {missing} "
                               "(use cryolib.processing.triplets.TripletDataset)")
        return batch["full"], batch["odd"], batch["even"]
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        return batch[0], batch[1], batch[2]
    raise CryolibError(f"a DRACO batch is a dict {{full, odd, even}} of [N, 1, t, t] tensors; got {type(batch).__name__}")


class DracoObjective:
    """DRACO pretraining (§4) behind the :class:`~cryolib.models.objectives.Objective` protocol.

    Batches: ``{"full", "odd", "even"}`` of [N, 1, t, t] (:class:`~cryolib.processing.triplets.TripletDataset`).
    ``init_from``: a checkpoint of a plain-MAE warm-up run on the same size, loaded by
    :meth:`build_model` through :func:`init_from_mae` (§5's warm-up; see that function).
    """

    def __init__(self, model: str | ViTConfig = "draco-tiny", mask_ratio: float = 0.75, n2n: bool = True,
                 recon: bool = True, recon_weight: float = 1.0, optim: OptimConfig | None = None,
                 init_from: str | os.PathLike | None = None, name: str = "draco"):
        self.name = name
        self.model_config = get_config(model)
        if self.model_config.cls_token:
            raise CryolibError(f"DRACO has no cls token (§4); model {self.model_config.name!r} has one")
        self.mask_ratio = float(mask_ratio)
        visible_per_half(self.model_config.num_patches, self.mask_ratio)  # raises for γ outside [0.5, 1)
        if not (n2n or recon):
            raise CryolibError("DRACO needs at least one loss term: pass n2n=True or recon=True")
        if not (np.isfinite(recon_weight) and recon_weight >= 0):
            raise CryolibError(f"recon_weight must be a finite number >= 0, got {recon_weight}")
        self.n2n, self.recon, self.recon_weight = bool(n2n), bool(recon), float(recon_weight)
        self.optim = optim if optim is not None else DRACO_OPTIM
        self.init_from = None if init_from is None else str(init_from)

    @property
    def model_name(self) -> str:
        """The size name in MODEL_SIZES (or "custom")."""
        return self.model_config.name

    def build_model(self) -> DracoModel:
        model = DracoModel(self.model_config)
        if self.init_from is not None:
            init_from_mae(model, self.init_from)
        return model

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. 10 on one batch; parts ``{"loss_n2n", "loss_recon"}``. ``model`` may be DDP-wrapped."""
        full, odd, even = _triplet(batch)
        out = model(odd, even, self.mask_ratio)
        return draco_loss(out.pred, full, odd, even, out.mask_odd, out.mask_even, self.model_config.patch_size,
                          n2n=self.n2n, recon=self.recon, recon_weight=self.recon_weight)

    def optimizer_config(self) -> OptimConfig:
        return self.optim

    def describe(self) -> dict:
        return {
            "name": self.name,
            "model": self.model_name,
            "model_config": self.model_config.as_dict(),
            "mask_ratio": self.mask_ratio,
            "n2n": self.n2n,
            "recon": self.recon,
            "recon_weight": self.recon_weight,
            "init_from": self.init_from,
            "optim": dataclasses.asdict(self.optim),
        }

    def __repr__(self) -> str:
        return (f"DracoObjective(model={self.model_name!r}, mask_ratio={self.mask_ratio}, n2n={self.n2n}, "
                f"recon={self.recon}, recon_weight={self.recon_weight})")


def draco_objective(model: str | ViTConfig = "draco-tiny", mask_ratio: float = 0.75, n2n: bool = True,
                    recon: bool = True, recon_weight: float = 1.0, init_from: str | os.PathLike | None = None,
                    optim: OptimConfig | None = None) -> DracoObjective:
    """DRACO's recipe (§4–5): γ = 0.75, L = L_N2N + 1.0·L_recon, optimiser :data:`DRACO_OPTIM`."""
    return DracoObjective(model, mask_ratio=mask_ratio, n2n=n2n, recon=recon, recon_weight=recon_weight,
                          optim=optim, init_from=init_from)


#: ViTConfig fields that may differ between the MAE warm-up and DRACO (they do not shape weights).
_FREE_FIELDS = ("name", "norm_pix_loss")


def _read_state(path: str | os.PathLike) -> tuple[dict, dict | None]:
    """(state dict, model_config or None) from a cryolib checkpoint or a bare state dict file."""
    obj = load_torch_file(path, "MAE warm-up checkpoint", "run the warm-up first or fix the path", "checkpoint")
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return obj["model"], obj.get("model_config")
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, None
    raise CryolibError(f"{path} holds neither a cryolib checkpoint nor a state dict")


def init_from_mae(model: DracoModel, mae_checkpoint_path: str | os.PathLike) -> DracoModel:
    """Load a plain-MAE warm-up's encoder/decoder weights into ``model`` (DRACO §5 warm-up); returns it.

    The warm-up is a separate run of the one loop, e.g. stage 1
    ``train(mae_objective("draco-tiny"), triplets.full_view(), cfg_a)`` (MAE on the full images),
    stage 2 ``train(draco_objective("draco-tiny", init_from=cfg_a.out_dir / "checkpoint.pt"), triplets, cfg_b)``.
    Every tensor must match by name and shape except the neck (``decoder.neck.*``), which MAE lacks
    and which keeps its identity initialisation; a DRACO checkpoint loads whole. The sizes must
    agree on every ViTConfig field but ``name`` and ``norm_pix_loss``; anything else raises.
    """
    state, cfg = _read_state(mae_checkpoint_path)
    if cfg is not None:
        have, want = dict(cfg), model.cfg.as_dict()
        diff = {k: (have.get(k), want[k]) for k in want if k not in _FREE_FIELDS and have.get(k) != want[k]}
        if diff:
            raise CryolibError(f"{mae_checkpoint_path}: the MAE model differs from DRACO's in (checkpoint, DRACO) "
                               f"{diff}; warm up with the same size (e.g. mae_objective({model.cfg.name!r}))")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise CryolibError(f"{mae_checkpoint_path}: weights do not fit the DRACO model ({err})") from err
    bad = [k for k in missing if not k.startswith("decoder.neck.")]
    if unexpected or bad:
        raise CryolibError(f"{mae_checkpoint_path}: unexpected tensors {list(unexpected)[:5]}, missing tensors "
                           f"{bad[:5]}; is it a MAE of the same size without a cls token?")
    log.info("initialised DRACO from %s (%d tensors; neck %s)", mae_checkpoint_path, len(state),
             "kept" if missing else "loaded")
    return model


@torch.no_grad()
def denoise_tiles(model: DracoModel, tiles: torch.Tensor | np.ndarray, mean: float = 0.0, std: float = 1.0,
                  batch_size: int = 64) -> torch.Tensor | np.ndarray:
    """Zero-shot DRACO denoising of tiles [N, 1, t, t] (or [N, t, t]), all patches visible (§5.2).

    Tiles are standardised as (x − mean)/std (the training ``stats``; the defaults mean the tiles
    already are), denoised in batches on the model's device, and mapped back: the output has the
    input's shape, type (tensor or array) and units. t must be a multiple of the patch size.
    """
    if not std > 0:
        raise CryolibError(f"std must be positive, got {std}")
    is_numpy = isinstance(tiles, np.ndarray)
    x = torch.from_numpy(np.asarray(tiles, dtype=np.float32)) if is_numpy else tiles
    squeeze = x.ndim == 3
    x = x.unsqueeze(1) if squeeze else x
    if x.ndim != 4 or x.shape[1] != model.cfg.in_chans:
        raise CryolibError(f"tiles must be [N, {model.cfg.in_chans}, t, t] or [N, t, t]; got {tuple(tiles.shape)}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = [model.denoise(((chunk.float() - mean) / std).to(device)).float().cpu() * std + mean
               for chunk in x.split(max(1, int(batch_size)))]
    finally:
        model.train(was_training)
    y = torch.cat(out).to(x.dtype)
    y = y.squeeze(1) if squeeze else y
    return y.numpy() if is_numpy else y
