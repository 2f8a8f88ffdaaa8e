"""Optics against analytic results: wavelength, σ_e, CTF zeros, envelope, MTF, image sign."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryolib.core.errors import CryolibError
from cryolib.simulate.optics import (
    apply_transfer,
    ctf_2d,
    ctf_zero_frequencies,
    detector_mtf,
    electron_wavelength_A,
    interaction_constant,
    power_spectrum,
    radial_average,
)

N_LINE = 4096  # samples along a CTF line: frequency step 1/(N_LINE · px)


def _sign_changes(values: np.ndarray, step: float) -> np.ndarray:
    """Frequencies (midpoints between samples) where a 1-D profile changes sign."""
    idx = np.nonzero(np.sign(values[1:]) != np.sign(values[:-1]))[0]
    return (idx + 0.5) * step


@pytest.mark.parametrize(
    ("voltage_kV", "wavelength_A", "sigma"),
    [(200.0, 0.025079, 7.2884e-4), (300.0, 0.019687, 6.5262e-4)],
)
def test_wavelength_and_interaction_constant_textbook(voltage_kV, wavelength_A, sigma):
    # Kirkland, Advanced Computing in Electron Microscopy, Table 5.1 / eq. 5.6
    assert electron_wavelength_A(voltage_kV) == pytest.approx(wavelength_A, rel=1e-4)
    assert interaction_constant(voltage_kV) == pytest.approx(sigma, rel=1e-4)


@pytest.mark.parametrize("defocus_um", [0.8, 1.5, 2.5])
def test_ctf_zeros_match_analytic(defocus_um):
    px = 1.0
    ctf = ctf_2d((2, N_LINE), px, defocus_um, defocus_um, 0.0)[0].numpy()  # ky = 0 line
    found = _sign_changes(ctf, 1 / (N_LINE * px))
    expected = ctf_zero_frequencies(8, defocus_um, 300.0, 2.7, 0.07)
    np.testing.assert_allclose(found[:8], expected, atol=1 / (N_LINE * px))


def test_ctf_sign_convention_at_low_frequency():
    ctf = ctf_2d((64, 64), 2.0, 1.5, 1.5, 0.0, amplitude_contrast=0.1)
    assert ctf[0, 0].item() == pytest.approx(0.1, abs=1e-6)  # CTF(0) = +A
    assert ctf[0, 1].item() > 0.1  # underfocus: rises towards the first maximum


def test_bfactor_envelope_halves_amplitude():
    px, b = 1.0, 100.0
    plain = ctf_2d((2, N_LINE), px, 1.5, 1.5, 0.0)[0].numpy()
    damped = ctf_2d((2, N_LINE), px, 1.5, 1.5, 0.0, b_factor_A2=b)[0].numpy()
    k = np.arange(plain.size) / (N_LINE * px)
    ok = np.abs(plain) > 0.1
    np.testing.assert_allclose(damped[ok] / plain[ok], np.exp(-b * k[ok] ** 2 / 4), rtol=1e-4)
    k_half = math.sqrt(4 * math.log(2) / b)  # where exp(-B k²/4) = 1/2
    j = int(np.argmin(np.where(ok, np.abs(k - k_half), np.inf)))  # nearest sample off a zero
    assert abs(k[j] - k_half) < 20 / N_LINE
    assert damped[j] / plain[j] == pytest.approx(0.5, abs=b * k_half / 4 * 20 / N_LINE)


@pytest.mark.parametrize(
    ("du", "dv", "angle", "along_x", "along_y"),
    [(2.0, 1.0, 0.0, 2.0, 1.0), (2.0, 1.0, 90.0, 1.0, 2.0), (1.0, 2.0, 0.0, 1.0, 2.0)],
)
def test_astigmatism_moves_zeros_along_axes(du, dv, angle, along_x, along_y):
    n, px = 1024, 1.0
    ctf = ctf_2d((n, n), px, du, dv, angle).numpy()  # rfft layout
    step = 1 / (n * px)
    for line, defocus in ((ctf[0, :], along_x), (ctf[: n // 2, 0], along_y)):
        expected = ctf_zero_frequencies(4, defocus)
        np.testing.assert_allclose(_sign_changes(line, step)[:4], expected, atol=step)


def test_astigmatism_angle_rotates_towards_plus_y():
    n, px = 1024, 1.0
    ctf = ctf_2d((n, n), px, 2.0, 1.0, 45.0, rfft=False).numpy()
    diag = np.array([ctf[j, j] for j in range(n // 2)])  # direction (x, y) = (1, 1)
    expected = ctf_zero_frequencies(4, 2.0)
    found = _sign_changes(diag, math.sqrt(2) / (n * px))[:4]
    np.testing.assert_allclose(found, expected, atol=2 / (n * px))


def test_detector_mtf_counting():
    mtf = detector_mtf((64, 64), "counting")
    assert mtf[0, 0].item() == pytest.approx(1.0)
    assert float(mtf.min()) >= 0 and float(mtf.max()) <= 1
    assert mtf[0, 32].item() == pytest.approx(2 / math.pi, rel=1e-5)  # Nyquist along x
    assert mtf[32, 0].item() == pytest.approx(2 / math.pi, rel=1e-5)  # Nyquist along y
    assert torch.all(detector_mtf((64, 64), "ideal") == 1)


def _blob(n: int, sigma_px: float) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n] - n // 2
    return 0.1 * np.exp(-(xx**2 + yy**2) / (2 * sigma_px**2))  # positive phase, rad


def test_positive_phase_blob_is_dark_in_underfocus_and_bright_in_overfocus():
    n, px = 256, 2.0
    phi = _blob(n, 15.0)  # 30 Å blob: its spectrum lies inside the first CTF lobe
    under = apply_transfer(phi, ctf_2d((n, n), px, 1.5, 1.5, 0.0), detector_mtf((n, n)))
    assert under[n // 2, n // 2] < -0.01  # I = 1 + contrast < 1: dark particle
    # pure phase contrast (A = 0) flips with the sign of the defocus
    under0 = apply_transfer(phi, ctf_2d((n, n), px, 1.5, 1.5, 0.0, amplitude_contrast=0.0))
    over0 = apply_transfer(phi, ctf_2d((n, n), px, -1.5, -1.5, 0.0, amplitude_contrast=0.0))
    assert under0[n // 2, n // 2] < -0.01 and over0[n // 2, n // 2] > 0.01
    full = apply_transfer(phi, ctf_2d((n, n), px, 1.5, 1.5, 0.0, rfft=False))
    half = apply_transfer(phi, ctf_2d((n, n), px, 1.5, 1.5, 0.0))
    np.testing.assert_allclose(full.numpy(), half.numpy(), atol=1e-6)


def test_amplitude_contrast_alone_darkens_at_zero_defocus_limit():
    n = 64
    phi = np.full((n, n), 0.2)
    contrast = apply_transfer(phi, ctf_2d((n, n), 1.0, 1e-6, 1e-6, 0.0, amplitude_contrast=0.1))
    np.testing.assert_allclose(contrast.numpy(), -2 * 0.1 * 0.2, rtol=1e-4)  # I = 1 - 2Aφ


def test_power_spectrum_and_radial_average_of_white_noise():
    rng = np.random.default_rng(0)
    img = rng.normal(0, 2.0, (128, 128))
    ps = power_spectrum(img)
    assert ps.shape == (128, 128) and ps[64, 64] == pytest.approx(0.0, abs=1e-9)
    freqs, values = radial_average(ps, pixel_size_A=2.0)
    assert freqs.shape == values.shape == (64,)
    assert freqs[0] == 0 and freqs[-1] < 0.25  # ring centres from DC up to Nyquist 1/(2·2 Å)
    assert np.mean(values[4:]) == pytest.approx(4.0, rel=0.05)  # σ² of white noise


def test_radial_average_of_radius():
    n, px = 128, 2.0
    k = np.fft.fftshift(np.fft.fftfreq(n, d=px))
    radius = np.sqrt(np.add.outer(k**2, k**2))
    freqs, values = radial_average(radius, px)
    j, step = np.arange(freqs.size), freqs[1]
    ring_mean = (j[4:] ** 2 + 1 / 12) / j[4:] * step  # area-weighted mean of |k| over a ring
    np.testing.assert_allclose(values[4:], ring_mean, rtol=0.03)  # within pixel-lattice effects


def test_bad_inputs_raise():
    with pytest.raises(CryolibError):
        electron_wavelength_A(0)
    with pytest.raises(CryolibError):
        ctf_zero_frequencies(3, -1.0)
    with pytest.raises(CryolibError):
        ctf_zero_frequencies(10_000, 1.0)  # past the turning point of the phase
    with pytest.raises(CryolibError):
        detector_mtf((32, 32), "film")
    with pytest.raises(CryolibError):
        apply_transfer(np.zeros((32, 32)), ctf_2d((16, 16), 1.0, 1.0, 1.0, 0.0))
    with pytest.raises(CryolibError):
        ctf_2d((0, 16), 1.0, 1.0, 1.0, 0.0)
    with pytest.raises(CryolibError):
        radial_average(np.zeros((2, 4, 4)), 1.0)
