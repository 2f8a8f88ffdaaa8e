"""Picking metrics (Cryo-EMMAE §4.1): hand-computed boxes, the three rules, empty inputs, PR sweeps."""

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment

from cryolib.core.errors import CryolibError
from cryolib.evaluate.metrics import RULES, box_iou, box_overlap_fraction, match_picks, score_dataset
from cryolib.evaluate.pr_curve import average_precision, best_f1_threshold, precision_recall_curve


def picks(*xy, score=None) -> pd.DataFrame:
    df = pd.DataFrame(np.array(xy, dtype=float).reshape(-1, 2), columns=["x", "y"])
    if score is not None:
        df["score"] = np.asarray(score, dtype=float)
    return df


GT = picks((50, 50))


# --------------------------------------------------------------------------- geometry
def test_box_overlap_and_iou_by_hand():
    # side 10, shift (3, 0): intersection 7 x 10 = 70 -> 70 % of the box, IoU 70/130
    assert box_overlap_fraction([[53, 50]], [[50, 50]], 10) == pytest.approx(np.array([[0.7]]))
    assert box_iou([[53, 50]], [[50, 50]], 10) == pytest.approx(np.array([[70 / 130]]))
    # shift (3, 4): 7 x 6 = 42
    assert box_overlap_fraction([[53, 54]], [[50, 50]], 10) == pytest.approx(np.array([[0.42]]))
    # disjoint and touching boxes do not overlap
    assert box_overlap_fraction([[60, 50], [80, 80]], [[50, 50]], 10) == pytest.approx(np.array([[0.0], [0.0]]))
    assert box_overlap_fraction(np.zeros((3, 2)), np.zeros((4, 2)), 5).shape == (3, 4)


@pytest.mark.parametrize("shift, is_tp", [(3.0, True), (3.9, True), (4.0, False), (4.1, False), (4.5, False)])
def test_overlap60_boundary(shift, is_tp):
    res = match_picks(picks((50 + shift, 50)), GT, 10, "overlap60")
    assert (res.tp, res.fp, res.fn) == ((1, 0, 0) if is_tp else (0, 1, 1))


@pytest.mark.parametrize("shift, is_tp", [(2.4, True), (2.6, False)])
def test_iou60_boundary_is_75_percent_overlap(shift, is_tp):
    # for equal boxes IoU > 0.6 <=> overlap > 0.75 <=> a one-axis shift < side / 4
    assert match_picks(picks((50 + shift, 50)), GT, 10, "iou60").tp == int(is_tp)


def test_iou60_is_stricter_than_overlap60():
    pred = picks((53, 50))  # overlap 0.7, IoU 0.538
    assert match_picks(pred, GT, 10, "overlap60").tp == 1
    res = match_picks(pred, GT, 10, "iou60")
    assert (res.tp, res.fp, res.fn) == (0, 1, 1)


# --------------------------------------------------------------------------- rules
def test_two_picks_on_one_particle():
    pred = picks((50, 50), (52, 50))
    res = match_picks(pred, GT, 10, "overlap60")
    assert (res.tp, res.fp, res.fn, res.precision, res.recall) == (1, 1, 0, 0.5, 1.0)
    assert res.pred_idx.tolist() == [0] and res.gt_idx.tolist() == [0]  # the better pick wins
    # the repository scorer counts this case the same way: TP / #predictions = 0.5
    repo = match_picks(pred, GT, 10, "repo-nearest")
    assert (repo.tp, repo.fp, repo.precision, repo.recall) == (1, 1, 0.5, 1.0)


def test_repo_nearest_is_not_one_to_one():
    # one pick between two particles 4 px apart (side 20): IoU 0.818 with each
    truth, pred = picks((0, 0), (4, 0)), picks((2, 0))
    paper = match_picks(pred, truth, 20, "overlap60")
    assert (paper.tp, paper.fp, paper.fn, paper.precision, paper.recall) == (1, 0, 1, 1.0, 0.5)
    repo = match_picks(pred, truth, 20, "repo-nearest")
    assert (repo.tp, repo.fn, repo.recall) == (2, 0, 1.0)
    assert repo.precision == 2.0  # TP / #predictions, as in the repository
    assert repo.f1 == pytest.approx(2 * 2.0 * 1.0 / 3.0)


