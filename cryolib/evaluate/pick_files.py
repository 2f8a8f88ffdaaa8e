"""Score folders of picked coordinates against ground truth (Cryo-EMMAE §4.1), as ``cryolib evaluate-picks`` does.

Prediction files (.csv/.star/.box/.txt/.tsv) and ground-truth files (CryoPPP CSV) are paired
by micrograph stem; only stems present on both sides are scored (the rest are named in a
warning and in the report). The box side is ``diameter_px``, or per micrograph the median of
the truth's Diameter column. :func:`evaluate_pick_dirs` returns the JSON-ready report
(per-micrograph and pooled P/R/F1/IoU under the matching rule); :func:`format_report` prints it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from cryolib.core.errors import CryolibError
from cryolib.evaluate.metrics import RULES, score_dataset
from cryolib.evaluate.pr_curve import average_precision, best_f1_threshold, precision_recall_curve
from cryolib.io.micrographs import COORDINATE_SUFFIXES, micrograph_stem, read_coordinates

log = logging.getLogger(__name__)

__all__ = ["evaluate_pick_dirs", "format_report"]

_SHOW = 5  # names listed in messages
_TABLE_ROWS = 20  # per-micrograph rows printed


def _coordinate_files(folder: str | Path, flag: str) -> dict[str, Path]:
    """Coordinate files of one folder by micrograph stem; one file per stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CryolibError(f"{flag} {folder} is not a folder; pass the folder that holds the coordinate files")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in COORDINATE_SUFFIXES:
            continue
        stem = micrograph_stem(path)
        if stem in files:
            raise CryolibError(f"{flag} {folder} has two coordinate files for micrograph {stem!r} "
                               f"({files[stem].name}, {path.name}); keep one format per micrograph")
        files[stem] = path
    if not files:
        raise CryolibError(f"{flag} {folder} holds no coordinate files ({', '.join(COORDINATE_SUFFIXES)})")
    return files


def _names(items: Iterable[str]) -> str:
    items = sorted(items)
    more = f", … ({len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return ", ".join(items[:_SHOW]) + more


def _diameters(truth: dict[str, pd.DataFrame], diameter_px: float | None, truth_dir: Path) -> dict[str, float]:
    """Box side per micrograph: the given one, else the median truth Diameter (global median for empty files)."""
    if diameter_px is not None:
        return {stem: float(diameter_px) for stem in truth}
    medians = {stem: float(df["diameter"].median()) for stem, df in truth.items()}
    known = [d for d in medians.values() if math.isfinite(d)]
    if not known:
        raise CryolibError(f"the ground truth in {truth_dir} has no Diameter column; pass --diameter-px")
    fallback = float(np.median(known))
    missing = [s for s, d in medians.items() if not math.isfinite(d) and len(truth[s])]
    if missing:
        raise CryolibError(f"ground-truth files without diameters for {_names(missing)} in {truth_dir}; "
                           "add a Diameter column or pass --diameter-px")
    return {s: d if math.isfinite(d) else fallback for s, d in medians.items()}


def _apply_threshold(pred: dict[str, pd.DataFrame], threshold: float | None,
                     files: dict[str, Path]) -> dict[str, pd.DataFrame]:
    if threshold is None:
        return pred
    for stem, df in pred.items():
        if df["score"].isna().any():
            raise CryolibError(f"{files[stem]} has picks without a score; --threshold needs scores")
    return {stem: df[df["score"] >= threshold].reset_index(drop=True) for stem, df in pred.items()}


def _ranking_summary(pred: dict[str, pd.DataFrame], truth: dict[str, pd.DataFrame],
                     diameters: dict[str, float], rule: str) -> dict[str, Any] | None:
    """Average precision and the best-F1 threshold, when every pick has a score."""
    if not all(len(df) == 0 or df["score"].notna().all() for df in pred.values()):
        return None
    if sum(len(df) for df in pred.values()) == 0:
        return None
    curve = precision_recall_curve(pred, truth, diameters, rule, max_thresholds=100)
    best = best_f1_threshold(curve)
    return {"average_precision": average_precision(curve),
            "best_f1": {k: best[k] for k in ("threshold", "precision", "recall", "f1", "n_picks")}}


