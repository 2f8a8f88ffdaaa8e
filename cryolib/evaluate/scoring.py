"""Scoring pickers on dataset analogs: which micrographs count, the truth, and one table row.

Rules (every table names its rule): the Cryo-EMMAE paper's one-to-one ``overlap60`` by default
(:mod:`cryolib.evaluate.metrics`). Only micrographs of good quality are scored — the defect micrographs
(empty, carbon only, …) exist for curation and have no particles to find.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from cryolib.io.datasets import Dataset
from cryolib.io.micrographs import read_micrograph
from cryolib.evaluate.metrics import score_dataset
from cryolib.evaluate.pr_curve import best_f1_threshold, precision_recall_curve


def good_micrographs(ds: Dataset, paths: list[Path]) -> list[Path]:
    """``paths`` without the micrographs labelled bad in the dataset's metadata."""
    if "quality" not in ds.metadata:
        return list(paths)
    good = set(ds.metadata.loc[ds.metadata["quality"] == "good", "micrograph"])
    return [p for p in paths if p.stem in good]


def evaluation_micrographs(ds: Dataset, is_training_set: bool, max_n: int = 0) -> list[Path]:
    """Micrographs scored for one analog: the test split of a training analog (Cryo-EMMAE §4.1),
    every micrograph of an evaluation-only analog; good quality only; at most ``max_n`` (0 = all).

    A tiny training analog whose test split holds no good micrograph (the smoke profile) falls back
    to its validation split, so it is never scored on the micrographs it was trained on.
    """
    if is_training_set:
        paths = good_micrographs(ds, ds.split("test")) or good_micrographs(ds, ds.split("val"))
    else:
        paths = good_micrographs(ds, list(ds.micrographs))
    return paths[:max_n] if max_n else paths


def truth_by_stem(ds: Dataset, paths: list[Path]) -> dict[str, pd.DataFrame]:
    """Ground-truth coordinates of ``paths``, keyed by micrograph stem."""
    return {p.stem: ds.coordinates(p.stem) for p in paths}


def load_images(paths: list[Path]) -> dict[str, np.ndarray]:
    """Micrographs keyed by stem (float32 arrays)."""
    return {p.stem: read_micrograph(p)[0] for p in paths}


def score_picks(ds: Dataset, picks: Mapping[str, pd.DataFrame], paths: list[Path], rule: str = "overlap60",
                threshold: float | None = None) -> dict:
    """Pooled IoU, precision, recall and F1 of ``picks`` on ``paths`` (picks with score ≥ threshold)."""
    truth = truth_by_stem(ds, paths)
    pred = {s: _above(picks.get(s), threshold) for s in truth}
    res = score_dataset(pred, truth, ds.diameter_px, rule)
    return {k: res[k] for k in ("precision", "recall", "f1", "mean_iou", "tp", "fp", "fn", "n_micrographs", "rule")}


def best_threshold_scores(ds: Dataset, picks: Mapping[str, pd.DataFrame], paths: list[Path], rule: str = "overlap60") -> dict:
    """Scores at the threshold with the best F1 over a sweep (an oracle operating point, for reference)."""
    truth = truth_by_stem(ds, paths)
    pred = {s: _above(picks.get(s), None) for s in truth}
    curve = precision_recall_curve(pred, truth, ds.diameter_px, rule)
    return best_f1_threshold(curve)


def _above(df: pd.DataFrame | None, threshold: float | None) -> pd.DataFrame:
    if df is None:
        return pd.DataFrame({"x": [], "y": [], "diameter": [], "score": []})
    if threshold is None:
        return df
    return df[df["score"] >= threshold].reset_index(drop=True)
