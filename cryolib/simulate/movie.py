"""Dose-fractionated movies: beam-induced drift and per-frame Poisson electron counts.

Shift convention (here and in :mod:`cryolib.processing.motion`): shifting an image by ``(dx, dy)`` px
moves its content to larger x (columns) and y (rows): ``out[y + dy, x + dx] = in[y, x]``,
which for integer shifts is ``np.roll(image, (dy, dx), axis=(-2, -1))``. A movie frame
with drift ``s_f`` is the (per-frame share of the) expected image shifted by ``s_f``.
Shifts are periodic (Fourier): pad the expected image by the largest drift and crop
afterwards if the wrapped edge matters.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from cryolib.core.errors import CryolibError
from cryolib.processing.fourier import phase_ramp, shift_image, shift_spectrum  # noqa: F401  (re-exported)

__all__ = [
    "drift_trajectory",
    "phase_ramp",
    "shift_spectrum",
    "shift_image",
    "expose_movie",
    "SEVERE_DRIFT_FACTOR",
]

log = logging.getLogger(__name__)

SEVERE_DRIFT_FACTOR = 7.0  # severe=True: 7× the accumulated motion (5–10× in bad movies)
_CHUNK_FRAMES = 8  # frames per batch in expose_movie (bounds memory at 1024²–4096²)


def drift_trajectory(
    n_frames: int,
    total_drift_A: float,
    pixel_size_A: float,
    rng: np.random.Generator,
    severe: bool = False,
    fast_fraction: float = 0.7,
    decay_frames: float = 3.0,
) -> np.ndarray:
    """Per-frame drift ``(F, 2)`` as (dx, dy) in px relative to frame 0 (``out[0] = 0``).

    Model of beam-induced motion: a fast initial movement that decays exponentially
    (``1 - exp(-t / decay_frames)``, t in frames) along a slowly turning random direction,
    plus a slow Gaussian random walk; their step sizes are mixed ``fast_fraction : 1 -
    fast_fraction`` and the whole trajectory is rescaled so that its accumulated path
    length ``Σ |r_{f+1} - r_f|`` equals ``total_drift_A`` Å (RELION's "accumulated motion
    total"; 10–30 Å is typical at 300 kV). ``severe=True`` multiplies it by
    :data:`SEVERE_DRIFT_FACTOR`.
    """
    if n_frames < 1 or total_drift_A < 0 or pixel_size_A <= 0:
        raise CryolibError(
            f"drift_trajectory needs n_frames >= 1, total_drift_A >= 0, pixel_size_A > 0; "
            f"got {n_frames}, {total_drift_A}, {pixel_size_A}"
        )
    out = np.zeros((n_frames, 2))
    if n_frames == 1 or total_drift_A == 0:
        return out
    total = total_drift_A * (SEVERE_DRIFT_FACTOR if severe else 1.0)
    t = np.arange(n_frames, dtype=np.float64)
    progress = 1.0 - np.exp(-t / decay_frames)
    theta = rng.uniform(0, 2 * np.pi) + rng.normal(0.0, 0.5) * t / (n_frames - 1)
    fast = np.diff(progress)[:, None] * np.stack([np.cos(theta[1:]), np.sin(theta[1:])], 1)
    slow = rng.normal(size=(n_frames - 1, 2))
    steps = (
        fast_fraction * fast / np.linalg.norm(fast, axis=1).sum()
        + (1 - fast_fraction) * slow / np.linalg.norm(slow, axis=1).sum()
    )
    steps *= total / np.linalg.norm(steps, axis=1).sum()
    out[1:] = np.cumsum(steps, axis=0) / pixel_size_A
    return out


def _frame_weights(n_frames: int, weights: np.ndarray | None) -> np.ndarray:
    if weights is None:
        return np.full(n_frames, 1.0 / n_frames)
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != (n_frames,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise CryolibError(
            f"dose_per_frame_weights must be {n_frames} finite non-negative numbers with a "
            f"positive sum, got {weights!r}"
        )
    return w / w.sum()


def _smallest_uint(max_count: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_count <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def expose_movie(
    expected_e_per_px: np.ndarray | torch.Tensor,
    n_frames: int,
    shifts_px: np.ndarray,
    rng: np.random.Generator,
    intraframe_blur: bool = False,
    dose_per_frame_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Poisson electron counts ``(F, H, W)`` (smallest unsigned dtype) of a drifting specimen.

    ``expected_e_per_px`` ``(H, W)`` is the expected number of electrons per pixel summed over
    the whole movie (dose e⁻/Å² × pixel area Å² × transmitted intensity). Frame f expects
    ``w_f · expected`` shifted by ``shifts_px[f]`` (dx, dy px), with ``w_f = 1/F`` unless
    ``dose_per_frame_weights`` are given (normalised to sum 1); the mean count of a flat
    image is thus dose_per_frame × pixel area and its variance the same (Poisson).
    ``intraframe_blur`` smears each frame along its own motion (central differences of the
    trajectory). Deterministic for a given ``rng`` state.
    """
    expected = torch.as_tensor(expected_e_per_px, dtype=torch.float32)
    if expected.ndim != 2 or not torch.isfinite(expected).all() or (expected < 0).any():
        raise CryolibError(
            f"expected_e_per_px must be a finite non-negative (H, W) array, got shape "
            f"{tuple(expected.shape)}"
        )
    shifts = np.asarray(shifts_px, dtype=np.float64)
    if n_frames < 1 or shifts.shape != (n_frames, 2):
        raise CryolibError(
            f"shifts_px must be ({n_frames}, 2) (dx, dy) px, got shape {shifts.shape}"
        )
    weights = _frame_weights(n_frames, dose_per_frame_weights)
    blur = np.gradient(shifts, axis=0) if intraframe_blur and n_frames > 1 else None
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
    shape = tuple(expected.shape)
    spec = torch.fft.rfft2(expected)
    out = np.empty((n_frames, *shape), dtype=np.uint16)
    for start in range(0, n_frames, _CHUNK_FRAMES):
        sl = slice(start, min(start + _CHUNK_FRAMES, n_frames))
        blur_sl = None if blur is None else blur[sl]
        frame_spec = shift_spectrum(spec[None], shape, shifts[sl], blur_sl)  # [f, H, Wk]
        lam = torch.fft.irfft2(frame_spec, s=shape)
        w_sl = torch.as_tensor(weights[sl], dtype=torch.float32)[:, None, None]
        lam = lam.mul_(w_sl).clamp_(min=0)  # Fourier ringing can dip below 0
        counts = torch.poisson(lam, generator=gen)
        if counts.max() > np.iinfo(out.dtype).max:
            out = out.astype(np.uint32)
        out[sl] = counts.numpy()
    dtype = _smallest_uint(int(out.max()) if out.size else 0)
    log.debug("exposed %d frames of %s (max %d counts)", n_frames, shape, out.max())
    return out.astype(dtype, copy=False)
