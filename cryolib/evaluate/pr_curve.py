"""Score sweeps over picks: precision-recall curves, the best-F1 threshold and average precision.

Matching is redone at every threshold with the rules of :mod:`cryolib.evaluate.metrics`
(one-to-one rules: maximum-cardinality matching, so recall never rises with the threshold).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from cryolib.core.errors import CryolibError
from cryolib.evaluate.metrics import (  # the matching rules' shared internals
    _EMPTY_PICKS,
    _candidate_pairs,
    _check_rule,
    _diameter_for,
    _match_one_to_one,
    _match_repo_nearest,
    _paired,
    _pool,
    _xy,
)

__all__ = ["precision_recall_curve", "best_f1_threshold", "average_precision"]


def _default_thresholds(scores: np.ndarray, max_thresholds: int) -> np.ndarray:
    unique = np.unique(scores)
    if len(unique) <= max_thresholds:
        return unique
    return np.unique(np.quantile(scores, np.linspace(0.0, 1.0, max_thresholds)))


def _scores(df: pd.DataFrame, name: str) -> np.ndarray:
    if len(df) == 0:
        return np.zeros(0)
    if "score" not in df.columns or df["score"].isna().any():
        raise CryolibError(f"predictions for {name!r} have no (or missing) scores; a PR curve needs a score per pick")
    return df["score"].to_numpy(dtype=np.float64)


def precision_recall_curve(pred_by_mic: Mapping[str, pd.DataFrame], truth_by_mic: Mapping[str, pd.DataFrame],
                           diameter_px: float | Mapping[str, float], rule: str = "overlap60",
                           thresholds=None, max_thresholds: int = 200) -> pd.DataFrame:
    """Pooled precision/recall/F1 as picks with ``score >= threshold`` are kept (matching redone per threshold).

    ``thresholds=None`` uses the distinct scores (at most ``max_thresholds``
    quantiles). The candidate pairs are computed once; each threshold re-solves
    the assignment on the surviving picks. Returns columns threshold, precision, recall, f1, n_picks, tp, fp,
    fn, mean_iou, rule, sorted by ascending threshold. For the one-to-one rules
    recall never increases with the threshold (maximum-cardinality matching).
    """
    _check_rule(rule)
    names = _paired(pred_by_mic, truth_by_mic)
    prepared = []
    for name in names:
        pred = pred_by_mic.get(name, _EMPTY_PICKS)
        prepared.append((_xy(pred, f"predictions for {name!r}"), _scores(pred, name),
                         _xy(truth_by_mic[name], f"ground truth for {name!r}"), _diameter_for(diameter_px, name)))
    all_scores = np.concatenate([p[1] for p in prepared]) if prepared else np.zeros(0)
    if thresholds is None:
        thresholds = _default_thresholds(all_scores, max_thresholds)
    pairs = [None if rule == "repo-nearest" else _candidate_pairs(xy, gt, d, rule) for xy, _, gt, d in prepared]
    rows = []
    for t in np.sort(np.asarray(thresholds, dtype=np.float64)):
        per_mic = [_match_repo_nearest(xy[s >= t], gt, d) if pp is None
                   else _match_one_to_one(xy, gt, d, rule, pp, s >= t)
                   for (xy, s, gt, d), pp in zip(prepared, pairs)]
        res = _pool(per_mic, rule, 0.0)
        rows.append({"threshold": t, "precision": res.precision, "recall": res.recall, "f1": res.f1,
                     "n_picks": res.n_pred, "tp": res.tp, "fp": res.fp, "fn": res.fn,
                     "mean_iou": res.mean_iou, "rule": rule})
    curve = pd.DataFrame(rows, columns=["threshold", "precision", "recall", "f1", "n_picks", "tp", "fp", "fn",
                                        "mean_iou", "rule"])
    curve.attrs["rule"] = rule
    return curve


def best_f1_threshold(curve: pd.DataFrame) -> dict:
    """The curve row with the highest F1 (the lowest threshold on ties), as a dict."""
    if len(curve) == 0 or curve["f1"].isna().all():
        raise CryolibError("the precision-recall curve is empty; no threshold to choose")
    return curve.loc[curve["f1"].idxmax()].to_dict()


def average_precision(curve: pd.DataFrame) -> float:
    """Area under the PR curve as a step sum, Σ (R_k − R_{k−1})·P_k over decreasing thresholds (R_0 = 0).

    The step estimator of scikit-learn's ``average_precision_score`` (exact when the
    thresholds are all distinct scores); it does not interpolate precision, so
    optimistic linear segments do not inflate it.
    """
    if len(curve) == 0:
        return float("nan")
    ordered = curve.sort_values("threshold", ascending=False)
    recall = ordered["recall"].to_numpy(dtype=np.float64)
    precision = ordered["precision"].to_numpy(dtype=np.float64)
    if np.isnan(recall).all():
        return float("nan")
    steps = np.diff(np.concatenate([[0.0], np.nan_to_num(recall)]))
    return float(np.sum(steps * precision))
