"""Cross-correlation peak search for frame alignment (:mod:`cryolib.processing.motion`).

A coarse peak on a small inverse-FFT grid of the low-pass cross-power spectrum, then the CC
evaluated exactly (a matrix DFT) on local grids 4× finer each and a parabolic fit. Spectra
are half-plane rfft2 boxes ``(F, Hk, Wk)``; positions are ``(dx, dy)`` px of the full frame.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch

_REFINE_POINTS = 9  # local grid (per axis) on which the cross-correlation is evaluated exactly
_COARSE = 128  # smallest grid (per axis) of the first, coarse cross-correlation search
_FALSE_PEAK_P = 1e-3  # chance that noise alone gives a frame a coarse peak taken as significant
_FINEST_SPACING_PX = 0.25  # refinement stops at this grid spacing (then a parabolic fit)


def good_fft_size(n: int) -> int:
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


def crop_size(n: int, bfactor_px2: float, floor: float = 1e-2) -> int:
    """FFT-friendly even box keeping |k| where exp(-B k²/4) > ``floor`` (at most n)."""
    k_cut = math.sqrt(4 * math.log(1 / floor) / bfactor_px2) if bfactor_px2 > 0 else 0.5
    n_c = good_fft_size(max(2 * math.ceil(k_cut * n), 16))
    return n if n_c >= n else n_c


def crop_spectrum(
    spec: torch.Tensor, shape: tuple[int, int], n_c: tuple[int, int]
) -> torch.Tensor:
    """Low-frequency box ``(F, n_cy, n_cx//2+1)`` of rfft2 spectra ``(F, H, W//2+1)``."""
    (h, w), (ny, nx) = shape, n_c
    if ny < h:
        spec = torch.cat([spec[:, : ny // 2], spec[:, h - ny // 2 :]], dim=1)
    return spec[:, :, : nx // 2 + 1] if nx < w else spec


def coarse_peak(
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


def parabola_offset(minus: torch.Tensor, centre: torch.Tensor, plus: torch.Tensor) -> torch.Tensor:
    """Vertex of the parabola through three equally spaced samples, in sample units."""
    denom = minus - 2 * centre + plus
    off = 0.5 * (minus - plus) / torch.where(denom.abs() > 0, denom, torch.ones_like(denom))
    return torch.where(denom < 0, off.clamp(-0.5, 0.5), torch.zeros_like(off))


def refine_peak(
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
    hermitian = hermitian_weights(n_x, kx.numel())
    ey = torch.exp(2j * torch.pi * ys[:, :, None] * ky.double()[None, None, :])  # [F, m, Hk]
    ex = torch.exp(2j * torch.pi * kx.double()[None, :, None] * xs[:, None, :])  # [F, Wk, m]
    ex = ex * hermitian[None, :, None]
    local = (ey.to(torch.complex64) @ cross @ ex.to(torch.complex64)).real  # [F, m, m]
    f, m, _ = local.shape
    flat = local.reshape(f, -1).argmax(dim=1)
    iy, ix = (flat // m).clamp(1, m - 2), (flat % m).clamp(1, m - 2)
    rows = torch.arange(f)
    dy = parabola_offset(local[rows, iy - 1, ix], local[rows, iy, ix], local[rows, iy + 1, ix])
    dx = parabola_offset(local[rows, iy, ix - 1], local[rows, iy, ix], local[rows, iy, ix + 1])
    return torch.stack([xs[rows, ix] + dx * spacing, ys[rows, iy] + dy * spacing], dim=1)


def hermitian_weights(n_x: int, n_kx: int) -> torch.Tensor:
    """How often each column of a half-plane spectrum ``(…, n_kx)`` counts in the full plane."""
    hermitian = torch.full((n_kx,), 2.0, dtype=torch.float64)
    hermitian[0] = 1.0
    if n_x % 2 == 0:
        hermitian[-1] = 1.0  # the Nyquist column of an even grid appears once
    return hermitian


def find_peaks(
    coarse: tuple[torch.Tensor, torch.Tensor],
    fine: torch.Tensor,
    freqs: tuple[torch.Tensor, torch.Tensor, int],
    n_c: tuple[int, int],
    n_coarse: tuple[int, int],
    shape: tuple[int, int],
    max_shift_px: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CC peaks ``(F, 2)``: coarse on an ``n_coarse`` grid, then exact local grids 4× finer each.

    ``coarse`` = (cross-power spectra, expected noise power ``(Hk, Wk)`` of each of their terms)
    picks the peak and its significance ``(F,)`` (returned too): its height over the standard
    deviation that noise alone gives the coarse CC. The refinement evaluates the ``fine``
    cross-power spectra around it.
    """
    cross, noise_var = coarse
    cc = torch.fft.irfft2(crop_spectrum(cross, n_c, n_coarse), s=n_coarse)
    peak, height = coarse_peak(cc, shape, max_shift_px)
    var = crop_spectrum(noise_var[None], n_c, n_coarse)[0]
    var = (var * hermitian_weights(n_coarse[1], var.shape[1])).sum()
    sd = var.sqrt() / (n_coarse[0] * n_coarse[1])
    z = height / sd if sd > 0 else torch.where(height > 0, torch.inf, 0.0)
    spacing = max(shape[0] / n_coarse[0], shape[1] / n_coarse[1]) / 4
    while True:
        peak = refine_peak(fine, freqs, peak, spacing)
        if spacing <= _FINEST_SPACING_PX:
            return peak, z
        spacing /= 4


def coarse_size(radius: int, shape: tuple[int, int], n_c: tuple[int, int]) -> tuple[int, int]:
    """Coarse grid ``(n_y, n_x)``: at least ``_COARSE`` and wide enough to hold ring ``radius``."""
    m = min(shape)
    return tuple(
        min(n, good_fft_size(max(_COARSE, math.ceil(2 * (radius + 1) * side / m))))
        for n, side in zip(n_c, shape)
    )


def significance_threshold(
    n_coarse: tuple[int, int], shape: tuple[int, int], max_shift_px: float
) -> float:
    """Smallest coarse-peak z taken as a real peak: the level that the largest of the search
    window's M grid samples of Gaussian noise exceeds with probability ``_FALSE_PEAK_P``."""
    m = 1
    for n, side in zip(n_coarse, shape):
        m *= min(n, 2 * math.floor(max_shift_px * n / side) + 1)
    return NormalDist().inv_cdf(1 - _FALSE_PEAK_P / max(m, 1))
