"""cryolib.evaluate.fsc against analytic cases: identical maps, a known signal-to-noise ratio, a
hand-interpolated 0.143 crossing, and bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryolib.core.errors import CryolibError
from cryolib.evaluate.fsc import fourier_shell_correlation, resolution_at, soft_sphere_mask


def _noise(shape, seed):
    return np.random.default_rng(seed).normal(size=shape)


def test_identical_half_maps_correlate_perfectly_in_every_shell():
    vol = _noise((24, 24, 24), 0)
    table = fourier_shell_correlation(vol, 3.0 * vol, pixel_size_A=2.0)
    assert list(table.columns[:4]) == ["shell", "frequency_per_A", "resolution_A", "fsc"]
    assert len(table) == 13 and np.allclose(table["fsc"], 1.0, atol=1e-12)
    assert table["frequency_per_A"].iloc[-1] == pytest.approx(0.25)  # Nyquist of 2 Å voxels
    assert table["resolution_A"].iloc[-1] == pytest.approx(4.0) and math.isinf(table["resolution_A"].iloc[0])
    assert resolution_at(table) == pytest.approx(4.0)  # never crosses: Nyquist


def test_independent_noise_gives_fsc_near_zero_and_equal_snr_gives_one_half():
    """Two maps s + n1, s + n2 with white s, n of equal variance: FSC = S / (S + N) = 0.5 per shell."""
    shape = (32, 32, 32)
    s = _noise(shape, 1)
    a, b = s + _noise(shape, 2), s + _noise(shape, 3)
    fsc = fourier_shell_correlation(a, b, 1.0)["fsc"].to_numpy()
    assert np.mean(fsc[4:]) == pytest.approx(0.5, abs=0.02)
    assert np.all(np.abs(fsc[6:] - 0.5) < 0.12)
    noise = fourier_shell_correlation(_noise(shape, 4), _noise(shape, 5), 1.0)["fsc"].to_numpy()
    assert np.abs(noise[4:]).mean() < 0.03 and np.abs(noise[6:]).max() < 0.15


def test_shell_counts_cover_the_sphere():
    table = fourier_shell_correlation(_noise((16, 16, 16), 0), _noise((16, 16, 16), 1), 1.0)
    # the full grid holds 16^3 voxels; those beyond Nyquist (the cube's corners) are left out
    r = np.sqrt(sum(g**2 for g in np.meshgrid(*[np.fft.fftfreq(16) * 16] * 3, indexing="ij")))
    assert table["n_voxels"].sum() == int((np.rint(r) <= 8).sum())
    assert table["n_voxels"].iloc[0] == 1


def test_resolution_interpolates_the_first_crossing_by_hand():
    # D = 8, 1 Å voxels: shell s at s / 8 per Å. The curve crosses 0.143 between shells 2 (0.5) and 3 (0.1):
    # t = (0.5 - 0.143) / 0.4 = 0.8925, f = 0.25 + 0.8925 * 0.125 = 0.3615625 / Å, 1 / f = 2.76577 Å.
    table = pd.DataFrame({"frequency_per_A": np.arange(5) / 8.0, "fsc": [1.0, 0.9, 0.5, 0.1, 0.6]})
    assert resolution_at(table) == pytest.approx(2.765773, abs=1e-5)
    # first crossing, not the last: the rise at shell 4 does not count
    assert resolution_at(table, threshold=0.5) == pytest.approx(1 / 0.25)
    # DC counts as 1: a curve below the threshold from shell 1 on interpolates from (0, 1) to (1/8, 0.0):
    # f = 0.125 * (1 - 0.143) / 1 = 0.107125 / Å, 9.3349 Å (finite, beyond the 8 Å box)
    early = table.assign(fsc=[-1.0, 0.0, 0.5, 0.1, 0.6])
    assert resolution_at(early) == pytest.approx(1 / 0.107125)
    # never crossing gives Nyquist (2 Å here)
    flat = table.assign(fsc=[1.0, 0.9, 0.8, 0.7, 0.6])
    assert resolution_at(flat) == pytest.approx(2.0)


def test_soft_sphere_mask_profile():
    m = soft_sphere_mask(32, radius_px=8.0, edge_px=4.0)
    c = 16
    assert m.shape == (32, 32, 32) and m[c, c, c] == 1.0 and m[c, c, c + 8] == 1.0
    assert m[c, c, c + 10] == pytest.approx(0.5, abs=1e-6) and m[c, c, c + 12] == 0.0 and m[0, 0, 0] == 0.0
    assert set(np.unique(soft_sphere_mask(16, 4.0, 0.0))) == {0.0, 1.0}


@pytest.mark.parametrize("args, match", [
    (((8, 8, 8), (8, 8, 9), 1.0), "same shape"),
    (((8, 8), (8, 8), 1.0), "cubic"),
    (((8, 8, 8), (8, 8, 8), 0.0), "voxel size"),
])
def test_bad_maps_raise(args, match):
    a, b, px = args
    with pytest.raises(CryolibError, match=match):
        fourier_shell_correlation(np.zeros(a), np.zeros(b), px)


def test_bad_tables_and_masks_raise():
    with pytest.raises(CryolibError, match="fourier_shell_correlation table"):
        resolution_at(pd.DataFrame({"fsc": [1.0, 0.5]}))
    with pytest.raises(CryolibError, match="threshold"):
        resolution_at(pd.DataFrame({"frequency_per_A": [0.0, 0.1], "fsc": [1.0, 0.5]}), threshold=1.5)
    with pytest.raises(CryolibError, match="NaN"):
        fourier_shell_correlation(np.full((8, 8, 8), np.nan), np.zeros((8, 8, 8)), 1.0)
    with pytest.raises(CryolibError, match="radius"):
        soft_sphere_mask(16, -1.0)
