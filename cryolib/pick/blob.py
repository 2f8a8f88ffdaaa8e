"""A template-free blob picker: Laplacian or Difference of Gaussians at the particle scale.

The classical baselines that Cryo-EMMAE §2 cites (LoG, Woolford et al. 2007; DoG,
Voss et al. 2009; cryoSPARC's blob picker), as one single-scale detector:

1. Downsample (area averaging) so that the particle diameter is about
   ``INTERNAL_DIAMETER_PX`` px when it is larger than ``MAX_INTERNAL_DIAMETER_PX``;
   this bounds the cost on big micrographs. Coordinates are mapped back to input px.
2. Invert (particles are dark on a light background at under-focus) and
   standardise robustly: (x − median) / (1.4826·MAD).
3. Filter with the scale-normalised −σ²∇²G (LoG) or its DoG approximation at
   ``σ = d / (2√2)`` (:func:`blob_sigma`); the Gaussian is the low-pass.
4. Standardise the response the same robust way, so a score is in units of the
   response's noise std and one threshold means the same on every micrograph.
5. Local maxima at least ``min_distance_frac·d`` apart (non-maximum suppression),
   not within ``exclude_border_frac·d`` of the border, refined to sub-pixel by a
   parabola through the 3×3 neighbourhood.

Registered as the ``blob`` picker (:class:`BlobMethod`, :mod:`cryolib.pick.registry`), at
``DEFAULT_THRESHOLD`` without a reference.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.feature import peak_local_max
from tqdm.auto import tqdm

from cryolib.core.errors import CryolibError
from cryolib.io.micrographs import micrograph_stem, read_micrograph
from cryolib.pick.registry import CheckedReference, Picker, register_picker

__all__ = ["DEFAULT_THRESHOLD", "INTERNAL_DIAMETER_PX", "MAX_INTERNAL_DIAMETER_PX", "METHODS",
           "blob_sigma", "blob_response", "pick_blobs", "BlobMethod"]

log = logging.getLogger(__name__)

# Score (response noise stds) for "blob at a fixed threshold", measured on synthetic
# data like that of tests/test_pick_blob.py: on pure white noise (1024², d = 12–48 px) about 2 %
# of the local maxima score above 3.5 (0.3 % above 4); dark disks with contrast = noise
# std (per-pixel SNR 1) score 3–6 (d = 12, packed 2d apart) to 10–20 (d ≥ 24, sparse).
# 3.5 keeps ≥ 97 % of those disks at precision ≥ 0.96; the PR sweep (threshold=None) is
# the fair comparison on real data.
DEFAULT_THRESHOLD = 3.5
INTERNAL_DIAMETER_PX = 20.0  # the particle diameter after downsampling (px)
MAX_INTERNAL_DIAMETER_PX = 24.0  # downsample only when the diameter exceeds this (px)
METHODS = ("log", "dog")
_DOG_RATIO = 1.6  # σ₂/σ₁ of the DoG (Marr–Hildreth's approximation of the LoG)
_MAD_TO_STD = 1.4826  # std of a normal distribution per unit median absolute deviation
_STATS_PIXELS = 1 << 20  # pixels used for the robust statistics


def blob_sigma(diameter_px: float) -> float:
    """Gaussian σ (px) at which the scale-normalised LoG responds most to a disk of ``diameter_px``.

    For a disk of radius r, L(0, t) = 1 − exp(−r²/2t) at the centre with t = σ²;
    since ∂ₜL = ½∇²L, σ²∇²L = 2t·∂ₜL = −(r²/t)·exp(−r²/2t), whose magnitude peaks
    at t = r²/2, i.e. σ = r/√2 = d/(2√2).
    """
    return float(diameter_px) / (2.0 * math.sqrt(2.0))


def _robust_standardise(x: np.ndarray) -> np.ndarray | None:
    """(x − median) / (1.4826·MAD), falling back to the std; None for a constant array.

    The median and MAD come from at most ~1 M pixels on a regular stride (for speed).
    """
    stride = max(1, int(math.sqrt(x.size / _STATS_PIXELS)))
    sample = x[::stride, ::stride]
    med = float(np.median(sample))
    spread = _MAD_TO_STD * float(np.median(np.abs(sample - med)))
    if spread <= 0:
        spread = float(np.std(x))
    if spread <= 0 or not np.isfinite(spread):
        return None
    return (x - med) / spread


def _validate(image: np.ndarray, diameter_px: float, method: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < 3:
        raise CryolibError(f"the blob picker needs a 2-D image of at least 3x3 px, got shape {image.shape}")
    if not np.isfinite(image).all():
        raise CryolibError("the image has NaN/Inf pixels; repair or re-export the micrograph before picking")
    if not np.isfinite(diameter_px) or diameter_px <= 0:
        raise CryolibError(f"diameter_px={diameter_px} must be a positive number of pixels")
    if diameter_px > min(image.shape):
        raise CryolibError(f"diameter_px={diameter_px:g} is larger than the {image.shape[1]}x{image.shape[0]} image; "
                           "give the particle diameter in pixels of this micrograph")
    if method not in METHODS:
        raise CryolibError(f"unknown blob method {method!r}; use one of {', '.join(METHODS)}")
    return image.astype(np.float32, copy=False)


def _downsample(image: np.ndarray, diameter_px: float) -> tuple[np.ndarray, float, float]:
    """Area-average down to ~``INTERNAL_DIAMETER_PX`` per diameter; returns (image, scale_x, scale_y)."""
    if diameter_px <= MAX_INTERNAL_DIAMETER_PX:
        return image, 1.0, 1.0
    factor = INTERNAL_DIAMETER_PX / diameter_px
    h, w = image.shape
    out_w, out_h = max(3, round(w * factor)), max(3, round(h * factor))
    small = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return small, out_w / w, out_h / h


def _filter(image: np.ndarray, sigma: float, method: str) -> np.ndarray:
    """Scale-normalised −σ²∇²G (bright blobs positive) or its DoG approximation."""
    if method == "log":
        return -(sigma**2) * ndimage.gaussian_laplace(image, sigma, output=np.float32, mode="reflect")
    s1, s2 = sigma / math.sqrt(_DOG_RATIO), sigma * math.sqrt(_DOG_RATIO)
    dog = (ndimage.gaussian_filter(image, s1, output=np.float32, mode="reflect")
           - ndimage.gaussian_filter(image, s2, output=np.float32, mode="reflect"))
    return dog / (_DOG_RATIO - 1.0)  # DoG ≈ (k − 1)·σ²∇²G, sign already "bright positive"


def blob_response(image: np.ndarray, diameter_px: float, method: str = "log",
                  invert: bool = True) -> tuple[np.ndarray | None, float, float]:
    """The standardised filter response (noise stds) on the internal grid, and its (x, y) scales.

    ``response`` is None for a constant image (no blobs). Internal px = input px × scale.
    """
    image = _validate(image, diameter_px, method)
    small, sx, sy = _downsample(image, diameter_px)
    norm = _robust_standardise(-small if invert else small)
    if norm is None:
        return None, sx, sy
    sigma = blob_sigma(diameter_px * 0.5 * (sx + sy))
    return _robust_standardise(_filter(norm, sigma, method)), sx, sy


def _subpixel(response: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parabolic peak refinement along each axis (offsets clipped to ±0.5 px)."""
    h, w = response.shape
    r0, c0 = np.clip(rows, 1, h - 2), np.clip(cols, 1, w - 2)
    f0 = response[r0, c0]

    def offset(minus: np.ndarray, plus: np.ndarray) -> np.ndarray:
        curvature = minus - 2.0 * f0 + plus
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(curvature < 0, 0.5 * (minus - plus) / curvature, 0.0)
        return np.clip(d, -0.5, 0.5)

    dy = offset(response[r0 - 1, c0], response[r0 + 1, c0])
    dx = offset(response[r0, c0 - 1], response[r0, c0 + 1])
    edge_r, edge_c = rows != r0, cols != c0
    return rows + np.where(edge_r, 0.0, dy), cols + np.where(edge_c, 0.0, dx)


