"""Tests for cryolib.pick.postprocess: threshold, components and filters (Cryo-EMMAE §3.3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryolib.core.errors import CryolibError
from cryolib.pick import postprocess as pp
from pick_synthetic import TOKEN, blob_centre_px, blob_mask


def test_postprocess_square_blobs_give_picks_at_their_centres():
    blobs = [(r, c, 6) for r in (15, 45, 75, 105) for c in (20, 60, 100)]
    mask = blob_mask((128, 128), blobs)
    picks = pp.postprocess(mask, diameter_px_working=24, token_px=TOKEN, particle_fraction=0.01)
    assert len(picks) == len(blobs) and list(picks.columns) == ["x", "y", "score", "area"]
    for b in blobs:
        x, y = blob_centre_px(*b)
        d = np.hypot(picks.x - x, picks.y - y)
        assert d.min() <= 1.0, (b, d.min())


def test_postprocess_neighbour_filter_keeps_the_larger_of_two_close_blobs():
    mask = blob_mask((128, 128), [(50, 50, 6), (50, 58, 3), (90, 90, 6)])  # 2-token gap between the first two
    picks = pp.postprocess(mask, diameter_px_working=60, token_px=TOKEN, particle_fraction=0.001)
    assert len(picks) == 2
    assert np.hypot(picks.x - blob_centre_px(50, 50, 6)[0], picks.y - blob_centre_px(50, 50, 6)[1]).min() <= 1.0
    tie = blob_mask((128, 128), [(50, 50, 4), (50, 56, 4), (90, 90, 6)])
    picks = pp.postprocess(tie, diameter_px_working=60, token_px=TOKEN, particle_fraction=0.001)
    assert len(picks) == 1  # equal areas: both removed, as in the repository


def test_postprocess_edge_filter_and_size_filter():
    mask = blob_mask((128, 128), [(1, 60, 6), (60, 60, 6), (90, 10, 30)])
    picks = pp.postprocess(mask, diameter_px_working=24, token_px=TOKEN, particle_fraction=0.001)
    x, y = blob_centre_px(60, 60, 6)
    assert len(picks) == 1 and np.hypot(picks.x[0] - x, picks.y[0] - y) <= 1.0  # edge blob and huge blob gone
    off = pp.postprocess(mask, diameter_px_working=24, token_px=TOKEN, particle_fraction=0.001, size_filter_factor=None)
    assert len(off) == 2  # huge blob (30x30 tokens) survives with the size filter off


def test_postprocess_scores_rank_a_particle_above_a_speck():
    mask = blob_mask((128, 128), [(40, 40, 6), (80, 80, 3)])
    picks = pp.postprocess(mask, diameter_px_working=24, token_px=TOKEN, particle_fraction=0.001)
    assert len(picks) == 2
    big = np.hypot(picks.x - blob_centre_px(40, 40, 6)[0], picks.y - blob_centre_px(40, 40, 6)[1]).argmin()
    assert picks.score[big] == picks.score.max() and 0 < picks.score.min() < picks.score.max() <= 1


def test_postprocess_empty_mask_gives_no_picks():
    picks = pp.postprocess(np.zeros((32, 32), bool), 24, TOKEN)
    assert len(picks) == 0 and list(picks.columns) == ["x", "y", "score", "area"]


def test_training_particle_fraction():
    coords = {"a": pd.DataFrame({"x": np.zeros(10), "y": np.zeros(10)}), "b": pd.DataFrame({"x": [], "y": []})}
    frac = pp.training_particle_fraction(coords, {"a": (100, 100), "b": (100, 100)}, diameter=10)
    assert frac == pytest.approx((10 * np.pi * 25 / 1e4 + 0) / 2)
    with pytest.raises(CryolibError, match="diameter"):
        pp.training_particle_fraction([coords["a"]], [(100, 100)])
