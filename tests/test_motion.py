"""Motion correction: recovered drift, odd/even/full triplets (DRACO §3), dose weighting."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from cryolib.core.errors import CryolibError
from cryolib.processing.motion import (
    align_frames,
    estimate_shifts,
    exposure_filter,
    motion_correct,
    sum_triplet,
)
from cryolib.simulate.micrograph import AcquisitionConfig, SampleConfig, simulate_micrograph
from cryolib.simulate.movie import drift_trajectory, expose_movie, shift_image
from cryolib.simulate.optics import ctf_2d
from cryolib.simulate.structures import make_structure

PIXEL_A, DOSE_PER_FRAME = 4.0, 1.0  # Å/px, e⁻/Å² → 16 counts/px/frame


def _specimen(n: int, seed: int) -> np.ndarray:
    """Noise-free micrograph-like texture: smoothed random field, 5 % contrast (std/mean)."""
    field = gaussian_filter(np.random.default_rng(seed).normal(size=(n, n)), 4.0, mode="wrap")
    return 1.0 + 0.05 * field / field.std()


def _ctf_texture(n: int, seed: int) -> np.ndarray:
    """Ice-like texture: white noise through a 1.5 µm CTF (Thon rings), 5 % contrast."""
    noise = np.random.default_rng(seed).normal(size=(n, n))
    ctf = ctf_2d((n, n), PIXEL_A, 1.5, 1.5, 0.0, b_factor_A2=200.0).numpy()
    texture = np.fft.irfft2(np.fft.rfft2(noise) * ctf, s=(n, n))
    return 1.0 + 0.05 * texture / texture.std()


def _movie(
    specimen: np.ndarray, n_frames: int, seed: int, severe: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Counts at DOSE_PER_FRAME with a drift trajectory plus sub-pixel jitter (the truth)."""
    rng = np.random.default_rng(seed)
    truth = drift_trajectory(n_frames, 20.0, PIXEL_A, rng, severe=severe)
    truth = truth + rng.uniform(-0.5, 0.5, truth.shape)
    expected = specimen * DOSE_PER_FRAME * PIXEL_A**2 * n_frames
    return expose_movie(expected, n_frames, truth, rng, intraframe_blur=severe), truth


def _centred(shifts: np.ndarray) -> np.ndarray:
    return shifts - shifts.mean(axis=0)


@pytest.mark.parametrize(
    ("texture", "n_frames", "severe"),
    [("smooth", 30, False), ("smooth", 20, True), ("thon", 20, False)],
)
def test_recovers_known_drift_at_realistic_dose(texture, n_frames, severe):
    specimen = (_specimen if texture == "smooth" else _ctf_texture)(256, n_frames)
    movie, truth = _movie(specimen, n_frames, seed=n_frames, severe=severe)
    est = estimate_shifts(movie)
    assert est.shape == (n_frames, 2) and np.all(est[0] == 0)  # relative to frame 0
    err = _centred(est) - _centred(truth)
    assert np.abs(err).max() < 0.5
    assert np.sqrt(np.mean(err**2)) < 0.2


@pytest.mark.parametrize("seed", [0, 1])
def test_signal_only_above_the_low_resolution_band(seed):
    """Particle-free ice: all the signal is CTF-modulated texture beyond 0.26 cycles/px.

    A fixed ≤128² coarse search (k < 0.25 cycles/px at 256², < 0.0625 at 1024²) held only
    noise there and locked onto spurious peaks tens of px away; its band must follow the signal.
    """
    n, rng = 256, np.random.default_rng(seed)
    k = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.rfftfreq(n)[None, :])
    band = (k > 0.26) & (k < 0.4)
    texture = np.fft.irfft2(np.fft.rfft2(rng.normal(size=(n, n))) * band, s=(n, n))
    specimen = 1.0 + 0.05 * texture / texture.std()
    movie, truth = _movie(specimen, 20, seed)
    err = _centred(estimate_shifts(movie)) - _centred(truth)
    assert np.abs(err).max() < 0.2


def test_particle_free_micrograph_is_aligned():
    """Regression: a simulated empty field (ice gradient + CTF-modulated ice, 20 frames) whose
    shifts came out 71 px rms wrong at 512² (and 23–65 px on every seed at 1024²)."""
    sim = simulate_micrograph(
        make_structure("globular", 200.0, np.random.default_rng(0)),
        AcquisitionConfig(size_px=512, n_frames=20),
        SampleConfig(contaminants_per_1024=0),
        np.random.default_rng(2),
        defect="empty",
    )
    assert sim.meta["shift_error_rms_px"] < 0.2


def test_pure_noise_gives_no_motion():
    """No significant CC peak anywhere: no shifts, rather than a random one per frame."""
    movie = np.random.default_rng(0).poisson(16.0, size=(20, 128, 128)).astype(np.uint16)
    np.testing.assert_array_equal(estimate_shifts(movie), 0.0)


