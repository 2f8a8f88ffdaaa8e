"""The linear accept/reject head (DRACO 2024 §5.3 "we freeze the encoder backbone and train an extra
linear classification head") and the curation metrics of Table 4.

:class:`LinearProbe` is an L2-regularised logistic regression (scikit-learn, lbfgs) on features
standardised with the training set's mean and std. Its scores are computed here from the stored
weights (float64), so a saved and reloaded probe gives identical scores.

Labels. With accept/reject labels (1/0) the head is the paper's 2-class head. With quality-class
labels ("good" plus one name per defect, as the simulator gives them) it is one linear layer to
K class logits, a softmax, and P(accept) = P("good"). The paper's annotations are binary; ours
name the defect, and the K-class head uses it for a reason a binary head cannot get around: the
good class sits *between* defects on the same feature. Severe drift removes high-frequency power
and a carbon film adds it (``tables/table4_per_class``), so no single hyperplane puts "good" on
one side of both, while a softmax over classes gives "good" a region bounded on each side. Both
heads weigh the data the same way (:func:`class_balance_weights`): half the weight on accepted
micrographs, half shared equally by the reject classes present, which for binary labels is
scikit-learn's ``class_weight="balanced"``.

Metrics (:func:`classification_metrics`): the positive class is **accept** (a good micrograph).
The paper does not say which class it counts as positive; with accept positive, precision is the
share of accepted micrographs that are good and recall the share of good micrographs accepted.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from cryolib.core.errors import CryolibError

__all__ = ["LinearProbe", "classification_metrics", "per_class_table", "class_balance_weights", "quality_labels",
           "QUALITY_CLASSES", "METRICS", "ACCEPT", "REJECT"]

#: The simulator's quality classes: good plus each defect (cryolib.simulate.micrograph.DEFECTS).
QUALITY_CLASSES = ("good", "empty", "thick_ice", "crystalline_ice", "contamination", "severe_drift", "carbon_only")
METRICS = ("accuracy", "precision", "recall", "f1")
ACCEPT = "good"  # the accepted class
REJECT = "reject"  # the one reject class of binary (1/0) labels


def _features(x: np.ndarray, n_features: int | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise CryolibError(f"features must be a non-empty 2-D array [N, D], got shape {x.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise CryolibError(f"features have {x.shape[1]} dimensions; this probe was trained on {n_features}")
    if not np.isfinite(x).all():
        raise CryolibError("features contain NaN or inf")
    return x


def quality_labels(labels: Sequence[int] | Sequence[str] | np.ndarray) -> np.ndarray:
    """Labels as class names -> [N] str: 1/True -> "good", 0/False -> "reject"; names kept, "" -> "good"."""
    arr = np.asarray(labels).ravel()
    if arr.dtype.kind in "biuf":
        if not np.isin(arr, (0, 1)).all():
            raise CryolibError("numeric curation labels must be 1 (accept) or 0 (reject)")
        return np.where(arr.astype(int) == 1, ACCEPT, REJECT).astype(object)
    if arr.dtype.kind not in "UO" or not all(isinstance(v, str) for v in arr):
        raise CryolibError("curation labels must be 1/0 (accept/reject) or quality-class names (\"good\", a defect)")
    return np.array([v if v else ACCEPT for v in arr], dtype=object)


def class_balance_weights(labels: Sequence[int] | Sequence[str] | np.ndarray) -> np.ndarray:
    """Per-sample weights [N], mean 1: half the total on "good", half shared equally by the reject classes.

    For binary labels this is scikit-learn's ``class_weight="balanced"`` (N / (2 n_class)).
    """
    names = quality_labels(labels)
    rejects = sorted(set(names) - {ACCEPT})
    if ACCEPT not in set(names) or not rejects:
        raise CryolibError("the curation head needs both accepted (good) and rejected micrographs to train on")
    share = {ACCEPT: 0.5, **{c: 0.5 / len(rejects) for c in rejects}}
    counts = {c: int((names == c).sum()) for c in share}
    return np.array([share[c] * len(names) / counts[c] for c in names])


class LinearProbe:
    """P(class | x) = softmax(W (x − μ)/s + b); P(accept) = P("good") (module docstring).

    ``c``: inverse L2 strength (scikit-learn's C). ``fit(x, labels)`` with labels 1/0 (accept/reject,
    the 2-class head) or quality-class names (the K-class head). A 2-class head is stored as K = 2
    with a zero row for its first class, so its P(accept) is the plain logistic regression's σ(±(w · z + b)).
    """

    def __init__(self, c: float = 1.0, max_iter: int = 5000):
        if not (np.isfinite(c) and c > 0):
            raise CryolibError(f"c (inverse regularisation) must be a positive number, got {c}")
        self.c, self.max_iter = float(c), int(max_iter)
        self.mean: np.ndarray | None = None  # [D]
        self.std: np.ndarray | None = None  # [D]
        self.weight: np.ndarray | None = None  # [K, D]
        self.bias: np.ndarray | None = None  # [K]
        self.classes: tuple[str, ...] = ()

    @property
    def fitted(self) -> bool:
        return self.weight is not None

    def fit(self, x: np.ndarray, labels: Sequence[int] | Sequence[str] | np.ndarray, seed: int = 0) -> "LinearProbe":
        """Standardise ``x`` [N, D] with its own mean/std and fit the logistic regression; returns self."""
        from sklearn.linear_model import LogisticRegression

        x = _features(x)
        names = quality_labels(labels)
        if len(names) != len(x):
            raise CryolibError(f"{len(x)} feature rows but {len(names)} labels")
        weights = class_balance_weights(names)
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        clf = LogisticRegression(C=self.c, max_iter=self.max_iter, random_state=seed)
        clf.fit((x - self.mean) / self.std, names.astype(str), sample_weight=weights)
        self.classes = tuple(str(c) for c in clf.classes_)
        coef, icpt = clf.coef_.astype(np.float64), clf.intercept_.astype(np.float64)
        if len(self.classes) == 2:  # scikit-learn's binary form: one row, for classes_[1]
            coef, icpt = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], icpt])
        self.weight, self.bias = coef, icpt
        return self

    def class_probabilities(self, x: np.ndarray) -> np.ndarray:
        """P(class) of each row of ``x`` [N, D] -> [N, K], columns in :attr:`classes` order."""
        if not self.fitted:
            raise CryolibError("the probe is not trained; call fit first or load a curation head")
        x = _features(x, self.weight.shape[1])
        logits = ((x - self.mean) / self.std) @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """P(accept) of each row of ``x`` [N, D] -> [N] in [0, 1]."""
        return self.class_probabilities(x)[:, self.classes.index(ACCEPT)]

    def predict(self, x: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Accept (True) where P(accept) >= ``threshold``."""
        return self.scores(x) >= threshold

    def state_dict(self) -> dict:
        """Plain arrays, numbers and class names (saved by :func:`cryolib.curate.head.save_curation_head`)."""
        if not self.fitted:
            raise CryolibError("cannot save an untrained probe")
        return {"c": self.c, "mean": self.mean.copy(), "std": self.std.copy(), "weight": self.weight.copy(),
                "bias": self.bias.copy(), "classes": list(self.classes)}

    @classmethod
    def from_state(cls, state: dict) -> "LinearProbe":
        """Rebuild a trained probe from :meth:`state_dict` (also the older 2-class state, whose
        ``weight`` is one row [D], ``bias`` a number and which names no classes)."""
        try:
            probe = cls(c=float(state["c"]))
            probe.mean, probe.std = (np.asarray(state[k], dtype=np.float64).ravel() for k in ("mean", "std"))
            weight = np.asarray(state["weight"], dtype=np.float64)
            bias = np.asarray(state["bias"], dtype=np.float64).ravel()
            classes = tuple(str(c) for c in state.get("classes", (REJECT, ACCEPT)))
        except (KeyError, TypeError, ValueError) as err:
            raise CryolibError(f"not a linear-probe state ({type(err).__name__}: {err})") from err
        if weight.ndim == 1:  # the older 2-class form
            weight, bias = np.vstack([np.zeros_like(weight), weight]), np.concatenate([[0.0], bias])
        if weight.ndim != 2 or not (len(probe.mean) == len(probe.std) == weight.shape[1] > 0):
            raise CryolibError("linear-probe state: mean, std and weight differ in length")
        if not (len(classes) == weight.shape[0] == len(bias) >= 2) or ACCEPT not in classes:
            raise CryolibError(f"linear-probe state: {len(classes)} class names for {weight.shape[0]} weight rows and "
                               f"{len(bias)} biases, or no {ACCEPT!r} class")
        probe.weight, probe.bias, probe.classes = weight, bias, classes
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
