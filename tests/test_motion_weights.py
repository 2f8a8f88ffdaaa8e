"""How frames are compared for alignment (cryolib.processing.motion_weights): analytic checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryolib.processing.motion_weights import (
    cc_filter,
    edge_taper,
    remove_smooth_component,
    ring_weights,
)


def test_edge_taper_is_one_inside_and_falls_symmetrically_to_zero():
    w = edge_taper((64, 96)).numpy()
    assert w.shape == (64, 96)
    assert np.all(w[4:-4, 6:-6] == 1.0)  # 1/16 of each side: 4 and 6 px
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert 0 < w[0, 0] < 0.01 and w.min() >= 0


def test_cc_filter_drops_the_frame_sized_waves_and_keeps_the_b_factor_prior():
    n, b = 512, 100.0
    k = torch.tensor([0.0, 5.0 / n, 0.1], dtype=torch.float64)
    f = cc_filter(k**2, n, b).numpy()
    assert f[0] == 0.0  # DC
    assert f[1] == pytest.approx((1 - math.exp(-1)) * math.exp(-b * (5 / n) ** 2 / 4))
    assert f[2] == pytest.approx(math.exp(-b * 0.01 / 4), rel=1e-9)  # ring 51: no high-pass left


def test_smooth_component_solves_the_poisson_equation_of_the_border_jumps():
    """Moisan (2011): s = u - p solves the periodic discrete Poisson equation Δs = v, where v
    holds the jumps across the frame border (v(0, j) = u(N-1, j) - u(0, j), v(N-1, j) = -v(0, j),
    the same along columns)."""
    n = 32
    u = np.random.default_rng(3).normal(size=(n, n)).cumsum(axis=0).cumsum(axis=1)  # non-periodic
    v = np.zeros((n, n))
    v[0, :] += u[-1, :] - u[0, :]
    v[-1, :] -= u[-1, :] - u[0, :]
    v[:, 0] += u[:, -1] - u[:, 0]
    v[:, -1] -= u[:, -1] - u[:, 0]
    x = torch.from_numpy(u[None].astype(np.float32))
    g = torch.fft.rfft2(x)
    ky, kx = torch.fft.fftfreq(n), torch.fft.rfftfreq(n)
    smooth = (g - remove_smooth_component(g.clone(), x, ky, kx, (n, n)))[0].numpy()
    lap = 2 * np.cos(2 * np.pi * ky.numpy())[:, None] + 2 * np.cos(2 * np.pi * kx.numpy())[None] - 4
    expected = np.fft.rfft2(v)
    expected[0, 0] = 0  # the mean is removed separately
    np.testing.assert_allclose(lap * smooth, expected, atol=1e-3 * np.abs(expected).max())


def _ring_inputs(frames: torch.Tensor):
    g = torch.fft.rfft2(frames)
    g[:, 0, 0] = 0
    n = frames.shape[-1]
    ky, kx = torch.fft.fftfreq(n), torch.fft.rfftfreq(n)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    shells = (k2.sqrt() * n).long()
    power = (g.real.square() + g.imag.square()).sum(0)
    filt = torch.ones(k2.shape)
    no_gain = torch.zeros(k2.shape, dtype=torch.float64)
    return power, g.sum(0, keepdim=True), shells, filt, no_gain


def test_ring_weights_pass_identical_frames_and_reject_independent_noise():
    rng = np.random.default_rng(0)
    same = torch.from_numpy(np.repeat(rng.normal(size=(1, 64, 64)), 10, 0).astype(np.float32))
    power, total, shells, filt, gain = _ring_inputs(same)
    w, _, _ = ring_weights(power, total, 10, shells, filt, gain)
    assert float(w[shells > 0].min()) > 0.99  # noise-free signal: the Wiener factor is 1
    noise = torch.from_numpy(rng.normal(size=(10, 64, 64)).astype(np.float32))
    power, total, shells, filt, gain = _ring_inputs(noise)
    w, _, _ = ring_weights(power, total, 10, shells, filt, gain)
    assert float(w.mean()) < 0.1  # no common signal: the reference is weighted away
