"""Signal-to-noise ratios of (denoised) micrographs: DRACO Eq. 11 and true SNRs against the clean image.

* :func:`snr_eq11` — DRACO Eq. 11 (as Topaz-Denoise, Bepler et al. 2020): over N pairs of a
  signal region s_i (on a particle) and a background region b_i (ice nearby),
  SNR_dB = (10/N) Σ_i log10((mean(s_i) − mean(b_i))² / var(b_i)).
* :func:`region_pairs` — the pairs for Eq. 11. The paper annotates 20 pairs per dataset by hand,
  "chosen close together to ensure similar background signals". Here a fixed rule on the ground
  truth (coordinates and clean image) replaces the hand: see its docstring.
* :func:`true_snr_db` / :func:`band_snr_db` — only a simulation has these: the estimate is
  modelled as e = α·clean + β + r (least squares), and SNR = α²·var(clean) / var(r) in dB. For
  e = clean + noise this is var(clean)/var(noise); it ignores the estimate's gain and offset, is
  +inf for the clean image itself, and equals ρ²/(1 − ρ²) with ρ the correlation of e and clean
  (so ranking by it is ranking by the MSE of the best affine map of e onto clean).
  :func:`band_snr_db` does the same after a Fourier band-pass of both images to the band of
  particle detail (default 1/diameter to 1/4 cycles/px).
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
import pandas as pd
from scipy import ndimage

from cryolib.core.errors import CryolibError

__all__ = ["Region", "snr_eq11", "region_pairs", "true_snr_db", "band_pass", "band_snr_db"]

#: A region: (row slice, column slice), or a boolean mask of the image's shape.
Region = Union[tuple[slice, slice], np.ndarray]


def _pixels(image: np.ndarray, region: Region, what: str) -> np.ndarray:
    if isinstance(region, np.ndarray):
        if region.dtype != bool or region.shape != image.shape:
            raise CryolibError(f"{what}: a mask region must be boolean with the image's shape {image.shape}")
        values = image[region]
    elif isinstance(region, tuple) and len(region) == 2 and all(isinstance(s, slice) for s in region):
        values = image[region].ravel()
    else:
        raise CryolibError(f"{what}: a region is (row slice, column slice) or a boolean mask, got {type(region).__name__}")
    if values.size < 2:
        raise CryolibError(f"{what} holds {values.size} pixel(s); a region needs at least 2 inside the image")
    return values.astype(np.float64)


def snr_eq11(image: np.ndarray, signal_regions: Sequence[Region], background_regions: Sequence[Region]) -> float:
    """DRACO Eq. 11 in dB: (10/N) Σ log10((mean(s_i) − mean(b_i))² / var(b_i)) over N region pairs.

    var is the population variance of the background pixels. A flat background gives +inf.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise CryolibError(f"snr_eq11 needs a 2-D image, got shape {image.shape}")
    if len(signal_regions) != len(background_regions) or len(signal_regions) == 0:
        raise CryolibError(f"need the same positive number of signal and background regions, got "
                           f"{len(signal_regions)} and {len(background_regions)}")
    terms = []
    for i, (s, b) in enumerate(zip(signal_regions, background_regions)):
        sig, bg = _pixels(image, s, f"signal region {i}"), _pixels(image, b, f"background region {i}")
        contrast, var = (sig.mean() - bg.mean()) ** 2, bg.var()
        with np.errstate(divide="ignore"):
            terms.append(math.inf if var == 0 else float(np.log10(contrast / var)) if contrast > 0 else -math.inf)
    return float(10.0 * np.mean(terms))