def pick_blobs(image: np.ndarray, diameter_px: float, threshold: float | None = None, method: str = "log",
               min_distance_frac: float = 0.8, exclude_border_frac: float = 0.5,
               invert: bool = True) -> pd.DataFrame:
    """Pick blob-like particles of ``diameter_px`` (px) on one ``(H, W)`` micrograph (Cryo-EMMAE §2 baselines).

    ``threshold`` is in response noise stds (``DEFAULT_THRESHOLD`` for a fixed-threshold
    picker); None keeps every local maximum above 0 so a PR sweep can choose.
    ``invert=True`` finds dark particles. Returns columns x, y (input px, top-left
    origin, x = column), diameter (= ``diameter_px``) and score, best score first.
    """
    response, sx, sy = blob_response(image, diameter_px, method, invert)
    columns = {"x": [], "y": [], "diameter": [], "score": []}
    if response is None:
        log.warning("constant image: no blobs to pick")
        return pd.DataFrame(columns, dtype=np.float64)
    d_int = diameter_px * 0.5 * (sx + sy)
    peaks = peak_local_max(
        response, min_distance=max(1, int(round(min_distance_frac * d_int))),
        threshold_abs=0.0 if threshold is None else float(threshold),
        exclude_border=max(0, int(round(exclude_border_frac * d_int))) or False, p_norm=2,
    )
    rows, cols = _subpixel(response, peaks[:, 0], peaks[:, 1])
    x = (cols + 0.5) / sx - 0.5  # internal pixel centre -> input pixel centre
    y = (rows + 0.5) / sy - 0.5
    h, w = np.shape(image)
    out = pd.DataFrame({"x": np.clip(x, 0.0, w - 1.0), "y": np.clip(y, 0.0, h - 1.0),
                        "diameter": float(diameter_px), "score": response[peaks[:, 0], peaks[:, 1]]})
    out = out.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    log.debug("blob picker (%s, d=%g px, internal d=%.1f px): %d picks", method, diameter_px, d_int, len(out))
    return out


