"""The linear accept/reject head (DRACO 2024 §5.3 "we freeze the encoder backbone and train an extra
linear classification head") and the curation metrics of Table 4.

:class:`LinearProbe` is an L2-regularised logistic regression (scikit-learn, lbfgs, class-balanced
weights) on features standardised with the training set's mean and std. Its scores are computed
here from the stored weights (float64), so a saved and reloaded probe gives identical scores.

Metrics (:func:`classification_metrics`): the positive class is **accept** (a good micrograph).
The paper does not say which class it counts as positive; with accept positive, precision is the
share of accepted micrographs that are good and recall the share of good micrographs accepted.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from cryolib.core.errors import CryolibError

__all__ = ["LinearProbe", "classification_metrics", "per_class_table", "QUALITY_CLASSES", "METRICS"]

#: The simulator's quality classes: good plus each defect (cryolib.simulate.micrograph.DEFECTS).
QUALITY_CLASSES = ("good", "empty", "thick_ice", "crystalline_ice", "contamination", "severe_drift", "carbon_only")
METRICS = ("accuracy", "precision", "recall", "f1")


def _features(x: np.ndarray, n_features: int | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise CryolibError(f"features must be a non-empty 2-D array [N, D], got shape {x.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise CryolibError(f"features have {x.shape[1]} dimensions; this probe was trained on {n_features}")
    if not np.isfinite(x).all():
        raise CryolibError("features contain NaN or inf")
    return x


class LinearProbe:
    """P(accept | x) = σ(w · (x − μ)/s + b): logistic regression on standardised features.

    ``c``: inverse L2 strength (scikit-learn's C). ``fit(x, accept)`` with ``accept`` 1 = good.
    """

    def __init__(self, c: float = 1.0, max_iter: int = 5000):
        if not (np.isfinite(c) and c > 0):
            raise CryolibError(f"c (inverse regularisation) must be a positive number, got {c}")
        self.c, self.max_iter = float(c), int(max_iter)
        self.mean: np.ndarray | None = None  # [D]
        self.std: np.ndarray | None = None  # [D]
        self.weight: np.ndarray | None = None  # [D]
        self.bias: float = 0.0

    @property
    def fitted(self) -> bool:
        return self.weight is not None

    def fit(self, x: np.ndarray, accept: Sequence[int] | np.ndarray, seed: int = 0) -> "LinearProbe":
        """Standardise ``x`` [N, D] with its own mean/std and fit the logistic regression; returns self."""
        from sklearn.linear_model import LogisticRegression

        x = _features(x)
        y = np.asarray(accept).astype(int).ravel()
        if len(y) != len(x):
            raise CryolibError(f"{len(x)} feature rows but {len(y)} labels")
        if set(np.unique(y)) != {0, 1}:
            raise CryolibError("the probe needs both accepted (1) and rejected (0) micrographs to train on")
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        clf = LogisticRegression(C=self.c, class_weight="balanced", max_iter=self.max_iter, random_state=seed)
        clf.fit((x - self.mean) / self.std, y)
        self.weight, self.bias = clf.coef_[0].astype(np.float64), float(clf.intercept_[0])
        return self

    def scores(self, x: np.ndarray) -> np.ndarray:
        """P(accept) of each row of ``x`` [N, D] -> [N] in [0, 1]."""
        if not self.fitted:
            raise CryolibError("the probe is not trained; call fit first or load a curation head")
        x = _features(x, len(self.weight))
        logit = ((x - self.mean) / self.std) @ self.weight + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(logit, -500, 500)))

    def predict(self, x: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Accept (True) where P(accept) >= ``threshold``."""
        return self.scores(x) >= threshold

    def state_dict(self) -> dict:
        """Plain arrays and numbers (saved by :func:`cryolib.curate.head.save_curation_head`)."""
        if not self.fitted:
            raise CryolibError("cannot save an untrained probe")
        return {"c": self.c, "mean": self.mean.copy(), "std": self.std.copy(), "weight": self.weight.copy(),
                "bias": self.bias}

    @classmethod
    def from_state(cls, state: dict) -> "LinearProbe":
        """Rebuild a trained probe from :meth:`state_dict`."""
        try:
            probe = cls(c=float(state["c"]))
            probe.mean, probe.std, probe.weight = (np.asarray(state[k], dtype=np.float64).ravel()
                                                   for k in ("mean", "std", "weight"))
            probe.bias = float(state["bias"])
        except (KeyError, TypeError, ValueError) as err:
            raise CryolibError(f"not a linear-probe state ({type(err).__name__}: {err})") from err
        if not (len(probe.mean) == len(probe.std) == len(probe.weight) > 0):
            raise CryolibError("linear-probe state: mean, std and weight differ in length")
        return probe


def classification_metrics(accept_true: Sequence[bool], accept_pred: Sequence[bool]) -> dict[str, float]:
    """Accuracy, precision, recall and F1 with accept (good) as the positive class (module docstring).

    Precision is 0 when nothing is accepted; F1 is 0 when precision + recall is 0.
    """
    t = np.asarray(accept_true, dtype=bool).ravel()
    p = np.asarray(accept_pred, dtype=bool).ravel()
    if len(t) != len(p) or len(t) == 0:
        raise CryolibError(f"need the same positive number of true and predicted labels, got {len(t)} and {len(p)}")
    tp, fp, fn = int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": float((t == p).mean()), "precision": precision, "recall": recall, "f1": f1}


def per_class_table(classes: Sequence[str], accept_pred: Sequence[bool]) -> pd.DataFrame:
    """Per quality class (good, then each defect): n, accepted, rejected and ``correct`` (the fraction
    accepted for good, the fraction rejected for a defect). ``classes``: "good" or a defect name per
    micrograph (an empty defect string counts as good)."""
    cls = np.array(["good" if not c else str(c) for c in classes], dtype=object)
    acc = np.asarray(accept_pred, dtype=bool).ravel()
    if len(cls) != len(acc):
        raise CryolibError(f"{len(cls)} class labels but {len(acc)} predictions")
    order = [c for c in QUALITY_CLASSES if c in set(cls)] + sorted(set(cls) - set(QUALITY_CLASSES))
    rows = []
    for c in order:
        sel = cls == c
        n, n_acc = int(sel.sum()), int(acc[sel].sum())
        rows.append({"class": c, "n": n, "accepted": n_acc, "rejected": n - n_acc,
                     "correct": (n_acc if c == "good" else n - n_acc) / n})
    return pd.DataFrame(rows)
