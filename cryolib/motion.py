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
import math
from statistics import NormalDist

import numpy as np
import torch

from cryolib.errors import CryolibError
from cryolib.simulate.movie import phase_ramp, shift_image

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
_REFINE_POINTS = 9  # local grid (per axis) on which the cross-correlation is evaluated exactly
_COARSE = 128  # smallest grid (per axis) of the first, coarse cross-correlation search
_COARSE_Z_FRACTION = 0.9  # the coarse search keeps the band holding this much of the peak's z
_FALSE_PEAK_P = 1e-3  # chance that noise alone gives a frame a coarse peak taken as significant
_FINEST_SPACING_PX = 0.25  # refinement stops at this grid spacing (then a parabolic fit)
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


def _good_fft_size(n: int) -> int:
    """Smallest even 5-smooth (2^a 3^b 5^c) integer >= n."""
    m = max(2, n + n % 2)
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 2


def _crop_size(n: int, bfactor_px2: float, floor: float = 1e-2) -> int:
    """FFT-friendly even box keeping |k| where exp(-B k²/4) > ``floor`` (at most n)."""
    k_cut = math.sqrt(4 * math.log(1 / floor) / bfactor_px2) if bfactor_px2 > 0 else 0.5
    n_c = _good_fft_size(max(2 * math.ceil(k_cut * n), 16))
    return n if n_c >= n else n_c


