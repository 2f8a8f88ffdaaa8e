"""cryolib.reconstruct.poses: true positives take the true pose and centre, false positives a seeded random
pose at their own position; the cap keeps the best scores with seeded ties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryolib.core.errors import CryolibError
from cryolib.reconstruct import poses as P

TRUTH = pd.DataFrame({"x": [20.0, 80.0, 140.0], "y": [20.0, 80.0, 140.0], "rot_deg": [10.0, 20.0, 30.0],
                      "tilt_deg": [40.0, 50.0, 60.0], "psi_deg": [70.0, 80.0, 90.0]})


def test_true_positives_take_the_true_pose_and_centre():
    picks = pd.DataFrame({"x": [82.4, 300.0, 21.0], "y": [78.6, 300.0, 19.0], "score": [0.9, 0.8, 0.7]})
    out = P.assign_poses(picks, TRUTH, 20.0, np.random.default_rng(0))
    assert list(out.columns) == list(P.POSE_COLUMNS)
    assert out["true_positive"].tolist() == [True, False, True]
    assert out.loc[0, ["x", "y", "rot_deg", "tilt_deg", "psi_deg"]].tolist() == [80.0, 80.0, 20.0, 50.0, 80.0]
    assert out.loc[2, ["x", "y", "rot_deg"]].tolist() == [20.0, 20.0, 10.0]
    assert out.loc[1, ["x", "y"]].tolist() == [300.0, 300.0] and 0.0 <= out.loc[1, "tilt_deg"] <= 180.0
    again = P.assign_poses(picks, TRUTH, 20.0, np.random.default_rng(0))
    other = P.assign_poses(picks, TRUTH, 20.0, np.random.default_rng(1))
    assert again.equals(out) and other.loc[1, "rot_deg"] != out.loc[1, "rot_deg"]


def test_a_pick_overlapping_less_than_60_percent_is_a_false_positive():
    # shifted by 10 px in x and y on a 20 px box: overlap 25 % < 60 %
    out = P.assign_poses(pd.DataFrame({"x": [30.0], "y": [30.0]}), TRUTH, 20.0, np.random.default_rng(0))
    assert not out["true_positive"].any() and out.loc[0, "x"] == 30.0 and np.isnan(out.loc[0, "score"])


def test_empty_picks_give_an_empty_table():
    out = P.assign_poses(pd.DataFrame({"x": [], "y": []}), TRUTH, 20.0, np.random.default_rng(0))
    assert len(out) == 0 and list(out.columns) == list(P.POSE_COLUMNS)


def test_cap_keeps_the_highest_scores_over_all_micrographs():
    picks = {"a": pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0], "score": [0.1, 0.9, 0.5]}),
             "b": pd.DataFrame({"x": [4.0, 5.0], "y": [4.0, 5.0], "score": [0.8, 0.2]}),
             "c": pd.DataFrame({"x": [], "y": [], "score": []})}
    kept = P.select_picks(picks, 3, seed=0)
    assert kept["a"]["score"].tolist() == [0.9, 0.5] and kept["b"]["score"].tolist() == [0.8]
    assert len(kept["c"]) == 0
    assert P.select_picks(picks, None, seed=0)["a"].equals(picks["a"])
    assert P.select_picks(picks, 100, seed=0)["b"].equals(picks["b"])


def test_ties_are_broken_by_the_seed():
    picks = {"a": pd.DataFrame({"x": np.arange(50.0), "y": np.arange(50.0)})}  # no score: all tie
    first = P.select_picks(picks, 10, seed=0)["a"]
    assert len(first) == 10 and first.equals(P.select_picks(picks, 10, seed=0)["a"])
    assert not first.equals(P.select_picks(picks, 10, seed=1)["a"])


def test_mixed_false_positives_are_certain_and_keep_the_count():
    shapes = {"m": (256, 256)}
    truth = {"m": TRUTH[["x", "y"]]}
    mixed = P.mix_false_positives(truth, 2 / 3, shapes, 20.0, seed=0)["m"]
    assert len(mixed) == 3
    out = P.assign_poses(mixed, TRUTH, 20.0, np.random.default_rng(0))
    assert int(out["true_positive"].sum()) == 1
    with pytest.raises(CryolibError, match="fraction"):
        P.mix_false_positives(truth, 1.5, shapes, 20.0, seed=0)


def test_random_picks_stay_inside_and_are_seeded():
    picks = P.random_picks({"m": (100, 200)}, 30, seed=3, margin_px=5)["m"]
    assert len(picks) == 30 and picks["x"].between(5, 194).all() and picks["y"].between(5, 94).all()
    assert picks.equals(P.random_picks({"m": (100, 200)}, 30, seed=3, margin_px=5)["m"])


def test_bad_picks_raise(tmp_path):
    with pytest.raises(CryolibError, match="columns x, y"):
        P.assign_poses(pd.DataFrame({"a": [1.0]}), TRUTH, 20.0, np.random.default_rng(0))
    with pytest.raises(CryolibError, match="NaN"):
        P.select_picks({"a": pd.DataFrame({"x": [np.nan], "y": [1.0]})}, 1, 0)
    from cryolib.io.datasets import Dataset

    ds = Dataset("x", tmp_path, [], pd.DataFrame(), 10.0, 1.0)
    with pytest.raises(CryolibError, match="poses exist only for simulated"):
        P.ground_truth_poses(ds, "absent")
