"""Cross-correlation peak search (cryolib.processing.motion_peaks) against analytic cases."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
import torch

from cryolib.processing.motion_peaks import (
    find_peaks,
    good_fft_size,
    hermitian_weights,
    parabola_offset,
    significance_threshold,
)


@pytest.mark.parametrize(("n", "expected"), [(1, 2), (7, 8), (97, 100), (121, 128), (250, 250)])
def test_good_fft_size_is_the_next_even_5_smooth_integer(n, expected):
    assert good_fft_size(n) == expected


def test_parabola_vertex_is_exact_for_a_parabola():
    vertex = 0.3
    f = [-((x - vertex) ** 2) for x in (-1.0, 0.0, 1.0)]
    off = parabola_offset(*(torch.tensor([v], dtype=torch.float64) for v in f))
    assert float(off) == pytest.approx(vertex, abs=1e-12)


@pytest.mark.parametrize("width", [8, 9])
def test_hermitian_weights_count_every_full_plane_column_once(width):
    assert float(hermitian_weights(width, width // 2 + 1).sum()) == width


def test_significance_threshold_is_the_gaussian_quantile_of_the_window_maximum():
    # 64² coarse grid of a 256² frame: 4 px per sample; ±40 px holds 2·10 + 1 samples per axis
    m = 21 * 21
    expected = NormalDist().inv_cdf(1 - 1e-3 / m)
    assert significance_threshold((64, 64), (256, 256), 40.0) == pytest.approx(expected)


def test_find_peaks_recovers_a_subpixel_shift_of_a_gaussian_peak():
    """Cross power of a Gaussian blob shifted by s: its CC is a Gaussian centred on s."""
    n, s = 128, (5.37, -11.62)
    ky = torch.fft.fftfreq(n).double()
    kx = torch.fft.rfftfreq(n).double()
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    cross = torch.exp(-2 * math.pi**2 * 4.0 * k2) * torch.exp(
        -2j * math.pi * (kx[None, :] * s[0] + ky[:, None] * s[1])
    )
    cross = cross.to(torch.complex64)[None]
    noise = torch.ones(cross.shape[1:], dtype=torch.float64)
    peak, z = find_peaks((cross, noise), cross, (ky.float(), kx.float(), n), (n, n), (64, 64), (n, n), 32.0)
    assert peak[0].tolist() == pytest.approx(list(s), abs=0.01)
    assert float(z[0]) > 0


def test_find_peaks_respects_the_search_radius():
    n = 64
    ky, kx = torch.fft.fftfreq(n), torch.fft.rfftfreq(n)
    cross = torch.exp(-2j * math.pi * (kx[None, :] * 20.0 + ky[:, None] * 0.0))[None].to(torch.complex64)
    noise = torch.ones(cross.shape[1:], dtype=torch.float64)
    peak, _ = find_peaks((cross, noise), cross, (ky, kx, n), (n, n), (n, n), (n, n), 8.0)
    assert float(peak[0].abs().max()) <= 8.0 + 1.0  # the +20 px peak lies outside ±8 px