def test_assignment_maximises_true_positives():
    # greedy by overlap would take (P0, A) at 0.95 and leave P1 unmatched; one-to-one gives 2 TPs
    truth = picks((0, 0), (3.5, 0))
    pred = picks((0.5, 0), (-3, 0))
    res = match_picks(pred, truth, 10, "overlap60")
    assert res.tp == 2
    assert sorted(zip(res.pred_idx.tolist(), res.gt_idx.tolist())) == [(0, 1), (1, 0)]


def test_iou_summaries():
    truth = picks((50, 50), (200, 200))
    res = match_picks(picks((53, 50)), truth, 10, "overlap60")
    assert res.mean_iou == pytest.approx(70 / 130)  # paper (i): over matched pairs
    assert res.mean_iou_gt == pytest.approx(70 / 130 / 2)  # repository: over GT, 0 when unmatched
    # the repository averages the nearest pick's IoU even when it is not a TP
    repo = match_picks(picks((54.5, 50)), GT, 10, "repo-nearest")
    assert repo.tp == 0 and np.isnan(repo.mean_iou)
    assert repo.mean_iou_gt == pytest.approx(55 / 145)


def test_rule_is_recorded():
    for rule in RULES:
        res = match_picks(picks((50, 50)), GT, 10, rule)
        assert res.rule == rule and res.as_dict()["rule"] == rule


@pytest.mark.parametrize("rule", RULES)
def test_empty_inputs(rule):
    none = picks()
    no_picks = match_picks(none, GT, 10, rule)
    assert (no_picks.tp, no_picks.fp, no_picks.fn, no_picks.precision, no_picks.recall, no_picks.f1) == (
        0, 0, 1, 0.0, 0.0, 0.0)
    assert no_picks.mean_iou_gt == 0.0 and np.isnan(no_picks.mean_iou)
    no_truth = match_picks(picks((1, 1)), none, 10, rule)
    assert (no_truth.tp, no_truth.fp, no_truth.fn, no_truth.precision, no_truth.f1) == (0, 1, 0, 0.0, 0.0)
    assert np.isnan(no_truth.recall)
    both = match_picks(none, pd.DataFrame(), 10, rule)
    assert both.precision == 0.0 and np.isnan(both.recall) and np.isnan(both.f1)


def test_bad_arguments():
    with pytest.raises(CryolibError, match="unknown matching rule"):
        match_picks(GT, GT, 10, "iou50")
    for d in (0, -3, np.nan):
        with pytest.raises(CryolibError, match="diameter_px"):
            match_picks(GT, GT, d)
    with pytest.raises(CryolibError, match="columns x, y"):
        match_picks(pd.DataFrame({"a": [1.0]}), GT, 10)
    with pytest.raises(CryolibError, match="non-finite"):
        match_picks(picks((np.nan, 1)), GT, 10)


def test_matches_brute_force_assignment():
    rng = np.random.default_rng(0)
    for _ in range(60):
        p, g = rng.uniform(0, 60, (rng.integers(1, 20), 2)), rng.uniform(0, 60, (rng.integers(1, 20), 2))
        for rule, matrix in (("overlap60", box_overlap_fraction(p, g, 20)), ("iou60", box_iou(p, g, 20))):
            weight = np.where(matrix > 0.6, 100.0 + matrix, 0.0)
            r, c = linear_sum_assignment(weight, maximize=True)
            ok = weight[r, c] > 0
            res = match_picks(picks(*p), picks(*g), 20, rule)
            assert res.tp == ok.sum()
            assert matrix[res.pred_idx, res.gt_idx].sum() == pytest.approx(matrix[r[ok], c[ok]].sum())
            assert len(set(res.pred_idx)) == len(set(res.gt_idx)) == res.tp