@pytest.mark.parametrize(
    ("shape", "pad", "atol"),
    [((128, 128), 0, 0.02), ((63, 96), 0, 0.02), ((128, 128), 32, 0.1)],
)
def test_noise_free_subpixel_accuracy(shape, pad, atol):
    """Periodic frames, and frames cropped from a larger field (content enters at the edges)."""
    big = (shape[0] + 2 * pad, shape[1] + 2 * pad)
    field = gaussian_filter(np.random.default_rng(1).normal(size=big), 4.0, mode="wrap")
    truth = np.random.default_rng(1).uniform(-6, 6, (6, 2))
    frames = shift_image(field.astype(np.float32), truth).numpy()
    frames = frames[:, pad : pad + shape[0], pad : pad + shape[1]]
    est = estimate_shifts(frames, relative_to="mean")
    np.testing.assert_allclose(est, _centred(truth), atol=atol)


def test_align_frames_undoes_shifts():
    img = _specimen(64, 2).astype(np.float32)
    truth = np.random.default_rng(2).uniform(-3, 3, (5, 2))
    aligned = align_frames(shift_image(img, truth), truth)
    assert aligned.dtype == np.float32
    np.testing.assert_allclose(aligned, np.broadcast_to(img, aligned.shape), atol=1e-4)


def test_triplet_odd_even_are_dracos_frames():
    frames = np.broadcast_to(np.arange(1, 8, dtype=np.float32)[:, None, None], (7, 4, 4))
    full, odd, even = sum_triplet(frames)
    np.testing.assert_array_equal(odd, 1 + 3 + 5 + 7)  # frames 1, 3, 5, 7 (1-based)
    np.testing.assert_array_equal(even, 2 + 4 + 6)
    np.testing.assert_array_equal(full, odd + even)


@pytest.mark.parametrize("dose_weighting", [False, True])
def test_motion_correct_triplet(dose_weighting):
    movie, _ = _movie(_specimen(128, 3), 12, seed=3)
    out = motion_correct(
        movie,
        dose_weighting=dose_weighting,
        dose_per_frame_e_per_A2=DOSE_PER_FRAME,
        pixel_size_A=PIXEL_A,
    )
    assert set(out) == {"full", "odd", "even", "shifts_px"}
    assert out["full"].dtype == np.float32 and out["full"].shape == (128, 128)
    np.testing.assert_array_equal(out["full"], out["odd"] + out["even"])  # exactly
    assert np.all(out["shifts_px"][0] == 0)
    # dose weights are 1 at DC: the mean counts of each half are preserved
    counts = movie.astype(np.float64)
    assert out["odd"].mean() == pytest.approx(counts[0::2].sum(0).mean(), rel=1e-4)
    assert out["even"].mean() == pytest.approx(counts[1::2].sum(0).mean(), rel=1e-4)
    plain_full = sum_triplet(align_frames(movie, out["shifts_px"]))[0]
    close = np.allclose(out["full"], plain_full, rtol=1e-4, atol=1e-2)
    assert close != dose_weighting  # same as align + sum, unless dose-weighted


def test_exposure_filter_preserves_noise_power_and_dc():
    w = exposure_filter(20, 1.0, (64, 64), 1.0).numpy()
    assert w.shape == (20, 64, 33)
    np.testing.assert_allclose((w**2).sum(0), 20.0, rtol=1e-4)  # Σ_f w_f(k)² = F
    assert np.all(w[:, 0, 0] == 1)
    assert np.all(np.diff(w[:, 10, 10]) < 0)  # later frames lose high frequencies


def test_bad_inputs_raise():
    good = np.ones((4, 16, 16), np.float32)
    with pytest.raises(CryolibError):
        estimate_shifts(np.ones((16, 16)))
    with pytest.raises(CryolibError):
        estimate_shifts(np.ones((1, 16, 16)))
    bad = good.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(CryolibError):
        motion_correct(bad)
    with pytest.raises(CryolibError):
        align_frames(good, np.zeros((3, 2)))
    with pytest.raises(CryolibError):
        estimate_shifts(good, relative_to="last")
    with pytest.raises(CryolibError):
        motion_correct(good, dose_weighting=True)  # needs dose and pixel size
    with pytest.raises(CryolibError):
        exposure_filter(4, 1.0, (16, 16), 1.0, voltage_kV=120)


def test_carbon_edge_micrograph_is_aligned():
    """Regression: gen-filament-carbon_0011 (straight carbon edge across the field, -22 dB) at
    the default profile (512², 20 frames) came out 48.9 px rms wrong: the lowest rings' CC,
    disturbed by the edge entering at the frame border, pulled frames 0-1 ~180 px along it."""
    from cryolib.io.datasets import get_spec
    from cryolib.core.reproducibility import child_rng
    from cryolib.simulate.dataset import (
        acquisition_config,
        choose_defect,
        dataset_structure,
        sample_config,
    )

    spec = get_spec("gen-filament-carbon")
    rng = child_rng(0, spec.name, 11)
    sim = simulate_micrograph(
        dataset_structure(spec, 0),
        acquisition_config(spec, 512, 20),
        sample_config(spec),
        rng,
        defect=choose_defect(spec, rng),
    )
    assert sim.meta["shift_error_rms_px"] < 0.2
