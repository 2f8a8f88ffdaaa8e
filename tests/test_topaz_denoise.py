"""Tests for cryolib.denoise.topaz: Topaz-Denoise's shipped pretrained networks on small inputs."""

from __future__ import annotations

import numpy as np
import pytest

from cryolib.denoise import topaz as td
from cryolib.core.errors import CryolibError


def _noisy_pattern(size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:size, :size]
    clean = np.sin(xx / 12.0) * np.cos(yy / 17.0)
    return clean, (clean + np.random.default_rng(seed).normal(0, 1, clean.shape)).astype(np.float32)


def _high_frequency_std(image: np.ndarray) -> float:
    return float(np.std(np.diff(image, axis=1)))


@pytest.mark.slow
def test_denoise_reduces_noise():
    clean, noisy = _noisy_pattern()
    out = td.denoise_topaz(noisy, model="unet_L2_v0.2.2")
    assert out.shape == noisy.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert _high_frequency_std(out) < 0.5 * _high_frequency_std(noisy)
    assert np.mean((out - clean) ** 2) < 0.5 * np.mean((noisy - clean) ** 2)


@pytest.mark.slow
def test_denoise_fallback_loader_matches(monkeypatch):
    """The packaging-bug path (pkg_resources missing) builds the net and loads the wheel file directly."""
    import topaz.denoising.models as dn_models

    _, noisy = _noisy_pattern(size=64)
    td._load_denoiser.cache_clear()
    expected = td.denoise_topaz(noisy, model="unet")

    def broken(pkg, path, map_location="cpu"):
        raise RuntimeError(f"Could not load resource {pkg}/{path}")

    monkeypatch.setattr(dn_models, "load_state_dict_from_pkg", broken)
    td._load_denoiser.cache_clear()
    try:
        np.testing.assert_allclose(td.denoise_topaz(noisy, model="unet"), expected, rtol=1e-5, atol=1e-5)
    finally:
        td._load_denoiser.cache_clear()


def test_bad_inputs():
    with pytest.raises(CryolibError, match="unknown Topaz-Denoise model"):
        td.denoise_topaz(np.zeros((16, 16), np.float32), model="unet9")
    with pytest.raises(CryolibError, match="2-D"):
        td.denoise_topaz(np.zeros((2, 8, 8)))