# --------------------------------------------------------------------------- datasets
def _dataset(seed=0, n_mic=3):
    rng = np.random.default_rng(seed)
    truth, pred = {}, {}
    for m in range(n_mic):
        g = rng.uniform(0, 500, (40, 2))
        p = np.concatenate([g[:30] + rng.normal(0, 2, (30, 2)), rng.uniform(0, 500, (20, 2))])
        truth[f"mic{m}"] = picks(*g)
        pred[f"mic{m}"] = picks(*p, score=np.concatenate([rng.normal(2, 1, 30), rng.normal(0, 1, 20)]))
    return pred, truth


def test_score_dataset_pools_counts():
    pred, truth = _dataset()
    out = score_dataset(pred, truth, 24, "overlap60")
    rows = out["per_micrograph"]
    assert list(rows["micrograph"]) == ["mic0", "mic1", "mic2"] and set(rows["rule"]) == {"overlap60"}
    for key in ("tp", "fp", "fn", "n_pred", "n_gt"):
        assert out[key] == rows[key].sum()
    assert out["precision"] == pytest.approx(out["tp"] / out["n_pred"])
    assert out["recall"] == pytest.approx(out["tp"] / out["n_gt"])
    assert out["f1"] == pytest.approx(2 * out["precision"] * out["recall"] / (out["precision"] + out["recall"]))
    assert out["mean_iou"] == pytest.approx((rows["mean_iou"] * rows["tp"]).sum() / out["tp"])
    assert out["rule"] == "overlap60" and out["n_micrographs"] == 3


def test_score_dataset_missing_predictions_and_diameters():
    pred, truth = _dataset()
    del pred["mic2"]
    pred["extra"] = picks((1, 1))
    out = score_dataset(pred, truth, {"mic0": 24, "mic1": 24, "mic2": 24})
    assert out["n_micrographs"] == 3 and out["fn"] >= 40  # mic2: every particle missed
    with pytest.raises(CryolibError, match="no diameter"):
        score_dataset(pred, truth, {"mic0": 24})


@pytest.mark.parametrize("rule", ["overlap60", "iou60"])
def test_pr_curve_monotone_and_consistent(rule):
    pred, truth = _dataset(seed=1)
    curve = precision_recall_curve(pred, truth, 24, rule)
    assert list(curve.columns[:5]) == ["threshold", "precision", "recall", "f1", "n_picks"]
    assert (curve["rule"] == rule).all() and curve.attrs["rule"] == rule
    assert np.all(np.diff(curve["threshold"]) > 0)
    assert np.all(np.diff(curve["recall"]) <= 1e-12) and np.all(np.diff(curve["n_picks"]) <= 0)
    row = curve.iloc[len(curve) // 2]
    direct = score_dataset({k: v[v["score"] >= row["threshold"]] for k, v in pred.items()}, truth, 24, rule)
    assert (direct["tp"], direct["f1"]) == (row["tp"], pytest.approx(row["f1"]))
    best = best_f1_threshold(curve)
    assert best["f1"] == curve["f1"].max()
    assert 0 < average_precision(curve) < 1


def test_average_precision_of_perfect_and_random_rankings():
    rng = np.random.default_rng(2)
    g = rng.uniform(0, 1000, (50, 2))
    p = np.concatenate([g, rng.uniform(0, 1000, (50, 2))])
    perfect = {"m": picks(*p, score=np.r_[np.linspace(2, 3, 50), np.linspace(0, 1, 50)])}
    curve = precision_recall_curve(perfect, {"m": picks(*g)}, 20)
    assert average_precision(curve) == pytest.approx(1.0)
    assert best_f1_threshold(curve)["f1"] == pytest.approx(1.0)
    shuffled = {"m": picks(*p, score=rng.permutation(100))}
    assert average_precision(precision_recall_curve(shuffled, {"m": picks(*g)}, 20)) < 0.8


def test_pr_curve_needs_scores():
    pred, truth = _dataset()
    pred["mic0"] = pred["mic0"].drop(columns="score")
    with pytest.raises(CryolibError, match="scores"):
        precision_recall_curve(pred, truth, 24)
