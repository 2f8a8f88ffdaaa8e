"""cryolib.evaluate.snr: DRACO Eq. 11 against a hand computation, true SNRs against analytic values,
and the ground-truth region-pair rule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryolib.core.errors import CryolibError
from cryolib.evaluate.snr import band_pass, band_snr_db, region_pairs, snr_eq11, true_snr_db


def test_eq11_matches_a_hand_computation():
    image = np.array([[5.0, 5.0, 1.0, 3.0],
                      [5.0, 5.0, 1.0, 3.0],
                      [9.0, 7.0, 2.0, 2.0],
                      [9.0, 7.0, 0.0, 4.0]])
    signal = [(slice(0, 2), slice(0, 2)), (slice(2, 4), slice(0, 2))]
    background = [(slice(0, 2), slice(2, 4)), (slice(2, 4), slice(2, 4))]
    # pair 1: mean(s) = 5, b = {1, 3, 1, 3}: mean 2, var 1 -> (5-2)²/1 = 9
    # pair 2: mean(s) = 8, b = {2, 2, 0, 4}: mean 2, var 2 -> (8-2)²/2 = 18
    expected = 10.0 / 2 * (math.log10(9.0) + math.log10(18.0))
    assert snr_eq11(image, signal, background) == pytest.approx(expected)
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    bg = np.zeros((4, 4), bool)
    bg[:2, 2:] = True
    assert snr_eq11(image, [mask], [bg]) == pytest.approx(10 * math.log10(9.0))


def test_eq11_bad_regions():
    image = np.zeros((4, 4))
    with pytest.raises(CryolibError, match="same positive number"):
        snr_eq11(image, [(slice(0, 2), slice(0, 2))], [])
    with pytest.raises(CryolibError, match="at least 2"):
        snr_eq11(image, [(slice(0, 2), slice(0, 2))], [(slice(9, 12), slice(0, 2))])


def _smooth_clean(shape=(128, 160), seed=0):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), 3.0) * 10


def test_true_snr_of_clean_and_of_known_noise():
    clean = _smooth_clean()
    assert true_snr_db(clean, clean) == math.inf
    assert true_snr_db(3.0 * clean - 7.0, clean) == math.inf  # gain and offset do not count
    rng = np.random.default_rng(1)
    for ratio in (10.0, 1.0, 0.1):
        sigma = math.sqrt(clean.var() / ratio)
        noisy = clean + rng.normal(0, sigma, clean.shape)
        assert true_snr_db(noisy, clean) == pytest.approx(10 * math.log10(ratio), abs=0.3)


def test_band_snr_sees_noise_only_in_its_band():
    clean = _smooth_clean()
    rng = np.random.default_rng(2)
    noise = band_pass(rng.normal(size=clean.shape), 0.3, 0.5)  # only finer than the band
    assert band_snr_db(clean + noise * 50, clean, 0.02, 0.25) > 40.0
    assert true_snr_db(clean + noise * 50, clean) < 20.0


def test_region_pairs_on_synthetic_particles():
    yy, xx = np.mgrid[:200, :200]
    xy = np.array([[40.0, 40.0], [150.0, 50.0], [60.0, 150.0], [150.0, 150.0]])
    clean = np.zeros((200, 200))
    for x, y in xy:
        clean -= np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 6.0**2))
    signal, background = region_pairs(clean, pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]}), 20.0, n_pairs=3, seed=0)
    assert len(signal) == len(background) == 3
    for s, b in zip(signal, background):
        sy, sx = (s[0].start + s[0].stop) / 2, (s[1].start + s[1].stop) / 2
        by, bx = (b[0].start + b[0].stop) / 2, (b[1].start + b[1].stop) / 2
        d = np.sqrt(((xy - [bx, by]) ** 2).sum(1)).min()
        assert d >= 10.0 + 2.0  # background box centre outside every particle disk
        assert math.hypot(sx - bx, sy - by) <= 80.0  # close together
        assert clean[s].mean() < clean[b].mean() - 0.2  # on a (dark) particle vs flat ice
    assert region_pairs(clean, xy, 20.0, n_pairs=3, seed=0) == (signal, background)  # same seed, same pairs
    noisy = clean + np.random.default_rng(0).normal(0, 0.1, clean.shape)
    assert snr_eq11(clean + 0.01 * np.random.default_rng(1).normal(size=clean.shape), signal, background) > \
        snr_eq11(noisy, signal, background)
    with pytest.raises(CryolibError, match="no Eq. 11 region pair"):
        region_pairs(clean, np.empty((0, 2)), 20.0)
