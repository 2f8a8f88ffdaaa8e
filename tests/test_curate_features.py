"""cryolib.curate.features: image statistics against analytic cases, normalisation, tiling, encoder embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from cryolib.core.errors import CryolibError
from cryolib.curate.features import (
    embed_micrograph,
    encoder_features,
    image_statistics,
    image_statistics_names,
    micrograph_tiles,
    normalise_micrograph,
    radial_band_power,
)
from cryolib.models.draco import DracoModel
from cryolib.models.vit import get_config

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=16, decoder_depth=1,
            decoder_num_heads=2, name="custom")


def blob_micrographs(n: int, size_px: int = 64, blobs: bool = True, seed: int = 0, dose: float = 100.0) -> list[np.ndarray]:
    """Counts images: Poisson shot noise at ``dose`` e/px, with dark Gaussian blobs (particles) or empty."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size_px, 0:size_px].astype(np.float64)
    out = []
    for _ in range(n):
        density = np.zeros((size_px, size_px))
        if blobs:
            for cy, cx in rng.uniform(0, size_px, size=(8, 2)):
                density += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
        out.append(rng.poisson(dose * (1.0 - 0.5 * np.clip(density, 0, 1))).astype(np.float32))
    return out


def test_white_noise_radial_power_is_flat_and_equals_the_variance():
    rng = np.random.default_rng(1)
    img = 3.0 * rng.standard_normal((256, 256))
    bands = radial_band_power(img, 6)
    assert bands.shape == (6,)
    assert np.allclose(bands, 9.0, rtol=0.06), bands  # Parseval: each ring's mean power is σ² = 9


def test_radial_power_sees_a_low_pass_image():
    rng = np.random.default_rng(2)
    img = rng.standard_normal((128, 128))
    smooth = np.real(np.fft.ifft2(np.fft.fft2(img) * np.exp(-(np.fft.fftfreq(128)[:, None] ** 2 + np.fft.fftfreq(128)[None] ** 2) / (2 * 0.05**2))))
    bands = radial_band_power(smooth, 4)
    assert np.all(np.diff(bands) < 0) and bands[0] > 100 * bands[-1]


def test_image_statistics_values_on_a_constant_dose_poisson_image():
    rng = np.random.default_rng(3)
    img = rng.poisson(400.0, size=(128, 128)).astype(np.float32)
    feats = image_statistics(img, n_bands=4)
    assert len(feats) == len(image_statistics_names(4)) == 6
    assert feats[0] == pytest.approx(np.log10(400.0), abs=0.01)
    # pure shot noise: Fano factor 1 and a flat power spectrum at the shot-noise floor (log10 1 = 0)
    assert feats[1] == pytest.approx(0.0, abs=0.03)
    assert np.allclose(feats[2:], 0.0, atol=0.05)
    blurred = image_statistics(ndimage.uniform_filter(img, 3), n_bands=4)  # a blur removes high-frequency power
    assert blurred[-1] < -0.5 and blurred[2] > blurred[-1]


def test_image_statistics_bad_inputs():
    with pytest.raises(CryolibError, match="NaN"):
        image_statistics(np.full((32, 32), np.nan))
    with pytest.raises(CryolibError, match="2-D"):
        image_statistics(np.ones(32))
    with pytest.raises(CryolibError, match="n_bands"):
        radial_band_power(np.ones((16, 16)), 9)


def test_normalise_with_training_stats_equals_training_standardisation_at_training_dose():
    rng = np.random.default_rng(4)
    img = rng.poisson(800.0, size=(64, 64)).astype(np.float64)
    mean, std = float(img.mean()), 30.0
    assert np.allclose(normalise_micrograph(img, mean, std), (img - mean) / std, atol=1e-5)
    # at half the dose the relative contrast is kept: the same image at half the counts maps identically
    assert np.allclose(normalise_micrograph(img / 2, mean, std), (img - mean) / std, atol=1e-5)
    z = normalise_micrograph(img)  # no stats: z-scored on its own
    assert abs(z.mean()) < 1e-5 and z.std() == pytest.approx(1.0, abs=1e-4)


