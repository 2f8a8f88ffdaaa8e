"""Movies: drift model, Fourier shifts (analytic), Poisson counting statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from cryolib.core.errors import CryolibError
from cryolib.simulate.movie import (
    SEVERE_DRIFT_FACTOR,
    drift_trajectory,
    expose_movie,
    shift_image,
)


def _path_length_A(shifts_px: np.ndarray, pixel_size_A: float) -> float:
    return float(np.linalg.norm(np.diff(shifts_px, axis=0), axis=1).sum() * pixel_size_A)


def test_drift_trajectory_model():
    px = 4.0
    traj = drift_trajectory(40, 20.0, px, np.random.default_rng(0))
    assert traj.shape == (40, 2) and np.all(traj[0] == 0)
    assert _path_length_A(traj, px) == pytest.approx(20.0)  # accumulated motion, Å
    steps = np.linalg.norm(np.diff(traj, axis=0), axis=1)
    assert steps[:4].sum() > steps[-4:].sum()  # fast early motion decays
    severe = drift_trajectory(40, 20.0, px, np.random.default_rng(0), severe=True)
    assert _path_length_A(severe, px) == pytest.approx(20.0 * SEVERE_DRIFT_FACTOR)
    again = drift_trajectory(40, 20.0, px, np.random.default_rng(0))
    np.testing.assert_array_equal(traj, again)
    assert np.all(drift_trajectory(1, 20.0, px, np.random.default_rng(0)) == 0)


def _smooth_image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    field = gaussian_filter(np.random.default_rng(seed).normal(size=shape), 3.0, mode="wrap")
    return (field / field.std()).astype(np.float32)


def test_integer_shift_equals_roll():
    img = np.random.default_rng(1).normal(size=(32, 48)).astype(np.float32)
    shifts = np.array([[0, 0], [3, -2], [-5, 7]])
    out = shift_image(img, shifts).numpy()
    assert out.shape == (3, 32, 48)
    for frame, (dx, dy) in zip(out, shifts):
        np.testing.assert_allclose(frame, np.roll(img, (dy, dx), axis=(0, 1)), atol=1e-5)


def test_shift_moves_content_to_larger_xy():
    img = np.zeros((33, 33), np.float32)
    img[10, 12] = 1.0  # (y, x)
    out = shift_image(img, np.array([[4.0, 6.0]]))[0].numpy()  # dx = 4, dy = 6
    assert np.unravel_index(np.argmax(out), out.shape) == (16, 16)


@pytest.mark.parametrize("shape", [(63, 65), (64, 64)])
def test_subpixel_shift_then_unshift_is_identity(shape):
    img = _smooth_image(shape)  # band-limited: nothing at the (even-size) Nyquist frequency
    shifts = np.random.default_rng(2).uniform(-5, 5, (4, 2))
    moved = shift_image(img, shifts)
    back = shift_image(moved, -shifts).numpy()
    np.testing.assert_allclose(back, np.broadcast_to(img, back.shape), atol=1e-4)


def test_intraframe_blur_adds_uniform_line_variance():
    n, sigma, blur = 128, 3.0, 6.0
    yy, xx = np.mgrid[:n, :n] - n // 2
    blob = np.exp(-(xx**2 + yy**2) / (2 * sigma**2)).astype(np.float32)
    out = shift_image(blob, np.zeros((1, 2)), blur_xy_px=np.array([[blur, 0.0]]))[0].numpy()
    assert out.sum() == pytest.approx(blob.sum(), rel=1e-5)
    var_x = (out * xx**2).sum() / out.sum()
    var_y = (out * yy**2).sum() / out.sum()
    assert var_x == pytest.approx(sigma**2 + blur**2 / 12, rel=1e-3)  # uniform segment: Δ²/12
    assert var_y == pytest.approx(sigma**2, rel=1e-3)


def test_flat_exposure_is_poisson_at_the_dose():
    dose_per_frame, px, n_frames = 1.0, 4.0, 20  # e⁻/Å² per frame, Å/px
    mean_per_frame = dose_per_frame * px**2  # 16 counts/px/frame
    expected = np.full((64, 64), mean_per_frame * n_frames)
    shifts = drift_trajectory(n_frames, 20.0, px, np.random.default_rng(3))
    movie = expose_movie(expected, n_frames, shifts, np.random.default_rng(4))
    assert movie.shape == (n_frames, 64, 64) and movie.dtype == np.uint8
    counts = movie.astype(np.float64)
    standard_error = np.sqrt(mean_per_frame / counts.size)
    assert abs(counts.mean() - mean_per_frame) < 3 * standard_error
    assert counts.var() == pytest.approx(mean_per_frame, rel=0.03)  # variance = mean
    np.testing.assert_allclose(counts.mean(axis=(1, 2)), mean_per_frame, rtol=0.03)


def test_exposure_is_deterministic_and_weighted():
    expected = np.full((32, 32), 400.0)
    shifts = np.zeros((4, 2))
    a = expose_movie(expected, 4, shifts, np.random.default_rng(5))
    b = expose_movie(expected, 4, shifts, np.random.default_rng(5))
    c = expose_movie(expected, 4, shifts, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.uint8
    big = expose_movie(np.full((32, 32), 2000.0), 4, shifts, np.random.default_rng(5))
    assert big.dtype == np.uint16  # 500 counts/px/frame need 16 bits
    w = expose_movie(
        expected, 4, shifts, np.random.default_rng(5), dose_per_frame_weights=[1, 1, 2, 4]
    )
    np.testing.assert_allclose(w.mean(axis=(1, 2)), [50, 50, 100, 200], rtol=0.05)


def test_exposure_follows_the_drift():
    img = 1000.0 * (1 + 0.2 * _smooth_image((64, 64)))
    shifts = np.array([[0.0, 0.0], [3.0, -2.0]])
    movie = expose_movie(img, 2, shifts, np.random.default_rng(7), intraframe_blur=True)
    expected = shift_image(img / 2, shifts).numpy()
    resid = (movie - expected) / np.sqrt(expected)
    assert abs(resid.mean()) < 0.05 and resid.std() == pytest.approx(1.0, abs=0.1)


def test_bad_inputs_raise():
    rng = np.random.default_rng(0)
    with pytest.raises(CryolibError):
        drift_trajectory(0, 10.0, 1.0, rng)
    with pytest.raises(CryolibError):
        shift_image(np.zeros(8), np.zeros((1, 2)))
    with pytest.raises(CryolibError):
        shift_image(np.zeros((8, 8)), np.array([[np.nan, 0.0]]))
    with pytest.raises(CryolibError):
        expose_movie(np.full((8, 8), -1.0), 2, np.zeros((2, 2)), rng)
    with pytest.raises(CryolibError):
        expose_movie(np.full((8, 8), np.nan), 2, np.zeros((2, 2)), rng)
    with pytest.raises(CryolibError):
        expose_movie(np.ones((8, 8)), 3, np.zeros((2, 2)), rng)
    with pytest.raises(CryolibError):
        expose_movie(np.ones((8, 8)), 2, np.zeros((2, 2)), rng, dose_per_frame_weights=[1, -1])
    assert torch.is_tensor(shift_image(np.zeros((8, 8)), np.zeros((1, 2))))
