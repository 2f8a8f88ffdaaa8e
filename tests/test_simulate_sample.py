"""Tests for cryolib.simulate.sample: specimen maps, particle placement, attenuation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from cryolib.core.errors import CryolibError
from cryolib.simulate import sample as smp
from cryolib.simulate.optics import interaction_constant

SHAPE = (256, 256)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- ice
def test_ice_thickness_map_mean_and_gradient():
    t = smp.ice_thickness_map(SHAPE, 50.0, 0.2, _rng(), variation=0.0)
    assert t.shape == SHAPE and t.dtype == np.float32
    assert t.mean() == pytest.approx(50.0, rel=1e-4)
    assert (t.max() - t.min()) / 50.0 == pytest.approx(0.2, rel=1e-3)  # the gradient spans the field
    t2 = smp.ice_thickness_map(SHAPE, 50.0, 0.2, _rng(), variation=0.05)
    assert t2.mean() == pytest.approx(50.0, rel=1e-3) and t2.min() > 0


def test_ice_phase_noise_amplitude_scales_with_sqrt_thickness():
    thin = smp.ice_phase_noise(SHAPE, 4.0, 25.0, _rng(1))
    thick = smp.ice_phase_noise(SHAPE, 4.0, 100.0, _rng(1))
    assert thin.shape == SHAPE and thin.dtype == np.float32
    assert abs(float(thin.mean())) < 1e-3
    assert thick.std() / thin.std() == pytest.approx(2.0, rel=1e-4)  # variance ∝ thickness
    # physical size: ~45 V·Å per 4 Å pixel at 50 nm → ~0.03 rad at 300 kV
    mid = smp.ice_phase_noise(SHAPE, 4.0, 50.0, _rng(2))
    assert 0.015 < mid.std() < 0.05
    assert 30.0 < mid.std() / interaction_constant(300.0) < 70.0


def test_ice_phase_noise_spectrum_is_near_white_with_low_frequency_rolloff():
    img = smp.ice_phase_noise((512, 512), 4.0, 50.0, _rng(3)).astype(np.float64)
    power = np.abs(np.fft.rfft2(img)) ** 2
    ky = np.fft.fftfreq(512, d=4.0)[:, None]
    kx = np.fft.rfftfreq(512, d=4.0)[None, :]
    k = np.hypot(ky, kx)
    low = power[(k > 0) & (k < 1 / 400)].mean()
    mid = power[(k > 1 / 40) & (k < 1 / 20)].mean()
    high = power[(k > 1 / 10) & (k < 1 / 8)].mean()
    assert low < 0.6 * mid  # roll-off below ~1/30 Å⁻¹
    assert 0.5 < high / mid < 2.0  # near-white at these resolutions


def test_ice_phase_noise_follows_a_thickness_map():
    t = np.full(SHAPE, 20.0, dtype=np.float32)
    t[:, 128:] = 80.0
    phase = smp.ice_phase_noise(SHAPE, 4.0, t, _rng())
    ratio = phase[:, 140:250].std() / phase[:, 5:115].std()
    assert ratio == pytest.approx(2.0, rel=0.1)


def test_transmission_is_exponential():
    assert smp.transmission(0.0) == 1.0
    assert smp.transmission(350.0) == pytest.approx(np.exp(-1.0))
    t = np.array([[0.0, 50.0], [100.0, 700.0]])
    np.testing.assert_allclose(smp.transmission(t), np.exp(-t / 350.0), rtol=1e-6)
    assert smp.transmission(100.0, mean_free_path_nm=200.0) == pytest.approx(np.exp(-0.5))
    with pytest.raises(CryolibError):
        smp.transmission(10.0, mean_free_path_nm=0.0)


# --------------------------------------------------------------------------- carbon, contamination
def test_carbon_edge_covers_part_of_the_field_and_adds_phase():
    for seed in range(4):
        mask, phase, t = smp.carbon_edge((512, 512), 4.0, _rng(seed), thickness_nm=(10.0, 20.0))
        assert mask.dtype == bool and phase.shape == t.shape == (512, 512)
        assert 0.05 < mask.mean() < 0.75
        assert 10.0 <= t[mask].max() <= 20.0 and t[~mask].max() < 10.0
        # the film displaces ice: net phase ≈ σ (9.5 − 4.9) V × t
        step = phase[mask].mean() - phase[~mask].mean()
        expected = interaction_constant(300.0) * (smp.CARBON_MEAN_INNER_POTENTIAL_V - 4.87) * t[mask].mean() * 10
        assert step == pytest.approx(expected, rel=0.1)
    mask, _, t = smp.carbon_edge(SHAPE, 4.0, _rng(), carbon_only=True)
    assert mask.all() and np.ptp(t) == 0


def test_contaminants_are_thick_and_phase_limited():
    mask, phase, extra = smp.contaminants((512, 512), 4.0, 4, _rng(5), kind="crystalline")
    assert mask.any() and extra.max() >= 100.0
    assert phase.max() <= smp.CONTAMINANT_MAX_PHASE_RAD * 4 + 1e-6 and phase.min() >= 0
    assert smp.transmission(extra).min() < 0.5  # crystals are near-black
    mask, phase, extra = smp.contaminants((512, 512), 4.0, 4, _rng(6), kind="ethane")
    assert mask.any() and 50.0 <= extra.max() <= 260.0
    mask, phase, extra = smp.contaminants(SHAPE, 4.0, 0, _rng())
    assert not mask.any() and not extra.any() and not phase.any()
    with pytest.raises(CryolibError, match="contaminant kind"):
        smp.contaminants(SHAPE, 4.0, 1, _rng(), kind="dust")


def test_contaminant_size_scale_shrinks_them():
    big, _, _ = smp.contaminants((512, 512), 4.0, 5, _rng(12), kind="ethane")
    small, _, _ = smp.contaminants((512, 512), 4.0, 5, _rng(12), kind="ethane", size_scale=0.3)
    assert 0 < small.sum() < 0.2 * big.sum()


def test_crystalline_ice_has_dark_and_bright_grains():
    f = smp.crystalline_ice((512, 512), 4.0, _rng(7))
    assert f.shape == (512, 512) and f.dtype == np.float32
    assert 0.0 < f.min() and f.max() <= 1.0
    assert np.median(f) > 0.8 and f.min() < 0.72


# --------------------------------------------------------------------------- particle placement
def _nn_distances(xy: np.ndarray) -> np.ndarray:
    d, _ = cKDTree(xy).query(xy, k=2)
    return d[:, 1]


@pytest.mark.parametrize("aggregation", [0.0, 0.7])
def test_place_particles_never_overlap(aggregation):
    xy = smp.place_particles((1024, 1024), 250, 40.0, _rng(8), aggregation=aggregation, min_separation=0.8)
    assert xy.shape == (250, 2)
    assert _nn_distances(xy).min() >= 0.8 * 40.0 - 1e-9
    assert (xy >= 0).all() and (xy[:, 0] <= 1023).all() and (xy[:, 1] <= 1023).all()


def test_place_particles_respects_margin_and_forbidden_mask():
    forbidden = np.zeros((512, 512), dtype=bool)
    forbidden[:, :256] = True
    xy = smp.place_particles((512, 512), 60, 20.0, _rng(9), forbidden_mask=forbidden, margin_px=30)
    assert len(xy) == 60
    assert not forbidden[np.rint(xy[:, 1]).astype(int), np.rint(xy[:, 0]).astype(int)].any()
    assert (xy >= 30).all() and (xy <= 511 - 30).all()


def test_aggregation_increases_clumping():
    plain = np.mean([_nn_distances(smp.place_particles((1024, 1024), 120, 30.0, _rng(s))).mean() for s in range(3)])
    clumped = np.mean([_nn_distances(smp.place_particles((1024, 1024), 120, 30.0, _rng(s), aggregation=0.8)).mean() for s in range(3)])
    assert clumped < 0.7 * plain


def test_place_particles_crowded_field_returns_fewer():
    xy = smp.place_particles((128, 128), 500, 30.0, _rng(10))
    assert 0 < len(xy) < 500
    assert _nn_distances(xy).min() >= 24.0 - 1e-9


def test_place_particles_is_deterministic():
    a = smp.place_particles(SHAPE, 30, 20.0, _rng(11), aggregation=0.3)
    b = smp.place_particles(SHAPE, 30, 20.0, _rng(11), aggregation=0.3)
    np.testing.assert_array_equal(a, b)
    assert smp.place_particles(SHAPE, 0, 20.0, _rng()).shape == (0, 2)


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "call",
    [
        lambda: smp.ice_thickness_map(SHAPE, 0.0, 0.2, _rng()),
        lambda: smp.ice_phase_noise(SHAPE, 0.0, 50.0, _rng()),
        lambda: smp.carbon_edge(SHAPE, -1.0, _rng()),
        lambda: smp.crystalline_ice((0, 10), 4.0, _rng()),
        lambda: smp.place_particles(SHAPE, 10, 0.0, _rng()),
        lambda: smp.place_particles(SHAPE, 10, 10.0, _rng(), aggregation=1.5),
        lambda: smp.place_particles(SHAPE, 10, 10.0, _rng(), forbidden_mask=np.zeros((3, 3), bool)),
    ],
)
def test_bad_inputs_raise(call):
    with pytest.raises(CryolibError):
        call()
