"""Tests for cryolib.simulate.micrograph: image formation against analytic results, labels, seeds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cryolib.core.errors import CryolibError
from cryolib.simulate import sample as smp
from cryolib.simulate.micrograph import DEFECTS, AcquisitionConfig, SampleConfig, radiation_damage_filter, simulate_micrograph
from cryolib.simulate.optics import ctf_zero_frequencies, electron_wavelength_A, power_spectrum, radial_average
from cryolib.simulate.structures import make_structure

SMALL = AcquisitionConfig(size_px=256, n_frames=8, astigmatism_um=0.0)
FLAT = SampleConfig(ice_thickness_nm=(50.0, 50.0), ice_gradient=0.0, contaminants_per_1024=0.0)


@pytest.fixture(scope="module")
def structure():
    return make_structure("globular", 160.0, np.random.default_rng(0))


def _sim(structure, acq=SMALL, sample=FLAT, seed=0, **kw):
    return simulate_micrograph(structure, acq, sample, np.random.default_rng(seed), **kw)


def test_clean_background_matches_dose_times_transmission(structure):
    sim = _sim(structure, defect="empty")
    expected = SMALL.dose_e_per_A2 * SMALL.pixel_size_A**2 * np.exp(-sim.meta["ice_thickness_nm"] / smp.ICE_MEAN_FREE_PATH_NM)
    assert sim.clean.dtype == np.float32 and sim.clean.shape == (256, 256)
    assert sim.clean.mean() == pytest.approx(expected, rel=2e-3)
    assert sim.meta["ice_thickness_nm"] == pytest.approx(50.0, rel=0.05)  # the field mean of a smooth ±5% map


def test_particle_free_region_keeps_the_analytic_mean(structure):
    acq = dataclasses.replace(SMALL, size_px=384)
    sim = _sim(structure, acq=acq, sample=dataclasses.replace(FLAT, particles_per_1024=(60, 60)), seed=1)
    yy, xx = np.mgrid[0:384, 0:384]
    far = np.ones((384, 384), dtype=bool)
    for x, y in sim.particles[["x", "y"]].to_numpy():
        far &= np.hypot(xx - x, yy - y) > 1.5 * sim.particles["diameter_px"].iloc[0]
    assert far.mean() > 0.1
    expected = acq.dose_e_per_A2 * acq.pixel_size_A**2 * np.exp(-sim.meta["ice_thickness_nm"] / smp.ICE_MEAN_FREE_PATH_NM)
    assert sim.clean[far].mean() == pytest.approx(expected, rel=0.01)


def test_full_mean_matches_clean_within_poisson_error_and_halves_add_up(structure):
    sim = _sim(structure, defect="empty", keep_frames=True)
    n = sim.full.size
    poisson_sem = np.sqrt(sim.clean.mean() / n)
    assert abs(sim.full.mean() - sim.clean.mean()) < 5 * poisson_sem + 1e-3 * sim.clean.mean()
    np.testing.assert_array_equal(sim.full, sim.odd + sim.even)
    assert sim.frames.shape == (8, 256, 256) and np.issubdtype(sim.frames.dtype, np.unsignedinteger)
    assert sim.frames.sum(axis=0).mean() == pytest.approx(sim.full.mean(), rel=2e-3)
    assert sim.odd.mean() == pytest.approx(sim.even.mean(), rel=0.02)


def test_noise_is_dose_dependent_shot_noise(structure):
    # without drift the summed frames are the clean image plus pure Poisson noise
    still = dataclasses.replace(SMALL, drift_A=0.0)
    for dose in (20.0, 80.0):
        sim = _sim(structure, acq=dataclasses.replace(still, dose_e_per_A2=dose), defect="empty", keep_frames=True)
        resid = sim.frames.sum(axis=0, dtype=np.float64) - sim.clean
        assert resid.var() / sim.clean.mean() == pytest.approx(1.0, abs=0.03)
        assert sim.clean.mean() == pytest.approx(dose * 16.0 * np.exp(-sim.meta["ice_thickness_nm"] / 350.0), rel=2e-3)
    # with drift and motion correction (Fourier shifts are all-pass) the noise stays Poisson
    sim = _sim(structure, sample=dataclasses.replace(FLAT, particles_per_1024=(150, 150)), seed=7)
    resid = (sim.full - sim.clean).astype(np.float64)
    assert 0.9 < resid.var() / sim.clean.mean() < 1.2


def test_particles_ground_truth_and_dark_contrast(structure):
    acq = dataclasses.replace(SMALL, size_px=384, defocus_um=(2.0, 2.0))
    sim = _sim(structure, acq=acq, sample=dataclasses.replace(FLAT, particles_per_1024=(100, 100)), seed=2)
    p = sim.particles
    assert list(p.columns) == ["x", "y", "diameter_px", "rot_deg", "tilt_deg", "psi_deg"]
    assert len(p) == sim.meta["n_particles"] and 8 <= len(p) <= 25  # ~100 × 384²/1024² = 14
    assert ((p.x >= 0) & (p.x < 384) & (p.y >= 0) & (p.y < 384)).all()
    assert p.diameter_px.iloc[0] == pytest.approx(structure.diameter_A / 4.0)
    yy, xx = np.mgrid[0:384, 0:384]
    near = np.zeros((384, 384), dtype=bool)
    for x, y in p[["x", "y"]].to_numpy():
        near |= np.hypot(xx - x, yy - y) < 0.3 * p.diameter_px.iloc[0]
    assert sim.clean[near].mean() < sim.clean[~near].mean()  # underfocus: dark protein on light ice
    assert 0 < sim.meta["snr_true"] < 1
    assert sim.meta["snr_true_dB"] == pytest.approx(10 * np.log10(sim.meta["snr_true"]))


def test_thon_rings_at_the_analytic_ctf_zeros(structure):
    defocus = 1.5
    acq = AcquisitionConfig(size_px=512, n_frames=8, defocus_um=(defocus, defocus), astigmatism_um=0.0)
    sim = _sim(structure, acq=acq, defect="empty", seed=3)
    zeros = ctf_zero_frequencies(4, defocus)
    lam = electron_wavelength_A(300.0)
    for image, max_ratio in ((sim.clean, 0.3), (sim.full, 0.85)):
        k, prof = radial_average(power_spectrum(image), 4.0)
        # maxima of |CTF|²: the phase at (n − ½)π, between the zeros
        gamma = np.pi * lam * defocus * 1e4 * k**2 - np.pi / 2 * 2.7e7 * lam**3 * k**4 + np.arcsin(0.07)
        for z in zeros[zeros < 0.12]:
            window = np.abs(k - z) < 0.004
            k_min = k[window][np.argmin(prof[window])]
            assert abs(k_min - z) <= 0.0012  # the minimum sits on the zero (±2.5 bins)
            peak = np.abs(k - z) < 0.02
            top = prof[peak & (np.abs(np.sin(gamma)) > 0.95)].mean()
            assert prof[window].min() < max_ratio * top


def test_radiation_damage_filter_matches_grant_grigorieff():
    d = radiation_damage_filter((200, 200), 1.0, 50.0, 40).numpy()
    assert d.shape == (200, 101) and d[0, 0] == pytest.approx(1.0, abs=1e-6)
    k = 20 / 200  # 1/10 Å
    ne = 0.245 * k**-1.665 + 2.81
    exposure = (np.arange(40) + 0.5) * 50.0 / 40
    assert d[0, 20] == pytest.approx(np.exp(-exposure / (2 * ne)).mean(), rel=1e-4)
    assert (np.diff(d[0]) <= 1e-7).all()  # more damage at higher resolution


@pytest.mark.parametrize("defect", DEFECTS)
def test_defects_carry_their_labels(structure, defect):
    sim = _sim(structure, sample=SampleConfig(contaminants_per_1024=0.0), defect=defect, seed=4)
    assert sim.meta["quality"] == "bad" and sim.meta["defect"] == defect
    assert np.isfinite(sim.full).all() and sim.full.min() >= 0
    if defect in ("empty", "carbon_only"):
        assert len(sim.particles) == 0 and sim.meta["n_particles"] == 0
    if defect == "carbon_only":
        assert sim.meta["carbon_fraction"] == 1.0
    if defect == "thick_ice":
        assert 150.0 * 0.9 < sim.meta["ice_thickness_nm"] < 300.0 * 1.1
    if defect == "contamination":
        assert sim.meta["contaminant_fraction"] >= 0.15
    if defect == "severe_drift":
        assert sim.meta["drift_total_px"] > 5 * SMALL.drift_A / SMALL.pixel_size_A


def test_good_micrograph_is_labelled_good(structure):
    sim = _sim(structure)
    assert sim.meta["quality"] == "good" and sim.meta["defect"] == ""
    assert sim.meta["shift_error_rms_px"] < 0.5
    assert sim.frames is None
    for key in ("defocus_u_um", "defocus_v_um", "astigmatism_angle_deg", "pixel_size_A", "voltage_kV", "cs_mm",
                "amplitude_contrast", "b_factor_A2", "dose_e_per_A2", "n_frames", "ice_thickness_nm", "drift_total_px"):
        assert key in sim.meta


def test_same_seed_same_micrograph(structure):
    a = _sim(structure, sample=SampleConfig(carbon_edge_probability=1.0), seed=5)
    b = _sim(structure, sample=SampleConfig(carbon_edge_probability=1.0), seed=5)
    np.testing.assert_array_equal(a.full, b.full)
    np.testing.assert_array_equal(a.clean, b.clean)
    assert a.particles.equals(b.particles)
    assert {k: v for k, v in a.meta.items() if k != "timing_s"} == {k: v for k, v in b.meta.items() if k != "timing_s"}
    c = _sim(structure, sample=SampleConfig(carbon_edge_probability=1.0), seed=6)
    assert not np.array_equal(a.full, c.full)


@pytest.mark.parametrize(
    "make",
    [
        lambda: AcquisitionConfig(size_px=16),
        lambda: AcquisitionConfig(pixel_size_A=0.0),
        lambda: AcquisitionConfig(dose_e_per_A2=-1.0),
        lambda: AcquisitionConfig(n_frames=1),
        lambda: AcquisitionConfig(defocus_um=(2.0, 1.0)),
        lambda: SampleConfig(ice_thickness_nm=(0.0, 10.0)),
        lambda: SampleConfig(aggregation=2.0),
        lambda: SampleConfig(contaminant_size_scale=0.0),
    ],
)
def test_bad_configs_raise(make):
    with pytest.raises(CryolibError):
        make()


def test_unknown_defect_raises(structure):
    with pytest.raises(CryolibError, match="unknown defect"):
        _sim(structure, defect="blurry")
