"""cryolib.simulate.tilt_series: tilt geometry against analytic positions, the 0° tilt against the volume's
z-sum, dose bookkeeping, Poisson shot noise on a flat field, determinism and bad inputs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cryolib.core.errors import CryolibError
from cryolib.simulate import tilt_series as ts
from cryolib.simulate.potential import euler_zyz_to_rotation
from cryolib.simulate.sample import transmission

#: A tiny series (one particle model, 11 tilts) for the physics tests.
TINY = ts.tilt_series_config("smoke", size_px=48, depth_px=32, tilt_step_deg=12.0, n_particles=2,
                             diameter_A=(150.0, 150.0), ice_thickness_A=240.0)


@pytest.fixture(scope="module")
def series() -> ts.TiltSeries:
    return ts.simulate_tilt_series(TINY, np.random.default_rng(3))


def test_tilt_angles_and_dose_symmetric_order():
    angles = ts.tilt_angles(60, 3)
    assert len(angles) == 41 and angles[0] == -60 and angles[-1] == 60 and angles[20] == 0
    order = ts.dose_symmetric_order(angles, group=2)
    assert sorted(order) == list(range(41))  # a permutation
    sequence = angles[np.argsort(order)]
    assert list(sequence[:9]) == [0, 3, 6, -3, -6, 9, 12, -9, -12]  # Hagen: 0°, then pairs alternating sides
    assert np.all(np.diff(np.abs(sequence[1::2])) >= 0)  # |θ| never decreases on one side


def test_tilt_rotation_is_relion_tilt_about_y_and_lands_points_at_x_cos_plus_z_sin():
    angles = np.array([-60.0, -15.0, 0.0, 35.0, 90.0])
    T = ts.tilt_rotation_matrices(angles)
    relion = euler_zyz_to_rotation(np.stack([np.zeros(5), -angles, np.zeros(5)], axis=1))
    np.testing.assert_allclose(T, relion, atol=1e-12)
    # one Gaussian atom at (x, y, z) = (6, -4, 9) px lands at x' = x cos θ + z sin θ, y' = y
    atom = np.array([[6.0, -4.0, 9.0]])
    proj = ts.project_atoms(atom, np.array([100.0]), np.array([1.2]), T[:4], (40, 48), 1.0).numpy()
    yy, xx = np.mgrid[:40, :48]
    for p, a in zip(proj, np.deg2rad(angles[:4])):
        cx, cy = (p * xx).sum() / p.sum() - 24, (p * yy).sum() / p.sum() - 20
        assert cx == pytest.approx(6 * np.cos(a) + 9 * np.sin(a), abs=0.02)
        assert cy == pytest.approx(-4.0, abs=0.02)
        assert p.sum() == pytest.approx(100.0, rel=1e-5)  # mass is kept: Σ proj × pixel² = weight


def test_zero_tilt_is_the_z_sum_of_the_volume(series):
    i0 = int(np.argmin(np.abs(series.angles_deg)))
    assert series.angles_deg[i0] == 0.0
    analytic = series.volume.sum(axis=0) * series.pixel_size_A  # V × Å = V·Å
    scale = float(np.abs(analytic).max())
    assert scale > 0
    np.testing.assert_allclose(series.projected_VA[i0], analytic, atol=1e-4 * scale)
    # and a tilted view is not (the test can fail)
    assert np.abs(series.projected_VA[-1] - analytic).max() > 0.1 * scale


def test_projections_keep_the_mass_of_particles_inside_the_field(series):
    total = series.volume.sum() * series.pixel_size_A**3  # V·Å³
    sums = series.projected_VA.sum(axis=(1, 2)) * series.pixel_size_A**2
    np.testing.assert_allclose(sums, total, rtol=2e-3)


def test_dose_per_tilt_sums_to_the_total_and_prior_dose_follows_the_order(series):
    assert series.dose_e_per_A2.sum() == pytest.approx(TINY.dose_e_per_A2)
    assert np.allclose(series.dose_e_per_A2, TINY.dose_e_per_A2 / len(series.angles_deg))
    first = int(np.argmin(series.acquisition_order))
    assert series.angles_deg[first] == 0.0 and series.prior_dose_e_per_A2[first] == 0.0
    last = int(np.argmax(series.acquisition_order))
    assert series.prior_dose_e_per_A2[last] == pytest.approx(TINY.dose_e_per_A2 - series.dose_e_per_A2[last])


def test_flat_field_counts_are_poisson_with_the_dose_and_ice_transmission():
    cfg = replace(TINY, size_px=128, n_particles=0)
    s = ts.simulate_tilt_series(cfg, np.random.default_rng(0))
    expected = (cfg.dose_e_per_A2 / len(s.angles_deg)) * cfg.pixel_size_A**2 * \
        transmission(cfg.ice_thickness_A / 10 / np.cos(np.deg2rad(s.angles_deg)))
    np.testing.assert_allclose(s.clean.mean(axis=(1, 2)), expected, rtol=1e-5)
    assert np.allclose(s.clean.std(axis=(1, 2)), 0, atol=1e-3)  # flat: no specimen, no contrast
    mean, var = s.tilts.mean(axis=(1, 2)), s.tilts.var(axis=(1, 2))
    np.testing.assert_allclose(mean, expected, rtol=0.02)
    np.testing.assert_allclose(var / mean, 1.0, atol=0.06)  # Poisson: variance = mean (128² px per tilt)
    assert np.all(s.tilts == np.round(s.tilts))  # whole electrons


def test_particles_darken_in_underfocus_and_sit_in_the_slab(series):
    p = series.particles
    assert len(p) == 2
    half = TINY.ice_thickness_A / 2 / TINY.pixel_size_A
    assert np.all(np.abs(p["z_px"] - TINY.depth_px // 2) + p["diameter_px"] / 2 <= half + 1e-6)
    i0 = int(np.argmin(np.abs(series.angles_deg)))
    inside = series.projected_VA[i0] > 0.2 * series.projected_VA[i0].max()
    clean = series.clean[i0]
    assert clean[inside].mean() < clean[~inside].mean()  # phase contrast in underfocus: protein is dark


def test_same_seed_same_series_other_seed_differs():
    cfg = replace(TINY, size_px=32, depth_px=24, n_particles=1, diameter_A=(100.0, 100.0), ice_thickness_A=200.0)
    a, b = (ts.simulate_tilt_series(cfg, np.random.default_rng(5)) for _ in range(2))
    c = ts.simulate_tilt_series(cfg, np.random.default_rng(6))
    assert np.array_equal(a.tilts, b.tilts) and np.array_equal(a.volume, b.volume)
    assert not np.array_equal(a.tilts, c.tilts)


@pytest.mark.parametrize("changes, match", [
    ({"tilt_max_deg": 95.0}, "tilt_max_deg"),
    ({"ice_thickness_A": 100.0}, "ice"),
    ({"family": "teapot"}, "unknown structure family"),
    ({"dose_e_per_A2": 0.0}, "must be > 0"),
    ({"depth_px": 8}, "must hold"),
])
def test_bad_configs_raise_cryolib_error(changes, match):
    with pytest.raises(CryolibError, match=match):
        replace(TINY, **changes)


def test_bad_angles_and_profiles_raise_cryolib_error():
    with pytest.raises(CryolibError, match="±90"):
        ts.tilt_rotation_matrices(np.array([0.0, 91.0]))
    with pytest.raises(CryolibError, match="±90"):
        ts.tilt_rotation_matrices(np.array([np.nan]))
    with pytest.raises(CryolibError, match="unknown profile"):
        ts.tilt_series_config("huge")
    with pytest.raises(CryolibError):
        ts.tilt_angles(120, 3)