def _background_candidates(shape: tuple[int, int], xy: np.ndarray, radius: float, box: int) -> np.ndarray:
    """Box centres (x, y) on a half-box grid whose whole box lies inside the image and outside every particle disk."""
    half = box / 2.0
    ys = np.arange(half, shape[0] - half + 1e-9, max(1, box // 2))
    xs = np.arange(half, shape[1] - half + 1e-9, max(1, box // 2))
    cy, cx = (g.ravel() for g in np.meshgrid(ys, xs, indexing="ij"))
    centres = np.column_stack([cx, cy])  # [K, 2] (x, y)
    if len(xy) == 0 or len(centres) == 0:
        return centres
    clear = np.empty(len(centres), bool)
    for start in range(0, len(centres), 4096):  # chunks keep the [K, P] distance table small
        c = centres[start : start + 4096]
        # nearest point of each box to each particle centre, then its distance
        dx = np.maximum(np.abs(c[:, None, 0] - xy[None, :, 0]) - half, 0.0)
        dy = np.maximum(np.abs(c[:, None, 1] - xy[None, :, 1]) - half, 0.0)
        clear[start : start + 4096] = np.sqrt(dx**2 + dy**2).min(axis=1) >= radius
    return centres[clear]


def _box_std(image: np.ndarray, centres: np.ndarray, box: int) -> np.ndarray:
    """Standard deviation of ``image`` in the ``box`` px box at each centre (x, y)."""
    mean = ndimage.uniform_filter(image, box, mode="reflect")
    mean_sq = ndimage.uniform_filter(image**2, box, mode="reflect")
    var = np.maximum(mean_sq - mean**2, 0.0)
    rows = np.clip(np.round(centres[:, 1] - 0.5).astype(int), 0, image.shape[0] - 1)
    cols = np.clip(np.round(centres[:, 0] - 0.5).astype(int), 0, image.shape[1] - 1)
    return np.sqrt(var[rows, cols])


def _box(x: float, y: float, box: int) -> tuple[slice, slice]:
    r0, c0 = int(round(y - box / 2.0)), int(round(x - box / 2.0))
    return slice(r0, r0 + box), slice(c0, c0 + box)


def region_pairs(clean: np.ndarray, coords: pd.DataFrame | np.ndarray, diameter_px: float, n_pairs: int = 20,
                 seed: int = 0, box_px: int | None = None) -> tuple[list[Region], list[Region]]:
    """Eq. 11 region pairs from the ground truth -> (signal regions, background regions), ≤ ``n_pairs`` each.

    The rule (replacing the paper's hand annotation; all sizes in px):

    * every region is a square box of side ``box_px`` (default: half the particle diameter, at least 4);
    * signal: the box centred on a particle (x, y) that lies wholly inside the image and whose
      particle has no other particle centre within one diameter (one particle per box);
    * background candidates: boxes on a half-box grid lying wholly outside every particle's disk
      (radius = diameter/2 + 2 px) and whose clean-image standard deviation is at most the median
      of all candidates' (flat ice: no contaminant, carbon edge or unlisted particle);
    * each chosen particle (a random order drawn with ``seed``) takes the nearest unused
      background candidate within 4 diameters ("close together", DRACO §5.2), or is skipped.

    Raises when no pair can be formed (no isolated particle, or no particle-free ice).
    """
    clean = np.asarray(clean, dtype=np.float64)
    if not (math.isfinite(diameter_px) and diameter_px > 0):
        raise CryolibError(f"diameter_px must be a positive number of px, got {diameter_px}")
    xy = (coords[["x", "y"]].to_numpy(np.float64) if isinstance(coords, pd.DataFrame)
          else np.asarray(coords, dtype=np.float64).reshape(-1, 2))
    box = int(box_px) if box_px is not None else max(4, int(round(diameter_px / 2)))
    if box < 2 or box > min(clean.shape):
        raise CryolibError(f"box_px={box} must be between 2 px and the image side {min(clean.shape)} px")
    half = box / 2.0
    h, w = clean.shape
    inside = (xy[:, 0] >= half) & (xy[:, 0] <= w - half) & (xy[:, 1] >= half) & (xy[:, 1] <= h - half)
    dist = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)) + np.eye(len(xy)) * 1e9
    isolated = dist.min(axis=1) >= diameter_px if len(xy) > 1 else np.ones(len(xy), bool)
    chosen = np.flatnonzero(inside & isolated)
    chosen = chosen[np.random.default_rng(seed).permutation(len(chosen))]
    candidates = _background_candidates(clean.shape, xy, diameter_px / 2.0 + 2.0, box)
    if len(candidates):
        flatness = _box_std(clean, candidates, box)
        candidates = candidates[flatness <= np.median(flatness)]
    used = np.zeros(len(candidates), bool)
    signal, background = [], []
    for i in chosen:
        if len(signal) == n_pairs or used.all():
            break
        d = np.sqrt(((candidates - xy[i]) ** 2).sum(-1))
        d[used] = np.inf
        j = int(np.argmin(d))
        if d[j] > 4 * diameter_px:
            continue
        used[j] = True
        signal.append(_box(xy[i, 0], xy[i, 1], box))
        background.append(_box(candidates[j, 0], candidates[j, 1], box))
    if not signal:
        raise CryolibError(f"no Eq. 11 region pair fits: {len(chosen)} isolated particles inside the image, "
                           f"{len(candidates)} particle-free ice boxes of {box} px")
    return signal, background


def _affine_snr(estimate: np.ndarray, clean: np.ndarray) -> float:
    e = np.asarray(estimate, dtype=np.float64).ravel()
    c = np.asarray(clean, dtype=np.float64).ravel()
    if e.shape != c.shape:
        raise CryolibError(f"estimate {np.shape(estimate)} and clean {np.shape(clean)} images differ in shape")
    c0, e0 = c - c.mean(), e - e.mean()
    var_c = float(c0 @ c0)
    if var_c == 0:
        raise CryolibError("the clean image is constant: it has no signal to measure an SNR against")
    alpha = float(c0 @ e0) / var_c  # e = α·clean + β + r
    residual = e0 - alpha * c0
    noise = float(residual @ residual)
    signal = alpha**2 * var_c
    if noise <= 1e-24 * max(signal, 1e-300):
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def true_snr_db(estimate: np.ndarray, clean: np.ndarray) -> float:
    """Whole-image true SNR in dB: α²·var(clean)/var(r) of the fit estimate = α·clean + β + r."""
    return _affine_snr(estimate, clean)


def band_pass(image: np.ndarray, low_cycles_per_px: float, high_cycles_per_px: float) -> np.ndarray:
    """Keep the Fourier components with low ≤ |f| ≤ high (cycles/px) of a 2-D image (hard annulus)."""
    if not 0 <= low_cycles_per_px < high_cycles_per_px:
        raise CryolibError(f"band must satisfy 0 <= low < high (cycles/px), got {low_cycles_per_px}, "
                           f"{high_cycles_per_px}")
    x = np.asarray(image, dtype=np.float64)
    fy = np.fft.fftfreq(x.shape[0])[:, None]
    fx = np.fft.rfftfreq(x.shape[1])[None, :]
    f = np.sqrt(fy**2 + fx**2)
    keep = (f >= low_cycles_per_px) & (f <= high_cycles_per_px)
    return np.fft.irfft2(np.fft.rfft2(x) * keep, s=x.shape)


def band_snr_db(estimate: np.ndarray, clean: np.ndarray, low_cycles_per_px: float,
                high_cycles_per_px: float = 0.25) -> float:
    """True SNR (dB) in the band of particle detail: both images band-passed first.

    Callers pass ``low_cycles_per_px = 1/diameter_px`` (particle-sized features and finer) and keep
    ``high_cycles_per_px = 1/4`` (4 px period: finer detail is mostly noise at these doses).
    """
    return _affine_snr(band_pass(estimate, low_cycles_per_px, high_cycles_per_px),
                       band_pass(clean, low_cycles_per_px, high_cycles_per_px))