def test_micrograph_tiles_grid_cap_and_small_images():
    img = np.arange(100 * 130, dtype=np.float32).reshape(100, 130)
    tiles = micrograph_tiles(img, 32, 8, max_tiles=16)
    assert tiles.shape == (12, 32, 32)  # 3 rows x 4 columns, centred
    assert np.array_equal(tiles[0], img[2:34, 1:33])
    assert micrograph_tiles(img, 32, 8, max_tiles=5).shape == (5, 32, 32)
    small = micrograph_tiles(img[:20, :30], 32, 8)
    assert small.shape == (1, 16, 16)
    with pytest.raises(CryolibError, match="multiple"):
        micrograph_tiles(img, 30, 8)


def test_encoder_features_are_mean_pooled_tokens():
    torch.manual_seed(0)
    model = DracoModel(get_config("draco-tiny", **TINY)).eval()
    img = blob_micrographs(1, 64)[0]
    feat = embed_micrograph(model, img, {"mean": 100.0, "std": 10.0}, max_tiles=4)
    z = normalise_micrograph(img, 100.0, 10.0)
    tiles = torch.from_numpy(micrograph_tiles(z, 32, 8, 4)).unsqueeze(1)
    expected = model.embed(tiles).mean(dim=(0, 1, 2)).numpy()
    assert feat.shape == (32,) and np.allclose(feat, expected, atol=1e-6)
    feats = encoder_features(model, [img, img], {"mean": 100.0, "std": 10.0}, max_tiles=4)
    assert feats.shape == (2, 32) and np.allclose(feats[0], feats[1])
    with pytest.raises(CryolibError):
        encoder_features(model, [])


def test_relative_to_session_centres_the_mean_counts_per_session_only():
    from cryolib.curate.features import relative_to_session

    stats = np.array([[1.0, 5.0], [2.0, 6.0], [3.0, 7.0], [10.0, 8.0], [12.0, 9.0]])
    out = relative_to_session(stats, ["a", "a", "a", "b", "b"])
    assert out[:, 0] == pytest.approx([-1.0, 0.0, 1.0, -1.0, 1.0])  # minus each session's median (2 and 11)
    assert np.array_equal(out[:, 1], stats[:, 1]) and stats[0, 0] == 1.0  # other columns and the input untouched
    assert relative_to_session(stats)[:, 0] == pytest.approx(stats[:, 0] - 3.0)  # None: one session
    # a dose change multiplies every count: relative to its session, the statistic does not move
    rng = np.random.default_rng(0)
    low = [image_statistics(rng.poisson(50.0 * f, (64, 64)).astype(np.float32)) for f in (0.8, 1.0, 1.2)]
    high = [image_statistics(rng.poisson(200.0 * f, (64, 64)).astype(np.float32)) for f in (0.8, 1.0, 1.2)]
    both = relative_to_session(np.stack(low + high), ["low"] * 3 + ["high"] * 3)
    assert both[:3, 0] == pytest.approx(both[3:, 0], abs=0.01)
    every = relative_to_session(stats, ["a", "a", "a", "b", "b"], columns=None)  # every column
    assert every[:, 1] == pytest.approx([-1.0, 0.0, 1.0, -0.5, 0.5]) and np.array_equal(every[:, 0], out[:, 0])
    with pytest.raises(CryolibError, match="columns"):
        relative_to_session(stats, columns=[2])
    with pytest.raises(CryolibError, match="session labels"):
        relative_to_session(stats, ["a"])
    with pytest.raises(CryolibError, match="shape"):
        relative_to_session(np.zeros(3))


def test_particle_coverage_is_the_covered_fraction_in_log10():
    from cryolib.curate.features import COVERAGE_FLOOR, particle_coverage

    # 4 disks of 10 px on 100 x 100 px cover 4·π·25 / 10⁴ of it
    assert particle_coverage(4, (100, 100), 10.0) == pytest.approx(np.log10(4 * np.pi * 25 / 1e4))
    assert particle_coverage(0, (100, 100), 10.0) == np.log10(COVERAGE_FLOOR)  # no particle: the floor
    # the same density on a 4x larger micrograph, or of 2x larger particles at 1/4 the count, covers the same
    assert particle_coverage(16, (200, 200), 10.0) == pytest.approx(particle_coverage(4, (100, 100), 10.0))
    assert particle_coverage(1, (100, 100), 20.0) == pytest.approx(particle_coverage(4, (100, 100), 10.0))
    for bad in ((-1, (10, 10), 5.0), (1, (0, 10), 5.0), (1, (10, 10), 0.0), (1, (10, 10), float("nan"))):
        with pytest.raises(CryolibError):
            particle_coverage(*bad)
