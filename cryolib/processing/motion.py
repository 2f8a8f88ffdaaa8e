"""Movie → micrograph triplets (full, odd, even): global motion correction (DRACO §3).

Conventions:

* Shifts are ``(dx, dy)`` px per frame with the convention of :mod:`cryolib.simulate.movie`:
  frame f shows the specimen moved by ``+s_f``; :func:`align_frames` shifts it by ``-s_f``.
  :func:`estimate_shifts` reports them relative to frame 0 by default (``s_0 = 0``), so the
  aligned sum lies in the coordinates of the first frame (the simulator's ground truth).
* Odd/even follow DRACO §3 with 1-based frame numbers: the odd micrograph sums frames
  1, 3, 5, … (indices 0, 2, 4, …), the even one frames 2, 4, 6, … (indices 1, 3, 5, …).
  ``full`` is computed as ``odd + even``, so the identity holds exactly in float32.
  DRACO motion-corrects the three subsets separately; here the shifts are estimated once
  on all frames and shared, which keeps the three images registered pixel for pixel.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from cryolib.core.errors import CryolibError
from cryolib.processing.motion_peaks import (
    coarse_size,
    crop_size,
    crop_spectrum,
    find_peaks,
    significance_threshold,
)
from cryolib.processing.motion_weights import (
    cc_filter,
    remove_smooth_component,
    smooth_noise_gain,
    tapered_spectra,
    weighted_cross,
)
from cryolib.processing.fourier import phase_ramp, shift_image

__all__ = [
    "estimate_shifts",
    "align_frames",
    "sum_triplet",
    "critical_exposure",
    "exposure_filter",
    "motion_correct",
]

log = logging.getLogger(__name__)

_CHUNK_FRAMES = 8  # must be even (odd/even split per chunk)
_CONVERGED_PX = 0.01  # alignment rounds stop when no shift changes by more than this


def _as_frames(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Validate a movie ``(F, H, W)`` (F >= 2, finite) and return it as float32."""
    if not isinstance(frames, torch.Tensor):
        arr = np.asarray(frames)
        frames = torch.as_tensor(arr if arr.flags.writeable else arr.copy())
    x = frames
    if x.ndim != 3:
        raise CryolibError(f"a movie must be (F, H, W); got shape {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise CryolibError(f"motion correction needs at least 2 frames, got {x.shape[0]}")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise CryolibError("movie contains NaN or infinite values; check the input file")
    return x.to(torch.float32)


def _estimate(
    x: torch.Tensor,
    spec: torch.Tensor,
    max_shift_px: float,
    bfactor_px2: float,
    n_iter: int,
) -> torch.Tensor:
    """Leave-one-out iterative alignment of frames ``x`` ``(F, H, W)`` with rfft2 ``spec``.

    Two views of the frames: the coarse search (which peak) uses edge-tapered frames without
    the lowest rings; the refinement (where exactly) uses the periodic-plus-smooth frames.
    Returns shifts ``(F, 2)`` (dx, dy) px about their mean.
    """
    shape = tuple(x.shape[1:])
    h, w = shape
    n_c = (crop_size(h, bfactor_px2), crop_size(w, bfactor_px2))
    ky = torch.fft.fftfreq(n_c[0]) * n_c[0] / h  # cycles/px of the full frame
    kx = torch.fft.rfftfreq(n_c[1]) * n_c[1] / w
    g = crop_spectrum(spec, shape, n_c)  # [F, Hk, Wk] low-pass box
    if g.untyped_storage().data_ptr() == spec.untyped_storage().data_ptr():
        g = g.clone()  # a view of spec: the edits below must not reach the caller's spectra
    g = remove_smooth_component(g, x, ky, kx, n_c)
    g[:, 0, 0] = 0  # remove each frame's mean
    t = tapered_spectra(x, n_c)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2  # [Hk, Wk] cycles²/px²
    shells = (k2.sqrt() * min(shape)).long()  # rings 1/min(H, W) cycles/px wide
    filt = cc_filter(k2, min(shape), bfactor_px2)
    power_g = (g.real.square() + g.imag.square()).sum(dim=0)  # Σ_f |g_f|², shift-invariant
    power_t = (t.real.square() + t.imag.square()).sum(dim=0)
    gain, no_gain = smooth_noise_gain(ky, kx, shape), torch.zeros(k2.shape, dtype=torch.float64)
    shifts = torch.zeros(x.shape[0], 2, dtype=torch.float64)
    for it in range(n_iter):
        ramp = phase_ramp(-shifts, ky, kx)
        coarse, noise_var, radius = weighted_cross(t, ramp, power_t, shells, filt, no_gain)
        fine, _, _ = weighted_cross(g, ramp, power_g, shells, filt, gain)
        n_coarse = coarse_size(radius, shape, n_c)
        freqs = (ky, kx, n_c[1])
        new, z = find_peaks((coarse, noise_var), fine, freqs, n_c, n_coarse, shape, max_shift_px)
        weak = z < significance_threshold(n_coarse, shape, max_shift_px)
        new = _fill_insignificant(new, weak)
        new = new - new.mean(dim=0)
        change, shifts = float((new - shifts).abs().max()), new
        log.debug(
            "alignment iteration %d: max shift change %.3f px, coarse grid %s, peak z %.1f–%.1f",
            it + 1, change, n_coarse, float(z.min()), float(z.max()),
        )
        if change < _CONVERGED_PX:
            break
    if weak.any():
        log.info(
            "%d of %d frames have no significant cross-correlation peak; their shifts are %s",
            int(weak.sum()), len(weak), "zero" if weak.all() else "interpolated",
        )
    return shifts


def _fill_insignificant(shifts: torch.Tensor, weak: torch.Tensor) -> torch.Tensor:
    """Replace the shifts of frames whose CC peak is not significant (``weak``, ``(F,)`` bool).

    They are interpolated linearly in frame number between the frames with significant peaks
    (held constant beyond the first and last); with no significant peak at all, no motion.
    A spurious peak lands anywhere within the search radius, so keeping it would misalign the
    frame and corrupt the reference of every other frame.
    """
    if not bool(weak.any()):
        return shifts
    if bool(weak.all()):
        return torch.zeros_like(shifts)
    t = np.arange(len(weak))
    good = ~weak.numpy()
    s = shifts.numpy()
    filled = np.stack([np.interp(t, t[good], s[good, i]) for i in range(2)], axis=1)
    return torch.from_numpy(filled).to(shifts.dtype)


def _check_alignment(
    shape: tuple[int, int], max_shift_px: float | None, bfactor_px2: float, n_iter: int
) -> float:
    """Validate alignment settings; return the search radius (px, default a quarter frame)."""
    if min(shape) < 8:
        raise CryolibError(f"frames must be at least 8×8 px to align, got {shape}")
    if n_iter < 1 or bfactor_px2 < 0:
        raise CryolibError(f"need n_iter >= 1 and bfactor_px2 >= 0, got {n_iter}, {bfactor_px2}")
    max_shift = min(shape) / 4 if max_shift_px is None else float(max_shift_px)
    if not max_shift > 0:
        raise CryolibError(f"max_shift_px must be positive, got {max_shift_px}")
    return max_shift


def estimate_shifts(
    frames: np.ndarray | torch.Tensor,
    max_shift_px: float | None = None,
    bfactor_px2: float = 100.0,
    n_iter: int = 10,
    relative_to: str = "first",
) -> np.ndarray:
    """Global per-frame drift ``(F, 2)`` (dx, dy) px of a movie ``(F, H, W)``.

    Each frame is cross-correlated with the sum of all *other* aligned frames (leave-one-out,
    so the Poisson noise of a frame never correlates with itself). The reference is Wiener
    weighted by its ring-wise signal-to-noise ratio, measured from the frames themselves,
    times a B-factor prior ``exp(-B k²/4)`` (B = ``bfactor_px2`` in px², k in cycles/px;
    100 px² halves at 0.167 cycles/px) that also sets how much of the spectrum is used.
    The waves of the frame's own size (below ~5 rings) are high-passed away: they locate a
    shift poorly and are the ones most changed by content crossing the frame border. The
    peak within ``max_shift_px`` (default a quarter of the frame) is found on a coarse grid
    (at least 128², as wide as the band that holds most of the predicted peak significance:
    it covers the Thon rings of a particle-free field, which lie beyond a 128² grid of a
    1024² frame) of the CC of edge-tapered frames, then refined by evaluating the CC exactly
    on finer local grids plus a parabolic fit, with the edge jumps removed instead by the
    periodic-plus-smooth decomposition (Moisan 2011; exact, and the noise that it adds to
    the lowest frequencies is weighted down): see :mod:`cryolib.processing.motion_weights`. A
    frame whose coarse peak is not significant (noise alone would reach it with probability
    10⁻³ in the search window) gets its shift interpolated from the neighbouring frames that
    have one; with none anywhere, the movie is taken as not moving. Up to ``n_iter`` rounds
    update the reference, stopping once no shift changes by more than 0.01 px (3–4 rounds
    for ~30 frames; few-frame movies converge more slowly).
    ``relative_to="first"`` gives ``s_0 = 0``; ``"mean"`` gives shifts about their mean.
    """
    x = _as_frames(frames)
    if relative_to not in ("first", "mean"):
        raise CryolibError(f"relative_to must be 'first' or 'mean', got {relative_to!r}")
    shape = tuple(x.shape[1:])
    max_shift = _check_alignment(shape, max_shift_px, bfactor_px2, n_iter)
    shifts = _estimate(x, torch.fft.rfft2(x), max_shift, bfactor_px2, n_iter)
    if relative_to == "first":
        shifts = shifts - shifts[0]
    return shifts.numpy()


def align_frames(frames: np.ndarray | torch.Tensor, shifts: np.ndarray) -> np.ndarray:
    """Undo the drift: frame f shifted by ``-shifts[f]`` (Fourier), float32 ``(F, H, W)``."""
    x = _as_frames(frames)
    s = np.asarray(shifts, dtype=np.float64)
    if s.shape != (x.shape[0], 2):
        raise CryolibError(f"shifts must be ({x.shape[0]}, 2) (dx, dy) px, got shape {s.shape}")
    return shift_image(x, -s).numpy()


def sum_triplet(aligned: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(full, odd, even)`` float32 sums of aligned frames (DRACO §3).

    odd = frames 1, 3, 5, … (indices 0, 2, …), even = frames 2, 4, … (indices 1, 3, …),
    full = odd + even (exactly, in float32).
    """
    x = _as_frames(aligned)
    odd = x[0::2].sum(dim=0)
    even = x[1::2].sum(dim=0)
    return (odd + even).numpy(), odd.numpy(), even.numpy()


def critical_exposure(k_per_A: torch.Tensor, voltage_kV: float = 300.0) -> torch.Tensor:
    """Grant & Grigorieff (2015) critical exposure Ne(k) = 0.245 k^-1.665 + 2.81 e⁻/Å² (k in 1/Å).

    Measured at 300 kV; at 200 kV it is scaled by 0.8 (as in cisTEM/Unblur).
    """
    scale = {300: 1.0, 200: 0.8}.get(int(round(voltage_kV)))
    if scale is None:
        raise CryolibError(f"dose weighting knows 200 and 300 kV, got {voltage_kV} kV")
    k = k_per_A.clamp(min=1e-6)
    return scale * (0.245 * k.pow(-1.665) + 2.81)


def exposure_filter(
    n_frames: int,
    dose_per_frame_e_per_A2: float,
    shape: tuple[int, int],
    pixel_size_A: float,
    voltage_kV: float = 300.0,
    pre_exposure_e_per_A2: float = 0.0,
) -> torch.Tensor:
    """Dose weights ``(F, H, W//2+1)`` on the rfft2 grid (Grant & Grigorieff 2015).

    q_f(k) = exp(-N_f / (2 Ne(k))) with N_f the exposure at the middle of frame f, then
    w_f(k) = q_f(k) · sqrt(F / Σ_g q_g(k)²): per frequency the weighted sum keeps the noise
    power of the plain sum (Σ w² = F) and DC is untouched (w = 1 at k = 0).
    """
    if dose_per_frame_e_per_A2 is None or pixel_size_A is None:
        raise CryolibError("dose weighting needs dose_per_frame_e_per_A2 and pixel_size_A")
    if dose_per_frame_e_per_A2 <= 0 or pixel_size_A <= 0:
        raise CryolibError(
            f"dose per frame and pixel size must be positive, got {dose_per_frame_e_per_A2} "
            f"e⁻/Å² and {pixel_size_A} Å"
        )
    h, w = shape
    ky = torch.fft.fftfreq(h, d=pixel_size_A)[:, None]
    kx = torch.fft.rfftfreq(w, d=pixel_size_A)[None, :]
    ne = critical_exposure(torch.sqrt(ky**2 + kx**2), voltage_kV)  # [H, Wk]
    exposure = pre_exposure_e_per_A2 + (torch.arange(n_frames) + 0.5) * dose_per_frame_e_per_A2
    q = torch.exp(-exposure[:, None, None] / (2 * ne[None]))  # [F, H, Wk]
    return (q * torch.sqrt(n_frames / (q**2).sum(dim=0, keepdim=True))).to(torch.float32)


def motion_correct(
    frames: np.ndarray | torch.Tensor,
    dose_weighting: bool = False,
    dose_per_frame_e_per_A2: float | None = None,
    pixel_size_A: float | None = None,
    voltage_kV: float = 300.0,
    max_shift_px: float | None = None,
    bfactor_px2: float = 100.0,
    n_iter: int = 10,
) -> dict[str, np.ndarray]:
    """Movie ``(F, H, W)`` → ``dict(full, odd, even, shifts_px)`` (DRACO §3 triplets).

    Estimates global shifts (:func:`estimate_shifts`, relative to frame 0), aligns every
    frame in Fourier space and sums odd and even frames (1-based numbering); ``full = odd +
    even`` exactly. With ``dose_weighting`` each frame is filtered by :func:`exposure_filter`
    before summing, the same weights for the halves, so the identity still holds.
    """
    x = _as_frames(frames)
    n, shape = x.shape[0], tuple(x.shape[1:])
    max_shift = _check_alignment(shape, max_shift_px, bfactor_px2, n_iter)
    weights = None
    if dose_weighting:
        weights = exposure_filter(n, dose_per_frame_e_per_A2, shape, pixel_size_A, voltage_kV)
    spec = torch.fft.rfft2(x)  # [F, H, Wk], reused for the aligned sums
    shifts = _estimate(x, spec, max_shift, bfactor_px2, n_iter)
    shifts = shifts - shifts[0]
    ky, kx = torch.fft.fftfreq(shape[0]), torch.fft.rfftfreq(shape[1])
    halves = torch.zeros(2, shape[0], shape[1] // 2 + 1, dtype=torch.complex64)  # [odd, even]
    for start in range(0, n, _CHUNK_FRAMES):
        sl = slice(start, min(start + _CHUNK_FRAMES, n))
        chunk = spec[sl] * phase_ramp(-shifts[sl], ky, kx)  # aligned spectra
        if weights is not None:
            chunk = chunk * weights[sl]
        halves[0] += chunk[0::2].sum(dim=0)  # chunks start at even indices
        halves[1] += chunk[1::2].sum(dim=0)
    odd, even = torch.fft.irfft2(halves, s=shape).unbind(0)
    log.debug("motion-corrected %d frames; last frame at %.2f px", n, float(shifts[-1].norm()))
    return {
        "full": (odd + even).numpy(),
        "odd": odd.numpy(),
        "even": even.numpy(),
        "shifts_px": shifts.numpy(),
    }