@register_picker
class BlobMethod(Picker):
    """The LoG blob picker on micrograph files (:func:`pick_blobs`; deterministic, ``seed`` unused)."""

    name = "blob"
    default_threshold = DEFAULT_THRESHOLD

    def prepare(self, paths: list[Path], diameter_px: float, shapes: dict[str, tuple[int, int]], *,
                checkpoint: Any = None, reference: CheckedReference | None = None, seed: int = 0) -> None:
        """Each micrograph (and the reference) must be at least 3 px and one diameter across."""
        super().prepare(paths, diameter_px, shapes, checkpoint=checkpoint, reference=reference, seed=seed)
        named = list(zip(paths, shapes.values())) + ([(reference.path, reference.shape)] if reference else [])
        for path, (h, w) in named:
            if min(h, w) < 3 or diameter_px > min(h, w):
                raise CryolibError(f"micrograph {path} ({w} x {h} px) is smaller than one particle diameter "
                                   f"({diameter_px:g} px); give the diameter in px of this micrograph")

    def pick_all(self, paths: list[Path], diameter_px: float, state: None, *, seed: int = 0,
                 progress: bool = True) -> dict[str, pd.DataFrame]:
        """Every local maximum of the response with its score (noise stds), best first."""
        return {micrograph_stem(path): pick_blobs(read_micrograph(path)[0], diameter_px, -math.inf)
                for path in tqdm(paths, desc="pick (blob)", disable=None if progress else True)}
