"""Particle-picking metrics (Cryo-EMMAE §4.1) under three matching rules.

Every particle gets an axis-aligned square box of side = particle diameter (px),
centred on it. Rules (``RULES``; each result stores the rule it used):

- ``"overlap60"`` (paper §4.1, the default): a prediction is a TP when it
  *uniquely* (one-to-one) overlaps a ground-truth box by more than 60 % of the
  box area. The assignment maximises the number of TPs, ties broken by the total
  overlap (Hungarian, ``scipy.optimize.linear_sum_assignment``). All other
  predictions are FP; unmatched ground truth is FN.
- ``"iou60"``: the same one-to-one assignment with IoU > 0.6 (stricter: for equal
  boxes IoU > 0.6 needs more than 75 % overlap, overlap 60 % is IoU ≈ 0.43).
- ``"repo-nearest"``: the Cryo-EMMAE repository's scorer (cryoemmae.md §7). For each
  GT the nearest predicted centre (Euclidean); TP when their IoU > 0.6. *Not*
  one-to-one: one pick may count for several GT, so ``precision = tp / n_pred``
  (as in the repository) can exceed 1 in that degenerate case; ``fp`` counts the
  picks that are no GT's TP partner, and recall need not fall monotonically in a
  score sweep.

Two IoU summaries: ``mean_iou`` is the paper's (i), the mean IoU over TP pairs;
``mean_iou_gt`` is the repository's, the mean over GT of the IoU with its partner
(0 when it has none). For ``repo-nearest`` the partner is the nearest pick, TP or
not; for the one-to-one rules it is the TP partner.

Empty-input conventions (so pooled sums never divide by zero per micrograph):
precision = tp / n_pred, and 0.0 when there are no predictions; recall =
tp / n_gt, NaN when there is no ground truth; F1 = 2·tp / (n_pred + n_gt) (equal to
2PR/(P+R) and to 2TP/(2TP+FP+FN)), NaN when both are empty; IoU means are NaN
with nothing to average. Pooled scores sum counts over micrographs first.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from cryolib.core.errors import CryolibError

__all__ = [
    "RULES", "TP_FRACTION", "MatchResult", "box_overlap_fraction", "box_iou", "match_picks",
    "score_dataset",
]

log = logging.getLogger(__name__)

RULES = ("overlap60", "iou60", "repo-nearest")
TP_FRACTION = 0.6  # the 60 % of §4.1 (overlap fraction or IoU, by rule)
_ARRAY_FIELDS = ("pred_idx", "gt_idx", "pair_iou", "gt_iou_sum")  # kept out of tables and JSON


# --------------------------------------------------------------------------- geometry
def _intersection(pred_xy: np.ndarray, gt_xy: np.ndarray, box_px: float) -> np.ndarray:
    """Intersection area (px²) of equal squares of side ``box_px``; broadcasts over leading dims."""
    dx = np.abs(pred_xy[..., 0] - gt_xy[..., 0])
    dy = np.abs(pred_xy[..., 1] - gt_xy[..., 1])
    return np.clip(box_px - dx, 0.0, None) * np.clip(box_px - dy, 0.0, None)


def _as_xy(xy) -> np.ndarray:
    return np.asarray(xy, dtype=np.float64).reshape(-1, 2)


def box_overlap_fraction(pred_xy, gt_xy, box_px: float) -> np.ndarray:
    """(P, G) intersection area / box area for equal squares of side ``box_px`` (px), centres (x, y)."""
    p, g = _as_xy(pred_xy), _as_xy(gt_xy)
    return _intersection(p[:, None, :], g[None, :, :], box_px) / box_px**2


def box_iou(pred_xy, gt_xy, box_px: float) -> np.ndarray:
    """(P, G) intersection over union of equal squares of side ``box_px`` (px)."""
    p, g = _as_xy(pred_xy), _as_xy(gt_xy)
    inter = _intersection(p[:, None, :], g[None, :, :], box_px)
    return inter / (2.0 * box_px**2 - inter)


def _fractions(inter: np.ndarray, box_px: float) -> tuple[np.ndarray, np.ndarray]:
    """(overlap fraction, IoU) from intersection areas."""
    area = box_px**2
    return inter / area, inter / (2.0 * area - inter)


# --------------------------------------------------------------------------- results
@dataclass
class MatchResult:
    """Counts and scores of one micrograph (or a pooled set) under one rule.

    ``pred_idx``/``gt_idx`` are positional (``iloc``) indices of the TP pairs and
    ``pair_iou`` their IoU; ``gt_iou_sum`` is the numerator of ``mean_iou_gt``.
    """

    rule: str
    diameter_px: float
    n_pred: int
    n_gt: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    mean_iou: float
    mean_iou_gt: float
    gt_iou_sum: float = 0.0
    pred_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, int), repr=False)
    gt_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, int), repr=False)
    pair_iou: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def as_dict(self) -> dict:
        """Scalar fields only (no pair arrays), JSON-ready."""
        return {k: v for k, v in asdict(self).items() if k not in _ARRAY_FIELDS}


def _ratio(num: float, den: float, empty: float) -> float:
    return float(num) / den if den > 0 else empty


def _summarise(rule: str, diameter_px: float, n_pred: int, n_gt: int, tp: int, fp: int,
               pair_iou: np.ndarray, gt_iou_sum: float, pred_idx=None, gt_idx=None) -> MatchResult:
    """Apply the documented empty-input conventions to raw counts."""
    return MatchResult(
        rule=rule, diameter_px=float(diameter_px), n_pred=int(n_pred), n_gt=int(n_gt),
        tp=int(tp), fp=int(fp), fn=int(n_gt - tp),
        precision=_ratio(tp, n_pred, 0.0), recall=_ratio(tp, n_gt, np.nan),
        f1=_ratio(2 * tp, n_pred + n_gt, np.nan),
        mean_iou=float(np.mean(pair_iou)) if len(pair_iou) else np.nan,
        mean_iou_gt=_ratio(gt_iou_sum, n_gt, np.nan), gt_iou_sum=float(gt_iou_sum),
        pred_idx=np.zeros(0, int) if pred_idx is None else np.asarray(pred_idx, int),
        gt_idx=np.zeros(0, int) if gt_idx is None else np.asarray(gt_idx, int),
        pair_iou=np.asarray(pair_iou, float),
    )


# --------------------------------------------------------------------------- matching
def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise CryolibError(f"unknown matching rule {rule!r}; use one of {', '.join(RULES)}")


def _check_diameter(diameter_px: float) -> float:
    d = float(diameter_px)
    if not np.isfinite(d) or d <= 0:
        raise CryolibError(f"diameter_px={diameter_px} must be a positive number of pixels")
    return d


def _xy(df: pd.DataFrame, what: str) -> np.ndarray:
    if isinstance(df, pd.DataFrame) and len(df) == 0:
        return np.zeros((0, 2))
    if not isinstance(df, pd.DataFrame) or not {"x", "y"} <= set(df.columns):
        raise CryolibError(f"{what} must be a DataFrame with columns x, y (px)")
    xy = df[["x", "y"]].to_numpy(dtype=np.float64)
    if not np.isfinite(xy).all():
        raise CryolibError(f"{what} has non-finite x/y coordinates")
    return xy


def _candidate_pairs(pred_xy: np.ndarray, gt_xy: np.ndarray, box_px: float, rule: str):
    """Pairs (i, j, value, iou) that would be TPs under ``rule``; value is what the assignment maximises.

    Uses a KD-tree with the Chebyshev metric, as boxes of side s only meet within s.
    """
    empty = (np.zeros(0, int), np.zeros(0, int), np.zeros(0), np.zeros(0))
    if len(pred_xy) == 0 or len(gt_xy) == 0:
        return empty
    close = cKDTree(pred_xy).sparse_distance_matrix(cKDTree(gt_xy), box_px, p=np.inf, output_type="ndarray")
    if len(close) == 0:
        return empty
    i, j = close["i"].astype(int), close["j"].astype(int)
    overlap, iou = _fractions(_intersection(pred_xy[i], gt_xy[j], box_px), box_px)
    value = overlap if rule == "overlap60" else iou
    keep = value > TP_FRACTION
    return i[keep], j[keep], value[keep], iou[keep]


def _distinct_per_group(group: np.ndarray, member: np.ndarray, n_groups: int) -> np.ndarray:
    """How many distinct ``member`` values each group holds."""
    base = int(member.max()) + 1
    key = np.unique(group.astype(np.int64) * base + member)
    return np.bincount(key // base, minlength=n_groups)


def _assign(i: np.ndarray, j: np.ndarray, value: np.ndarray, n_pred: int, n_gt: int) -> np.ndarray:
    """Indices into the pair list of a one-to-one matching with the most pairs, then the most value.

    The bipartite graph is split into connected components. A component with one
    pick or one GT (a star) keeps its highest-value pair. All other components are
    solved together (they share no vertex) by the Hungarian algorithm with weight
    ``C + value``, C > any total value, so the pair count comes first.
    """
    if len(i) == 0:
        return np.zeros(0, int)
    graph = coo_matrix((np.ones(len(i)), (i, n_pred + j)), shape=(n_pred + n_gt,) * 2)
    n_comp, labels = connected_components(graph, directed=False)
    comp = labels[i]
    star = (_distinct_per_group(comp, i, n_comp) == 1) | (_distinct_per_group(comp, j, n_comp) == 1)
    order = np.lexsort((-value, comp))  # by component, best value first
    first = order[np.r_[True, comp[order][1:] != comp[order][:-1]]]
    chosen = [first[star[comp[first]]]]
    general = np.flatnonzero(~star[comp])
    if len(general):
        rows, ri = np.unique(i[general], return_inverse=True)
        cols, ci = np.unique(j[general], return_inverse=True)
        weight = np.zeros((len(rows), len(cols)))
        weight[ri, ci] = min(len(rows), len(cols)) + 1.0 + value[general]
        index = np.full((len(rows), len(cols)), -1)
        index[ri, ci] = general
        r, k = linear_sum_assignment(weight, maximize=True)
        picked = index[r, k]
        chosen.append(picked[picked >= 0])
    return np.sort(np.concatenate(chosen))


def _match_one_to_one(pred_xy, gt_xy, box_px, rule, pairs=None, keep=None) -> MatchResult:
    """One-to-one rules. ``pairs`` (from ``_candidate_pairs``) and a boolean pick mask
    ``keep`` let a threshold sweep reuse the geometry; indices stay those of ``pred_xy``."""
    i, j, value, iou = _candidate_pairs(pred_xy, gt_xy, box_px, rule) if pairs is None else pairs
    n_pred = len(pred_xy)
    if keep is not None:
        n_pred = int(keep.sum())
        ok = keep[i]
        i, j, value, iou = i[ok], j[ok], value[ok], iou[ok]
    sel = _assign(i, j, value, len(pred_xy), len(gt_xy))
    tp = len(sel)
    return _summarise(rule, box_px, n_pred, len(gt_xy), tp, n_pred - tp,
                      iou[sel], float(iou[sel].sum()), i[sel], j[sel])


def _match_repo_nearest(pred_xy, gt_xy, box_px) -> MatchResult:
    """Repository scorer: nearest pick per GT, TP if IoU > 0.6, not one-to-one (cryoemmae.md §7).

    ``fp`` counts picks that are nobody's TP partner; precision stays tp / n_pred.
    """
    n_pred, n_gt = len(pred_xy), len(gt_xy)
    if n_pred == 0 or n_gt == 0:
        return _summarise("repo-nearest", box_px, n_pred, n_gt, 0, n_pred, np.zeros(0), 0.0)
    _, nearest = cKDTree(pred_xy).query(gt_xy, k=1)
    _, iou = _fractions(_intersection(pred_xy[nearest], gt_xy, box_px), box_px)
    is_tp = iou > TP_FRACTION
    gt_idx = np.flatnonzero(is_tp)
    pred_idx = nearest[is_tp]
    fp = n_pred - len(np.unique(pred_idx))
    return _summarise("repo-nearest", box_px, n_pred, n_gt, int(is_tp.sum()), fp,
                      iou[is_tp], float(iou.sum()), pred_idx, gt_idx)


def _match_xy(pred_xy: np.ndarray, gt_xy: np.ndarray, box_px: float, rule: str) -> MatchResult:
    if rule == "repo-nearest":
        return _match_repo_nearest(pred_xy, gt_xy, box_px)
    return _match_one_to_one(pred_xy, gt_xy, box_px, rule)


def match_picks(pred: pd.DataFrame, truth: pd.DataFrame, diameter_px: float,
                rule: str = "overlap60") -> MatchResult:
    """Match picks to ground truth on one micrograph (Cryo-EMMAE §4.1).

    ``pred``/``truth`` have columns x, y (px, top-left origin); boxes are squares of
    side ``diameter_px``. ``rule`` is one of ``RULES`` (see the module docstring).
    """
    _check_rule(rule)
    box_px = _check_diameter(diameter_px)
    return _match_xy(_xy(pred, "predictions"), _xy(truth, "ground truth"), box_px, rule)


# --------------------------------------------------------------------------- datasets
def _pool(results: list[MatchResult], rule: str, diameter_px: float) -> MatchResult:
    """Sum counts over micrographs, then P/R/F1; mean_iou over all TP pairs."""
    pair_iou = np.concatenate([r.pair_iou for r in results]) if results else np.zeros(0)
    return _summarise(rule, diameter_px, sum(r.n_pred for r in results), sum(r.n_gt for r in results),
                      sum(r.tp for r in results), sum(r.fp for r in results),
                      pair_iou, sum(r.gt_iou_sum for r in results))


def _diameter_for(diameter_px: float | Mapping[str, float], name: str) -> float:
    if isinstance(diameter_px, Mapping):
        if name not in diameter_px:
            raise CryolibError(f"no diameter given for micrograph {name!r}")
        return _check_diameter(diameter_px[name])
    return _check_diameter(diameter_px)


def _paired(pred_by_mic: Mapping[str, pd.DataFrame], truth_by_mic: Mapping[str, pd.DataFrame]) -> list[str]:
    """The micrographs to score: those with ground truth (a missing prediction = no picks)."""
    extra = sorted(set(pred_by_mic) - set(truth_by_mic))
    if extra:
        log.warning("%d micrograph(s) with picks but no ground truth are not scored: %s",
                    len(extra), ", ".join(extra[:5]))
    missing = sorted(set(truth_by_mic) - set(pred_by_mic))
    if missing:
        log.warning("%d micrograph(s) have no picks and count as all-FN: %s", len(missing), ", ".join(missing[:5]))
    return sorted(truth_by_mic)


_EMPTY_PICKS = pd.DataFrame({"x": [], "y": []}, dtype=np.float64)


def score_dataset(pred_by_mic: Mapping[str, pd.DataFrame], truth_by_mic: Mapping[str, pd.DataFrame],
                  diameter_px: float | Mapping[str, float], rule: str = "overlap60") -> dict:
    """Score picks over micrographs: pooled counts and P/R/F1/IoU plus per-micrograph rows.

    Micrographs are the keys of ``truth_by_mic``; a missing prediction entry counts
    as no picks, and predictions without ground truth are skipped (logged).
    ``diameter_px`` is one box side (px) or one per micrograph. Returns the pooled
    ``MatchResult.as_dict()`` fields plus ``n_micrographs`` and ``per_micrograph``
    (a DataFrame with a ``micrograph`` column and the same fields).
    """
    _check_rule(rule)
    names = _paired(pred_by_mic, truth_by_mic)
    results, rows = [], []
    for name in names:
        pred = pred_by_mic.get(name, _EMPTY_PICKS)
        res = match_picks(pred, truth_by_mic[name], _diameter_for(diameter_px, name), rule)
        results.append(res)
        rows.append({"micrograph": name, **res.as_dict()})
    d_summary = float(np.median(list(diameter_px.values()))) if isinstance(diameter_px, Mapping) else diameter_px
    pooled = _pool(results, rule, d_summary).as_dict()
    columns = ["micrograph", *(f for f in MatchResult.__dataclass_fields__ if f not in _ARRAY_FIELDS)]
    per_mic = pd.DataFrame(rows, columns=columns)
    return {**pooled, "n_micrographs": len(names), "per_micrograph": per_mic}
