"""Sizes of the shared ViT encoder/decoder: :class:`ViTConfig` and the one size table, :data:`MODEL_SIZES`.

Cryo-EMMAE's paper model, the CPU profiles' sizes and DRACO's ViT-B/L (and their CPU stand-ins),
looked up by name with :func:`get_config`. The modules themselves are in :mod:`cryolib.models.vit`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cryolib.core.errors import CryolibError

__all__ = ["ViTConfig", "MODEL_SIZES", "get_config"]


@dataclass(frozen=True, kw_only=True)
class ViTConfig:
    """Sizes of one encoder/decoder pair. Lengths in px; widths in channels."""

    name: str = "custom"
    img_size: int  # input side (px); tiles for Cryo-EMMAE, crops for DRACO
    patch_size: int  # patch side (px)
    in_chans: int = 1
    embed_dim: int
    depth: int
    num_heads: int
    decoder_embed_dim: int
    decoder_depth: int
    decoder_num_heads: int
    mlp_ratio: float = 4.0
    cls_token: bool = True
    pos_encode_weight: float = 1.0  # Cryo-EMMAE scales the encoder sin-cos embedding by 0.08
    norm_pix_loss: bool = False
    norm_eps: float = 1e-6  # LayerNorm eps (MAE and Cryo-EMMAE use 1e-6)
    qkv_bias: bool = True

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid (h, w)."""
        return (self.img_size // self.patch_size, self.img_size // self.patch_size)

    @property
    def num_patches(self) -> int:
        """L = h·w."""
        h, w = self.grid_size
        return h * w

    def as_dict(self) -> dict:
        """Plain dict (checkpoints, run.yaml); ``ViTConfig(**d)`` rebuilds it."""
        return dataclasses.asdict(self)


def _size(name: str, **kw) -> ViTConfig:
    return ViTConfig(name=name, **kw)


_DRACO = dict(img_size=256, patch_size=16, cls_token=False, mlp_ratio=4.0, pos_encode_weight=1.0)

#: The one size table (STYLE.md: "keep one size table").
MODEL_SIZES: dict[str, ViTConfig] = {
    # Cryo-EMMAE paper model (cryoemmae.md §2): ~5.1 M parameters.
    "cryoemmae": _size("cryoemmae", img_size=64, patch_size=4, embed_dim=192, depth=14, num_heads=1,
                       decoder_embed_dim=128, decoder_depth=7, decoder_num_heads=8, mlp_ratio=2.0,
                       cls_token=True, pos_encode_weight=0.08),
    # CPU profile (~0.87 M parameters; ~4x faster than the paper's model on 2 cores).
    "cpu-small": _size("cpu-small", img_size=64, patch_size=4, embed_dim=128, depth=6, num_heads=4,
                       decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=4, mlp_ratio=2.0,
                       cls_token=True, pos_encode_weight=0.08),
    # Smoke tests.
    "cpu-tiny": _size("cpu-tiny", img_size=64, patch_size=4, embed_dim=64, depth=2, num_heads=2,
                      decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2, mlp_ratio=2.0,
                      cls_token=True, pos_encode_weight=0.08),
    # DRACO (paper §4; methods.md): ViT-B / ViT-L encoders, 512/8/16 decoder, no cls token.
    "draco-b": _size("draco-b", embed_dim=768, depth=12, num_heads=12,
                     decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, **_DRACO),
    "draco-l": _size("draco-l", embed_dim=1024, depth=24, num_heads=16,
                     decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, **_DRACO),
    "draco-tiny": _size("draco-tiny", embed_dim=128, depth=4, num_heads=4,
                        decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=4, **_DRACO),
    # DRACO on 2 CPU cores (profile "default"): 128 px crops, patch 16 as in the paper, so an 8 x 8 grid.
    "draco-cpu-b": _size("draco-cpu-b", embed_dim=192, depth=6, num_heads=3,  # ~3.2 M parameters
                         decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4, **{**_DRACO, "img_size": 128}),
    "draco-cpu-l": _size("draco-cpu-l", embed_dim=256, depth=8, num_heads=4,  # ~6.9 M parameters
                         decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4, **{**_DRACO, "img_size": 128}),
    "draco-cpu-s": _size("draco-cpu-s", embed_dim=128, depth=4, num_heads=4,  # ~1.1 M; the ablations' size
                         decoder_embed_dim=96, decoder_depth=2, decoder_num_heads=4, **{**_DRACO, "img_size": 128}),
}


def get_config(size: str | ViTConfig, /, **overrides) -> ViTConfig:
    """The named size (or a given config) with ``overrides`` applied; bad names raise CryolibError.

    Overriding sizes without a new ``name`` keeps the old one; pass ``name=`` for a custom size.
    """
    if isinstance(size, ViTConfig):
        cfg = size
    elif size in MODEL_SIZES:
        cfg = MODEL_SIZES[size]
    else:
        raise CryolibError(f"unknown model size {size!r}; choose one of {', '.join(MODEL_SIZES)}")
    fields = {f.name for f in dataclasses.fields(ViTConfig)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise CryolibError(f"unknown ViTConfig field(s) {bad}; valid fields: {', '.join(sorted(fields))}")
    return dataclasses.replace(cfg, **overrides) if overrides else cfg