def evaluate_pick_dirs(pred_dir: str | Path, truth_dir: str | Path, diameter_px: float | None = None,
                       rule: str = "overlap60", threshold: float | None = None) -> dict[str, Any]:
    """Pair coordinate files by stem and score them (see the module docstring); returns the JSON-ready report.

    ``per_micrograph`` is a list of row dicts. When every pick has a score, the report
    adds ``ranking`` (AP and the best-F1 threshold of a PR sweep over the unthresholded picks).
    """
    if rule not in RULES:
        raise CryolibError(f"unknown matching rule {rule!r}; choose one of {', '.join(RULES)}")
    if diameter_px is not None and not (math.isfinite(diameter_px) and diameter_px > 0):
        raise CryolibError(f"--diameter-px {diameter_px} must be a positive number of pixels")
    pred_files, truth_files = _coordinate_files(pred_dir, "--pred"), _coordinate_files(truth_dir, "--truth")
    stems = sorted(set(pred_files) & set(truth_files))
    if not stems:
        raise CryolibError(f"no micrograph stems in common between --pred {pred_dir} ({_names(pred_files)}) "
                           f"and --truth {truth_dir} ({_names(truth_files)}); file names must match")
    only_pred, only_truth = sorted(set(pred_files) - set(stems)), sorted(set(truth_files) - set(stems))
    if only_pred or only_truth:
        log.warning("scoring %d micrograph(s); unpaired: %d prediction file(s) [%s], %d truth file(s) [%s]",
                    len(stems), len(only_pred), _names(only_pred), len(only_truth), _names(only_truth))
    truth = {s: read_coordinates(truth_files[s]) for s in stems}
    pred_all = {s: read_coordinates(pred_files[s]) for s in stems}
    diameters = _diameters(truth, diameter_px, Path(truth_dir))
    pred = _apply_threshold(pred_all, threshold, pred_files)
    scores = score_dataset(pred, truth, diameters, rule)
    per_mic = scores.pop("per_micrograph")
    return {
        "rule": rule, "threshold": threshold, "pred_dir": str(pred_dir), "truth_dir": str(truth_dir),
        "diameter_source": "--diameter-px" if diameter_px is not None else "truth Diameter column",
        "pooled": scores, "per_micrograph": per_mic.to_dict(orient="records"),
        "ranking": _ranking_summary(pred_all, truth, diameters, rule),
        "unpaired_pred": only_pred, "unpaired_truth": only_truth,
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as text: a header (rule, threshold, PR sweep) and the per-micrograph table with the pooled row."""
    cols = ["micrograph", "n_pred", "n_gt", "tp", "precision", "recall", "f1", "mean_iou"]
    rows = pd.DataFrame(report["per_micrograph"], columns=cols)
    shown = rows.head(_TABLE_ROWS)
    pooled = {"micrograph": "POOLED", **{c: report["pooled"][c] for c in cols[1:]}}
    table = pd.concat([shown, pd.DataFrame([pooled])], ignore_index=True)
    text = table.to_string(index=False, float_format=lambda v: f"{v:.3f}")
    if len(rows) > _TABLE_ROWS:
        text += f"\n({len(rows) - _TABLE_ROWS} more micrographs in the JSON)"
    header = f"rule: {report['rule']}  threshold: {report['threshold']}  diameter: {report['diameter_source']}"
    ranking = report.get("ranking")
    if ranking:
        best = ranking["best_f1"]
        header += (f"\nPR sweep over all picks: average precision {ranking['average_precision']:.3f}, "
                   f"best F1 {best['f1']:.3f} at score >= {best['threshold']:.4g}")
    return header + "\n" + text
