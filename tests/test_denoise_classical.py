"""cryolib.denoise.classical: the 20 Å low-pass against its analytic response, and the best-case Gaussian."""

from __future__ import annotations

import numpy as np
import pytest

from cryolib.core.errors import CryolibError
from cryolib.denoise import denoise_micrograph
from cryolib.denoise.classical import best_gaussian_sigma, lowpass_filter, lowpass_response


def _wave(cycles_per_px: float, shape=(256, 256)) -> np.ndarray:
    xx = np.arange(shape[1])[None, :] * np.ones((shape[0], 1))
    return np.cos(2 * np.pi * cycles_per_px * xx)


@pytest.mark.parametrize("ratio", [0.5, 1.0, 1.5, 2.0])
def test_lowpass_matches_the_butterworth_response(ratio):
    pixel, resolution = 2.5, 20.0
    cutoff = pixel / resolution  # 0.125 cycles/px
    f = cutoff * ratio
    out = lowpass_filter(_wave(f), pixel, resolution)
    inner = out[40:-40, 40:-40]  # away from the reflected borders
    amplitude = np.sqrt(2 * np.mean(inner**2))
    expected = float(lowpass_response(np.array(f), cutoff))
    assert amplitude == pytest.approx(expected, abs=0.03)
    if ratio >= 1.5:
        assert amplitude < 0.05  # above the cutoff: attenuated


def test_lowpass_keeps_mean_dtype_and_needs_pixel_size():
    x = (np.random.default_rng(0).normal(100, 5, (65, 97))).astype(np.int16)
    out = denoise_micrograph("lowpass", x, 3.0)
    assert out.dtype == np.int16 and out.shape == x.shape and abs(out.mean() - x.mean()) < 1.0
    with pytest.raises(CryolibError, match="finer than Nyquist"):
        lowpass_filter(np.zeros((16, 16)), 12.0, 20.0)  # 20 Å < 2 px of 12 Å
    with pytest.raises(CryolibError, match="needs the pixel size"):
        denoise_micrograph("lowpass", x, None)


def test_best_gaussian_picks_a_blur_for_noise_and_none_for_clean():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:128, :128]
    clean = np.sin(xx / 9.0) * np.cos(yy / 13.0)
    noisy = clean + rng.normal(0, 1.0, clean.shape)
    sigma, mse = best_gaussian_sigma(noisy, clean)
    assert 1.5 < sigma < 12.0 and mse < 0.5 * np.mean((noisy - clean) ** 2)
    assert best_gaussian_sigma(clean, clean)[0] == 0.0
    out = denoise_micrograph("gaussian", noisy.astype(np.float32), clean=clean)
    assert out.dtype == np.float32 and np.mean((out - clean) ** 2) < np.mean((noisy - clean) ** 2)
    with pytest.raises(CryolibError, match="needs the clean image"):
        denoise_micrograph("gaussian", noisy)
    with pytest.raises(CryolibError, match="shape"):
        best_gaussian_sigma(noisy, clean[:10])
