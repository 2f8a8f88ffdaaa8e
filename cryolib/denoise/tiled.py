"""Whole-micrograph inference with a tile network: normalise, overlapping tiles, smooth blending.

DRACO (and the MAE) see fixed ``t``-px tiles (the model's ``img_size``). A micrograph of any
size (odd sizes too) is denoised in four steps:

1. **Normalise** (methods.md, "Denoising inference"; DRACO §5 "Data augmentation"): clip to
   widened percentiles (:func:`clip_widened`: [p_lo − w·(p_hi − p_lo), p_hi + w·(p_hi − p_lo)]
   with p = 0.1 / 99.9 % and w = 0.5, so only outliers such as hot pixels move), then
   (x − mean)/std with the micrograph's own mean and std — as the paper normalises each
   micrograph, and as :class:`~cryolib.processing.triplets.TripletDataset` standardised the
   training tiles (the full images' mean/std, no clipping; the widened clip leaves
   Gaussian-like images untouched). ``stats=(mean, std)`` uses fixed values instead (e.g. a
   checkpoint's ``data_stats``).
2. **Tile** with stride ``t·(1 − overlap)`` (default overlap 0.5) after reflection padding of
   ``t/2`` px at every border (more at the far borders to fit whole tiles), so every image pixel
   lies well inside at least one tile.
3. **Blend** the tile outputs with the separable window w(i) = sin²(π(i + ½)/t) (a Hann window
   shifted by half a pixel, so it is positive everywhere), normalised by the summed weights at
   every pixel. At 50 % overlap the shifted windows already sum to 1 (sin² + cos²), and an
   identity network returns the input exactly: no seam can show.
4. **Restore** the units: y·std + mean.

Optionally, a **shift ensemble** (``offsets``): the tiling is repeated with its origin moved by
(dy, dx) px for every pair of ``offsets`` (reflection padding of that many px at the top and left,
cropped off again), and the passes are averaged with equal weights. A patch network whose output is
blocky on its patch grid (DRACO at our training lengths) gives blocks at different places in each
pass, so the average has no grid; it costs one pass per pair.

A constant image (std = 0) has nothing to denoise and is returned unchanged.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Sequence

import numpy as np
import torch

from cryolib.core.errors import CryolibError

__all__ = ["CLIP_PERCENTILES", "CLIP_WIDEN", "clip_widened", "normalisation_stats", "blend_window",
           "tile_layout", "denoise_tiled", "denoise_shifted", "denoise_image_tiled"]

log = logging.getLogger(__name__)

CLIP_PERCENTILES = (0.1, 99.9)  # % of the micrograph's pixels
CLIP_WIDEN = 0.5  # the clip range is widened by this fraction of the percentile span on each side

TileFn = Callable[[torch.Tensor], torch.Tensor]  # standardised tiles [N, 1, t, t] -> [N, 1, t, t]


def clip_widened(image: np.ndarray, percentiles: tuple[float, float] = CLIP_PERCENTILES,
                 widen: float = CLIP_WIDEN) -> np.ndarray:
    """Clip to [p_lo − widen·span, p_hi + widen·span] with span = p_hi − p_lo (percentiles in %)."""
    lo, hi = np.percentile(image, percentiles)
    span = float(hi - lo)
    return np.clip(image, lo - widen * span, hi + widen * span)


def normalisation_stats(image: np.ndarray) -> tuple[float, float]:
    """(mean, std) of an image in float64 (the micrograph's own standardisation)."""
    return float(np.mean(image, dtype=np.float64)), float(np.std(image, dtype=np.float64))


def blend_window(tile_px: int) -> np.ndarray:
    """Separable weight [t, t]: w(i)·w(j) with w(i) = sin²(π(i + ½)/t), positive everywhere."""
    w = np.sin(np.pi * (np.arange(tile_px) + 0.5) / tile_px) ** 2
    return np.outer(w, w).astype(np.float32)


def tile_layout(n: int, tile_px: int, stride: int) -> tuple[int, int, list[int]]:
    """Along one axis of ``n`` px: (pad_before, pad_after, tile starts in the padded axis)."""
    before = tile_px // 2
    need = n + 2 * before  # padded length at least
    n_tiles = max(1, math.ceil((need - tile_px) / stride) + 1)
    length = (n_tiles - 1) * stride + tile_px
    return before, length - n - before, [i * stride for i in range(n_tiles)]


def _pad(image: np.ndarray, pads: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    """Reflection padding (repeated as numpy does for pads wider than the image); edge for 1-px axes."""
    if min(image.shape) > 1:
        return np.pad(image, pads, mode="reflect")
    return np.pad(image, pads, mode="edge")


@torch.no_grad()
def denoise_tiled(image: np.ndarray, tile_fn: TileFn, tile_px: int, overlap: float = 0.5,
                  batch_size: int = 16) -> np.ndarray:
    """Apply ``tile_fn`` to overlapping ``tile_px`` tiles of a 2-D image and blend (steps 2–3 above).

    ``image`` is already standardised; ``tile_fn`` maps float32 tiles [N, 1, t, t] (CPU) to the
    same shape. Returns float32 (H, W).
    """
    if tile_px < 1:
        raise CryolibError(f"tile_px must be a positive number of px, got {tile_px}")
    if not 0.0 <= overlap < 1.0:
        raise CryolibError(f"overlap must be in [0, 1), got {overlap}")
    stride = max(1, int(round(tile_px * (1.0 - overlap))))
    h, w = image.shape
    top, bottom, rows = tile_layout(h, tile_px, stride)
    left, right, cols = tile_layout(w, tile_px, stride)
    padded = _pad(np.asarray(image, dtype=np.float32), ((top, bottom), (left, right)))
    window = blend_window(tile_px)
    out = np.zeros(padded.shape, np.float64)
    weight = np.zeros(padded.shape, np.float64)
    corners = [(r, c) for r in rows for c in cols]
    for start in range(0, len(corners), max(1, int(batch_size))):
        chunk = corners[start : start + max(1, int(batch_size))]
        tiles = np.stack([padded[r : r + tile_px, c : c + tile_px] for r, c in chunk])[:, None]  # [N, 1, t, t]
        pred = tile_fn(torch.from_numpy(tiles)).float().cpu().numpy()[:, 0]  # [N, t, t]
        if pred.shape != (len(chunk), tile_px, tile_px):
            raise CryolibError(f"the tile network returned {pred.shape}, expected {(len(chunk), tile_px, tile_px)}")
        for (r, c), p in zip(chunk, pred):
            out[r : r + tile_px, c : c + tile_px] += window * p
            weight[r : r + tile_px, c : c + tile_px] += window
    log.debug("tiled %dx%d px into %d tiles of %d px (stride %d)", h, w, len(corners), tile_px, stride)
    return (out / weight)[top : top + h, left : left + w].astype(np.float32)


def denoise_shifted(image: np.ndarray, tile_fn: TileFn, tile_px: int, offsets: Sequence[int] = (0,),
                    overlap: float = 0.5, batch_size: int = 16) -> np.ndarray:
    """:func:`denoise_tiled` averaged over tiling origins moved by (dy, dx) for dy, dx in ``offsets`` (px,
    0 <= offset < ``tile_px``; module docstring). ``offsets=(0,)`` is one plain pass."""
    offsets = sorted({int(o) for o in offsets})
    if not offsets or offsets[0] < 0 or offsets[-1] >= tile_px:
        raise CryolibError(f"shift offsets must be whole px in [0, {tile_px}), got {offsets}")
    x = np.asarray(image, dtype=np.float32)
    total = np.zeros(x.shape, np.float64)
    for dy in offsets:
        for dx in offsets:
            moved = _pad(x, ((dy, 0), (dx, 0)))
            total += denoise_tiled(moved, tile_fn, tile_px, overlap, batch_size)[dy:, dx:]
    return (total / len(offsets) ** 2).astype(np.float32)


def denoise_image_tiled(image: np.ndarray, tile_fn: TileFn, tile_px: int, *, stats: tuple[float, float] | None = None,
                        overlap: float = 0.5, batch_size: int = 16, clip: bool = True,
                        offsets: Sequence[int] = (0,)) -> np.ndarray:
    """Steps 1–4 of the module docstring on a float (H, W) image -> float32 (H, W) in its units.

    ``stats``: fixed (mean, std) instead of the micrograph's own; ``clip``: the widened-percentile clip;
    ``offsets``: the shift ensemble's origins (px; default one plain pass).
    """
    x = np.asarray(image, dtype=np.float64)
    if clip:
        x = clip_widened(x)
    mean, std = normalisation_stats(x) if stats is None else (float(stats[0]), float(stats[1]))
    if not (math.isfinite(mean) and math.isfinite(std)):
        raise CryolibError(f"normalisation statistics must be finite, got mean {mean}, std {std}")
    if std <= 1e-7 * abs(mean) or std == 0.0:
        if stats is not None:
            raise CryolibError(f"normalisation std must be positive, got {std}")
        return np.array(image, dtype=np.float32)  # constant: nothing to denoise
    y = denoise_shifted(((x - mean) / std).astype(np.float32), tile_fn, tile_px, offsets, overlap, batch_size)
    return (y.astype(np.float64) * std + mean).astype(np.float32)
