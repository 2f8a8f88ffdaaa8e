"""cryolib.evaluate.frc against analytic results."""

from __future__ import annotations

import numpy as np
import pytest

from cryolib.core.errors import CryolibError
from cryolib.evaluate.frc import fourier_ring_correlation


def test_an_image_against_itself_is_one_and_a_scaled_filtered_copy_too():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(64, 80))
    assert np.allclose(fourier_ring_correlation(img, img, 8)["frc"], 1.0)
    assert np.allclose(fourier_ring_correlation(3.0 * img + 7.0, img, 8)["frc"], 1.0)


@pytest.mark.parametrize("snr", [0.25, 1.0, 4.0])
def test_signal_plus_white_noise_follows_sqrt_s_over_1_plus_s(snr):
    rng = np.random.default_rng(1)
    signal = rng.normal(size=(256, 256))
    estimate = signal + rng.normal(scale=1.0 / np.sqrt(snr), size=signal.shape)
    table = fourier_ring_correlation(estimate, signal, 8)
    expected = np.sqrt(snr / (1.0 + snr))
    tolerance = 3.0 / np.sqrt(table["n_coefficients"].to_numpy())  # a ring of n coefficients: error ~ 1/sqrt(n)
    assert (np.abs(table["frc"].to_numpy() - expected) < tolerance).all()


def test_independent_images_are_uncorrelated_and_rings_cover_the_plane():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(128, 128)), rng.normal(size=(128, 128))
    table = fourier_ring_correlation(a, b, 8)
    assert np.abs(table["frc"]).max() < 0.1
    assert table["high_cycles_per_px"].iloc[-1] == pytest.approx(0.5)
    inside = sum(1 for fy in np.fft.fftfreq(128) for fx in np.fft.fftfreq(128) if 0 < np.hypot(fy, fx) <= 0.5)
    assert table["n_coefficients"].sum() == inside  # the rfft half-plane, weighted, counts the full plane


def test_a_low_pass_output_has_no_correlation_above_its_cutoff():
    rng = np.random.default_rng(3)
    clean = rng.normal(size=(128, 128))
    f = np.fft.rfft2(clean)
    q = np.hypot(np.fft.fftfreq(128)[:, None], np.fft.rfftfreq(128)[None, :])
    blurred = np.fft.irfft2(f * (q <= 0.125), s=clean.shape) + 1e-3 * rng.normal(size=clean.shape)
    frc = fourier_ring_correlation(blurred, clean, 8)["frc"].to_numpy()
    assert (frc[:2] > 0.99).all() and (np.abs(frc[3:]) < 0.1).all()


@pytest.mark.parametrize("a, b, rings", [(np.zeros((8, 8)), np.zeros((8, 9)), 2), (np.zeros(8), np.zeros(8), 2),
                                         (np.zeros((8, 8)), np.zeros((8, 8)), 5),
                                         (np.full((8, 8), np.nan), np.zeros((8, 8)), 2)])
def test_bad_inputs_raise(a, b, rings):
    with pytest.raises(CryolibError):
        fourier_ring_correlation(a, b, rings)
