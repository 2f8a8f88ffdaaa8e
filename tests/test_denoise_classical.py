"""cryolib.denoise.classical: the 20 Å low-pass against its analytic response, the best-case Gaussian, and the
block mean against exact block averages."""

from __future__ import annotations

import numpy as np
import pytest

from cryolib.core.errors import CryolibError
from cryolib.denoise import denoise_micrograph
from cryolib.denoise.classical import best_gaussian_sigma, block_mean, lowpass_filter, lowpass_response


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


def test_block_mean_is_exact_on_block_constant_images_and_averages_each_block():
    rng = np.random.default_rng(0)
    levels = rng.normal(size=(3, 4))
    tiles = np.kron(levels, np.ones((16, 16)))  # 48 x 64, constant on each 16 px block
    assert np.allclose(block_mean(tiles, 16), tiles, atol=1e-6)
    x = rng.normal(size=(48, 64))
    out = block_mean(x, 16)
    assert np.allclose(out[:16, :16], x[:16, :16].mean(), atol=1e-6)
    assert np.isclose(out.mean(), x.mean(), atol=1e-6)  # whole blocks: the mean is kept
    # white noise of variance 1: a block mean has variance 1/256
    big = rng.normal(size=(1024, 1024))
    assert abs(block_mean(big, 16)[::16, ::16].var() * 256 - 1.0) < 0.1


def test_block_mean_edges_keep_shape_and_dtype_through_the_registry():
    x = np.arange(17 * 19, dtype=np.float32).reshape(17, 19)
    out = block_mean(x, 16)
    assert out.shape == (17, 19)
    assert np.isclose(out[16, 18], x[16:, 16:].mean())  # the 1 x 3 corner block
    y = denoise_micrograph("blockmean", x.astype(np.int16), None, block_px=4)
    assert y.shape == x.shape and y.dtype == np.int16
    for bad in (0, 2.5, True, -3):
        with pytest.raises(CryolibError, match="block_px"):
            block_mean(x, bad)
    with pytest.raises(CryolibError, match="2-D"):
        block_mean(np.zeros((2, 8, 8)), 4)