def _crop_spectrum(
    spec: torch.Tensor, shape: tuple[int, int], n_c: tuple[int, int]
) -> torch.Tensor:
    """Low-frequency box ``(F, n_cy, n_cx//2+1)`` of rfft2 spectra ``(F, H, W//2+1)``."""
    (h, w), (ny, nx) = shape, n_c
    if ny < h:
        spec = torch.cat([spec[:, : ny // 2], spec[:, h - ny // 2 :]], dim=1)
    return spec[:, :, : nx // 2 + 1] if nx < w else spec


def _coarse_peak(
    cc: torch.Tensor, shape: tuple[int, int], max_shift_px: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid peaks ``(F, 2)`` (dx, dy) px of cropped CCs ``(F, n_cy, n_cx)`` within the limit,
    and the CC values there ``(F,)``."""
    f, ny, nx = cc.shape
    py = torch.fft.fftfreq(ny, dtype=torch.float64) * shape[0]  # signed positions, px
    px = torch.fft.fftfreq(nx, dtype=torch.float64) * shape[1]
    inside = (py.abs()[:, None] <= max_shift_px) & (px.abs()[None, :] <= max_shift_px)
    best, flat = cc.masked_fill(~inside, -torch.inf).reshape(f, -1).max(dim=1)
    return torch.stack([px[flat % nx], py[flat // nx]], dim=1), best.double()


def _parabola_offset(minus: torch.Tensor, centre: torch.Tensor, plus: torch.Tensor) -> torch.Tensor:
    """Vertex of the parabola through three equally spaced samples, in sample units."""
    denom = minus - 2 * centre + plus
    off = 0.5 * (minus - plus) / torch.where(denom.abs() > 0, denom, torch.ones_like(denom))
    return torch.where(denom < 0, off.clamp(-0.5, 0.5), torch.zeros_like(off))


def _refine_peak(
    cross: torch.Tensor,
    freqs: tuple[torch.Tensor, torch.Tensor, int],
    start: torch.Tensor,
    spacing: float,
) -> torch.Tensor:
    """Sub-pixel peak ``(F, 2)``: the CC evaluated exactly on a local grid, then a parabola.

    ``cross`` is the half-plane cross-power spectrum ``(F, Hk, Wk)``; ``freqs`` holds its
    ``ky``, ``kx`` (cycles/px) and the width of the real grid. The CC (a matrix DFT) is
    evaluated at ``start ± spacing·j``, j = 0…_REFINE_POINTS//2.
    """
    ky, kx, n_x = freqs
    r = _REFINE_POINTS // 2
    offs = torch.arange(-r, r + 1, dtype=torch.float64) * spacing  # [m]
    ys, xs = start[:, 1:2] + offs[None], start[:, 0:1] + offs[None]  # [F, m]
    hermitian = _hermitian_weights(n_x, kx.numel())
    ey = torch.exp(2j * torch.pi * ys[:, :, None] * ky.double()[None, None, :])  # [F, m, Hk]
    ex = torch.exp(2j * torch.pi * kx.double()[None, :, None] * xs[:, None, :])  # [F, Wk, m]
    ex = ex * hermitian[None, :, None]
    local = (ey.to(torch.complex64) @ cross @ ex.to(torch.complex64)).real  # [F, m, m]
    f, m, _ = local.shape
    flat = local.reshape(f, -1).argmax(dim=1)
    iy, ix = (flat // m).clamp(1, m - 2), (flat % m).clamp(1, m - 2)
    rows = torch.arange(f)
    dy = _parabola_offset(local[rows, iy - 1, ix], local[rows, iy, ix], local[rows, iy + 1, ix])
    dx = _parabola_offset(local[rows, iy, ix - 1], local[rows, iy, ix], local[rows, iy, ix + 1])
    return torch.stack([xs[rows, ix] + dx * spacing, ys[rows, iy] + dy * spacing], dim=1)


def _hermitian_weights(n_x: int, n_kx: int) -> torch.Tensor:
    """How often each column of a half-plane spectrum ``(…, n_kx)`` counts in the full plane."""
    hermitian = torch.full((n_kx,), 2.0, dtype=torch.float64)
    hermitian[0] = 1.0
    if n_x % 2 == 0:
        hermitian[-1] = 1.0  # the Nyquist column of an even grid appears once
    return hermitian


def _find_peaks(
    cross: torch.Tensor,
    noise_var: torch.Tensor,
    freqs: tuple[torch.Tensor, torch.Tensor, int],
    n_c: tuple[int, int],
    n_coarse: tuple[int, int],
    shape: tuple[int, int],
    max_shift_px: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CC peaks ``(F, 2)``: coarse on an ``n_coarse`` grid, then exact local grids 4× finer each.

    Also returns the significance ``(F,)`` of each coarse peak: its height over the standard
    deviation that noise alone gives the coarse CC, from the expected noise power ``noise_var``
    ``(Hk, Wk)`` of each term of ``cross``.
    """
    cc = torch.fft.irfft2(_crop_spectrum(cross, n_c, n_coarse), s=n_coarse)
    peak, height = _coarse_peak(cc, shape, max_shift_px)
    var = _crop_spectrum(noise_var[None], n_c, n_coarse)[0]
    var = (var * _hermitian_weights(n_coarse[1], var.shape[1])).sum()
    sd = var.sqrt() / (n_coarse[0] * n_coarse[1])
    z = height / sd if sd > 0 else torch.where(height > 0, torch.inf, 0.0)
    spacing = max(shape[0] / n_coarse[0], shape[1] / n_coarse[1]) / 4
    while True:
        peak = _refine_peak(cross, freqs, peak, spacing)
        if spacing <= _FINEST_SPACING_PX:
            return peak, z
        spacing /= 4


def _remove_smooth_component(
    g: torch.Tensor, x: torch.Tensor, ky: torch.Tensor, kx: torch.Tensor, n_c: tuple[int, int]
) -> torch.Tensor:
    """Subtract, in place, the smooth part of frames ``x`` from their cropped spectra ``g``.

    Moisan (2011) "periodic plus smooth" decomposition: the wrap-around jumps at the frame
    border define a boundary image v; the smooth part s solves the periodic Poisson
    equation Δs = v, S = V / (2cos 2πky + 2cos 2πkx - 4). Removing it removes the edge
    discontinuity (fixed to the detector in every frame) without windowing the content.
    """
    shape = tuple(x.shape[1:])
    rows = torch.fft.rfft(x[:, -1, :] - x[:, 0, :])[:, : kx.numel()]  # [F, Wk] top/bottom jump
    cols = torch.fft.fft(x[:, :, -1] - x[:, :, 0])  # [F, H] left/right jump
    cols = _crop_spectrum(cols[:, :, None], (shape[0], 1), (n_c[0], 1))[:, :, 0]  # [F, Hk]
    lap = 2 * torch.cos(2 * torch.pi * ky)[:, None] + 2 * torch.cos(2 * torch.pi * kx)[None, :] - 4
    lap[0, 0] = 1.0  # DC: the mean is removed separately
    ey = (1 - torch.exp(2j * torch.pi * ky.double())).to(torch.complex64)[:, None] / lap
    ex = (1 - torch.exp(2j * torch.pi * kx.double())).to(torch.complex64)[None, :] / lap
    g.addcmul_(rows[:, None, :], ey[None], value=-1)  # V = A(kx)(1 - e^{2πi ky}) + …
    g.addcmul_(cols[:, :, None], ex[None], value=-1)  # … + B(ky)(1 - e^{2πi kx})
    return g


def _ring_weights(
    power_each: torch.Tensor,
    total: torch.Tensor,
    n_frames: int,
    shells: torch.Tensor,
    filt: torch.Tensor,
    smooth_gain: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """CC weights of a leave-one-out reference, from the frames themselves.

    Per ring, signal power S = (|Σ a|² - Σ |a|²) / (F (F-1)) and per-frame noise power
    N = Σ |a|² / F - S (``power_each`` = Σ_f |a_f|², ``total`` = Σ_f a_f of the aligned
    frames). The weight is ``filt`` · S / (S + N / (F-1)) · (1 - P / N): a Wiener filter of
    the reference, which follows the data (it low-passes smooth textures, keeps the Thon rings
    of CTF-modulated ice and widens as the alignment improves), times the share of the noise
    that does not come from the periodic-plus-smooth correction. That correction is solved
    from single noisy border rows and columns, so it adds noise of power
    P = ``smooth_gain`` · N_white (see :func:`_smooth_noise_gain`; N_white, the white noise
    level, is estimated as the median of N / (1 + ``smooth_gain``)): at 1024² tens of times the
    shot noise in the lowest rings. Weighting by 1 / (noise power) is what a maximum-likelihood
    shift estimate does; without it these rings, which also carry the strongest signal of a
    particle-free field (the ice-thickness gradient), swamped its CC with broad humps displaced
    by their noise. N is floored at N_white + P, so the factor stays 1 where the data are
    noise-free.

    Returns the weights ``(Hk, Wk)`` float32; the noise power ``(Hk, Wk)`` of each weighted
    cross-power term, w² (F-1) N (F S + N) (for the peak significance); and the smallest ring
    radius (1/min(H, W) cycles/px) within which the predicted peak z — Σ w (F-1) S over the
    root of Σ w² (S + N)(F-1)((F-1) S + N), noise and the signal's own sidelobes — reaches
    ``_COARSE_Z_FRACTION`` of its value over the whole spectrum (the coarse search band).
    """
    n = n_frames
    power_sum = total[0].real.square() + total[0].imag.square()  # |Σ a|²
    idx = shells.flatten()
    counts = torch.bincount(idx).double()
    norm = counts.clamp(min=1)
    cross = torch.bincount(idx, weights=(power_sum - power_each).flatten().double()) / norm
    each = torch.bincount(idx, weights=power_each.flatten().double()) / norm
    signal = (cross / (n * (n - 1))).clamp(min=0)
    noise = (each / n - signal).clamp(min=1e-30)
    s_map, n_map = signal[shells], noise[shells]  # [Hk, Wk]
    white = (n_map / (1 + smooth_gain)).median()
    smooth = white * smooth_gain  # P
    n_map = torch.maximum(n_map, white + smooth)
    w = s_map / (s_map + n_map / (n - 1)) * (1 - smooth / n_map) * filt.double()  # [Hk, Wk]
    noise_var = w.square() * (n - 1) * n_map * (n * s_map + n_map)
    mean = torch.cumsum(torch.bincount(idx, weights=(w * (n - 1) * s_map).flatten()), dim=0)
    var = noise_var + w.square() * (n - 1) ** 2 * s_map.square()
    var = torch.cumsum(torch.bincount(idx, weights=var.flatten()), dim=0)
    z = mean / var.sqrt().clamp(min=1e-300)
    radius = int((z >= _COARSE_Z_FRACTION * z.max()).nonzero()[0, 0]) if z.max() > 0 else 0
    return w.to(torch.float32), noise_var, radius


def _smooth_noise_gain(
    ky: torch.Tensor, kx: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    """Noise power added by :func:`_remove_smooth_component`, over white noise's ``(Hk, Wk)``.

    White noise of variance σ² per pixel has power σ² H W per coefficient. Its border jumps
    (a row or column difference, variance 2σ²) have power 2σ² W and 2σ² H, and the smooth
    part V / λ carries them as σ² [W sin²(π ky) + H sin²(π kx)] / (2 Λ²) with
    Λ = sin²(π ky) + sin²(π kx): relative to σ² H W about 1 / (2π² n k²) on an n × n
    frame, i.e. n / (2π² r²) in ring r (26× in ring 1 at 512², 52× at 1024²; below 1
    beyond ring √(n/20)).
    """
    h, w = shape
    sy = torch.sin(torch.pi * ky.double()).square()[:, None]
    sx = torch.sin(torch.pi * kx.double()).square()[None, :]
    lap = (sy + sx).square()
    lap[0, 0] = 1.0
    gain = (w * sy + h * sx) / (2 * h * w * lap)
    gain[0, 0] = 0.0
    return gain


def _coarse_size(radius: int, shape: tuple[int, int], n_c: tuple[int, int]) -> tuple[int, int]:
    """Coarse grid ``(n_y, n_x)``: at least ``_COARSE`` and wide enough to hold ring ``radius``."""
    m = min(shape)
    return tuple(
        min(n, _good_fft_size(max(_COARSE, math.ceil(2 * (radius + 1) * side / m))))
        for n, side in zip(n_c, shape)
    )


def _estimate(
    x: torch.Tensor,
    spec: torch.Tensor,
    max_shift_px: float,
    bfactor_px2: float,
    n_iter: int,
) -> torch.Tensor:
    """Leave-one-out iterative alignment of frames ``x`` ``(F, H, W)`` with rfft2 ``spec``.

    Returns shifts ``(F, 2)`` (dx, dy) px about their mean.
    """
    shape = tuple(x.shape[1:])
    h, w = shape
    n_c = (_crop_size(h, bfactor_px2), _crop_size(w, bfactor_px2))
    ky = torch.fft.fftfreq(n_c[0]) * n_c[0] / h  # cycles/px of the full frame
    kx = torch.fft.rfftfreq(n_c[1]) * n_c[1] / w
    g = _crop_spectrum(spec, shape, n_c)  # [F, Hk, Wk] low-pass box
    if g.untyped_storage().data_ptr() == spec.untyped_storage().data_ptr():
        g = g.clone()  # a view of spec: the edits below must not reach the caller's spectra
    g = _remove_smooth_component(g, x, ky, kx, n_c)
    g[:, 0, 0] = 0  # remove each frame's mean
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2  # [Hk, Wk] cycles²/px²
    filt = torch.exp(-bfactor_px2 * k2 / 4)
    shells = (k2.sqrt() * min(shape)).long()  # rings 1/min(H, W) cycles/px wide
    power_each = (g.real.square() + g.imag.square()).sum(dim=0)  # Σ_f |g_f|², shift-invariant
    gain = _smooth_noise_gain(ky, kx, shape)
    shifts = torch.zeros(x.shape[0], 2, dtype=torch.float64)
    for it in range(n_iter):
        aligned = g * phase_ramp(-shifts, ky, kx)  # frames moved back onto the reference
        total = aligned.sum(dim=0, keepdim=True)
        weight, noise_var, radius = _ring_weights(power_each, total, len(g), shells, filt, gain)
        n_coarse = _coarse_size(radius, shape, n_c)
        reference = torch.sub(total, aligned, out=aligned)  # leave-one-out sums, in place
        cross = reference.conj_physical_().mul_(g).mul_(weight)  # CC peaks at x = s_f
        freqs = (ky, kx, n_c[1])
        new, z = _find_peaks(cross, noise_var, freqs, n_c, n_coarse, shape, max_shift_px)
        weak = z < _significance_threshold(n_coarse, shape, max_shift_px)
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


def _significance_threshold(
    n_coarse: tuple[int, int], shape: tuple[int, int], max_shift_px: float
) -> float:
    """Smallest coarse-peak z taken as a real peak: the level that the largest of the search
    window's M grid samples of Gaussian noise exceeds with probability ``_FALSE_PEAK_P``."""
    m = 1
    for n, side in zip(n_coarse, shape):
        m *= min(n, 2 * math.floor(max_shift_px * n / side) + 1)
    return NormalDist().inv_cdf(1 - _FALSE_PEAK_P / max(m, 1))


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
    Edge jumps are removed by the periodic-plus-smooth decomposition (Moisan 2011); the noise
    that this adds to the lowest frequencies is weighted down. The peak within
    ``max_shift_px`` (default a quarter of the frame) is found on a coarse grid (at least
    128², as wide as the band that holds most of the predicted peak significance: it covers
    the Thon rings of a particle-free field, which lie beyond a 128² grid of a 1024² frame),
    then refined by evaluating the CC exactly on finer local grids plus a parabolic fit. A
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
