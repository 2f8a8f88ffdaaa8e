"""Tests for cryolib.processing.preprocess: each Cryo-EMMAE step (§3.1) against analytic inputs, and bad inputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cryolib.processing import preprocess as pp
from cryolib.core.errors import CryolibError


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _blob(shape: tuple[int, int], x0: float, y0: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    return np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2)).astype(np.float32)


def _centroid(img: np.ndarray) -> tuple[float, float]:
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    w = np.clip(img, 0, None).astype(np.float64)
    return float((w * xx).sum() / w.sum()), float((w * yy).sum() / w.sum())


# --------------------------------------------------------------------------- Scheres normalisation
def test_background_kernel_is_the_corners_outside_the_inscribed_circle():
    k = pp.background_kernel(41)
    assert k.shape == (41, 41) and k[20, 20] == 0 and k[0, 0] == 1 and k[20, 0] == 0
    assert k.sum() == pytest.approx(41**2 * (1 - np.pi / 4), rel=0.05)
    assert pp.background_kernel(40).shape == (41, 41)  # even d -> odd, centred window


def test_scheres_flat_image_with_noise_becomes_zero_mean_unit_std(rng):
    img = (5.0 + 2.0 * rng.standard_normal((256, 256))).astype(np.float32)
    out = pp.scheres_normalize(img, 32)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert abs(out.mean()) < 0.02 and out.std() == pytest.approx(1.0, abs=0.03)


def test_scheres_equalises_local_noise_levels(rng):
    noise = rng.standard_normal((256, 256)).astype(np.float32)
    img = np.where(np.arange(256)[None, :] < 128, 10 + 1.0 * noise, -3 + 4.0 * noise).astype(np.float32)
    out = pp.scheres_normalize(img, 24)
    left, right = out[:, 10:100], out[:, 156:246]  # away from the step
    for half in (left, right):
        assert abs(half.mean()) < 0.05 and half.std() == pytest.approx(1.0, abs=0.05)


def test_scheres_repo_minmax_is_in_unit_range(rng):
    out = pp.scheres_normalize(rng.standard_normal((64, 80)), 16, repo_minmax=True)
    assert out.min() == 0.0 and out.max() == 1.0


def test_scheres_window_larger_than_image_is_shrunk(rng):
    out = pp.scheres_normalize(rng.standard_normal((40, 50)), 500)
    assert np.isfinite(out).all()


# --------------------------------------------------------------------------- Wiener
def test_gaussian_psf_sums_to_one_and_is_centred():
    psf = pp.gaussian_psf(9, 3.0)
    assert psf.sum() == pytest.approx(1.0) and np.unravel_index(psf.argmax(), psf.shape) == (4, 4)


def test_wiener_dc_gain_is_one_over_one_plus_k():
    out = pp.wiener_filter(np.full((64, 64), 3.0, np.float32), k=30)
    np.testing.assert_allclose(out, 3.0 / 31.0, rtol=1e-5)


def test_wiener_is_centred_and_repo_shift_moves_by_half_the_psf():
    img = np.zeros((64, 64), np.float32)
    img[30, 20] = 1.0
    centred = pp.wiener_filter(img)
    assert np.unravel_index(centred.argmax(), img.shape) == (30, 20)
    assert centred[30, 17] == pytest.approx(centred[30, 23], rel=1e-6)  # symmetric blur
    shifted = pp.wiener_filter(img, repo_shift=True)
    assert np.unravel_index(shifted.argmax(), img.shape) == (26, 16)


# --------------------------------------------------------------------------- CLAHE and guided filter
def test_clahe_output_range(rng):
    out = pp.clahe(rng.standard_normal((128, 96)) * 100 + 7)
    assert out.dtype == np.float32 and out.shape == (128, 96)
    assert out.min() >= 0.0 and out.max() <= 1.0 and out.max() - out.min() > 0.5


def test_guided_filter_with_self_guide_and_tiny_eps_is_identity(rng):
    img = rng.uniform(0, 1, (96, 96)).astype(np.float32)
    out = pp.guided_filter(img, img, radius=5, eps=1e-8)
    np.testing.assert_allclose(out, img, atol=2e-3)


def test_guided_filter_with_huge_eps_is_a_double_box_mean(rng):
    img = rng.uniform(0, 1, (96, 96)).astype(np.float32)
    out = pp.guided_filter(img, img, radius=7, eps=1e6)
    box = cv2.blur(cv2.blur(img, (7, 7), borderType=cv2.BORDER_REFLECT_101), (7, 7), borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(out, box, atol=1e-4)


def test_guided_filter_shape_mismatch_raises(rng):
    with pytest.raises(CryolibError, match="shape"):
        pp.guided_filter(rng.uniform(size=(10, 10)), rng.uniform(size=(10, 12)))


# --------------------------------------------------------------------------- resize and coordinates
@pytest.mark.parametrize("target", [(100, 150), (400, 600), 0.37])
def test_resize_scale_factors_and_coordinate_round_trip(target):
    img = _blob((200, 300), 171.3, 88.6, 8.0)
    out, (sx, sy) = pp.resize(img, target)
    assert (sx, sy) == (out.shape[1] / 300, out.shape[0] / 200)
    cx, cy = _centroid(out)
    x_in, y_in = pp.map_coords(cx, cy, (sx, sy), inverse=True)
    assert abs(x_in - 171.3) < 0.5 and abs(y_in - 88.6) < 0.5
    xb, yb = pp.map_coords(*pp.map_coords(12.0, 34.0, (sx, sy)), (sx, sy), inverse=True)
    assert xb == pytest.approx(12.0) and yb == pytest.approx(34.0)


def test_resize_square_side_and_bad_scale():
    out, scale = pp.resize(np.ones((50, 80), np.float32), 32)
    assert out.shape == (32, 32) and scale == (32 / 80, 32 / 50)
    with pytest.raises(CryolibError):
        pp.resize(np.ones((8, 8)), -1.0)


# --------------------------------------------------------------------------- whole chain
def _disk_micrograph(rng, size=256, d=20.0):
    img = 0.8 * rng.standard_normal((size, size)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    centres = [(60, 60), (180, 70), (120, 140), (70, 200), (200, 200)]
    inside = np.zeros((size, size), bool)
    for x, y in centres:
        inside |= (xx - x) ** 2 + (yy - y) ** 2 <= (d / 2) ** 2
    return img - 1.5 * inside, inside


@pytest.mark.parametrize("repo_parity", [False, True])
def test_preprocess_keeps_particles_dark_and_in_unit_range(rng, repo_parity):
    img, inside = _disk_micrograph(rng)
    res = pp.cryoemmae_preprocess(img, 20, working_scale=1.0, repo_parity=repo_parity, keep_stages=True)
    out = res.image
    assert out.dtype == np.float32 and out.shape == img.shape
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert out[inside].mean() < out[~inside].mean() - 0.05
    assert {"normalized", "wiener", "clahe", "guided", "working"} <= set(res.stages)


def test_preprocess_scale_modes(rng):
    img = rng.standard_normal((300, 200)).astype(np.float32)
    fixed = pp.cryoemmae_preprocess(img, 30, target_size=128)
    assert fixed.image.shape == (128, 128) and fixed.scale_xy == (128 / 200, 128 / 300)
    diam = pp.cryoemmae_preprocess(img, 30, target_diameter_px=15)
    assert diam.image.shape == (150, 100) and diam.scale_xy == (0.5, 0.5)
    assert diam.diameter_px_working == pytest.approx(15.0)
    x, y = diam.to_input(*diam.to_working(55.0, 77.0))
    assert (x, y) == (pytest.approx(55.0), pytest.approx(77.0))


def test_filtering_at_reduced_resolution_matches_full_resolution(rng):
    img, _ = _disk_micrograph(rng, size=512, d=40.0)
    fast = pp.cryoemmae_preprocess(img, 40, working_scale=0.25, filter_oversample=2.0)
    full = pp.cryoemmae_preprocess(img, 40, working_scale=0.25, filter_oversample=None)
    assert fast.filter_scale == pytest.approx(0.5) and full.filter_scale == 1.0
    assert fast.image.shape == full.image.shape == (128, 128)
    assert np.corrcoef(fast.image.ravel(), full.image.ravel())[0, 1] > 0.9


@pytest.mark.parametrize("kwargs, match", [
    (dict(diameter_px=0), "diameter"),
    (dict(diameter_px=-3), "diameter"),
    (dict(diameter_px=float("nan")), "diameter"),
    (dict(diameter_px=10, scale_mode="bogus"), "scale_mode"),
    (dict(diameter_px=10, scale_mode="diameter", target_size=64), "target_size"),
    (dict(diameter_px=10, working_scale=0.0), "working_scale"),
])
def test_preprocess_bad_arguments(rng, kwargs, match):
    with pytest.raises(CryolibError, match=match):
        pp.cryoemmae_preprocess(rng.standard_normal((64, 64)), **kwargs)


def test_preprocess_bad_images():
    bad = np.zeros((32, 32), np.float32)
    bad[3, 4] = np.nan
    with pytest.raises(CryolibError, match="non-finite"):
        pp.cryoemmae_preprocess(bad, 8)
    with pytest.raises(CryolibError, match="2-D"):
        pp.cryoemmae_preprocess(np.zeros(100, np.float32), 8)
