"""Does the shipped detector, adapted to ONE annotated micrograph, pick micrographs it was never tuned for
better than the other pickers? (issue 14's generalisation and real-data checks.)

On each dataset (the simulated ``generalisation`` analogs, made with settings no fine-tuning saw, and real
CryoPPP folders when present): the reference micrograph is the good one with the most labelled particles
(:func:`cryolib.studies.draco_picking.reference_and_eval`); it is never scored. Methods and operating points:

* ``detector``: ``cryolib pick --method detector --reference-coords`` exactly: the shipped general detector
  adapted to the reference, threshold calibrated on it (:class:`cryolib.pick.detector.DetectorPicker`).
* ``Topaz (trained on the reference)``: Topaz from scratch on the same micrograph and labels
  (:func:`cryolib.pick.topaz.train_on_reference`), at its best global threshold on the scored micrographs,
  the fair and optimistic choice for Topaz.
* ``Topaz (pretrained)``: its general model, scored the same way (best global threshold).
* ``Blob (LoG)``: threshold calibrated on the reference.
* ``Cryo-EMMAE``: the shipped picker, particle cluster named from the reference.

Scores are overlap60 precision / recall / F1 against the dataset's labels. CryoPPP's labels are incomplete,
so on real data precision is a lower bound.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Mapping

import pandas as pd

from cryolib.evaluate.scoring import best_threshold_scores, score_picks
from cryolib.io.datasets import Dataset
from cryolib.pick import pick_micrographs, topaz
from cryolib.studies.draco_picking import reference_and_eval

log = logging.getLogger(__name__)

DETECTOR, TOPAZ_TRAINED, TOPAZ, BLOB, EMMAE = ("Detector (adapted)", "Topaz (trained on the reference)",
                                               "Topaz (pretrained)", "Blob (LoG)", "Cryo-EMMAE")
METHODS = (DETECTOR, TOPAZ_TRAINED, TOPAZ, BLOB, EMMAE)
#: How each method's operating point is set (a column of the table).
OPERATING_POINT = {DETECTOR: "calibrated on the reference", TOPAZ_TRAINED: "best global threshold (oracle)",
                   TOPAZ: "best global threshold (oracle)", BLOB: "calibrated on the reference",
                   EMMAE: "particle cluster named on the reference"}


def _scores(ds: Dataset, picks: Mapping[str, pd.DataFrame], paths: list[Path], oracle: bool) -> dict:
    if oracle:
        best = best_threshold_scores(ds, picks, paths)
        return {"precision": best["precision"], "recall": best["recall"], "f1": best["f1"],
                "threshold": best["threshold"]}
    s = score_picks(ds, picks, paths)
    return {"precision": s["precision"], "recall": s["recall"], "f1": s["f1"], "threshold": math.nan}


def check_dataset(ds: Dataset, runs: Path, seed: int = 0, topaz_schedule: tuple[int, int, int] = (4, 50, 64),
                  methods: tuple[str, ...] = METHODS) -> list[dict]:
    """Every method of :data:`METHODS` on one dataset -> table rows (seconds include fitting)."""
    ref, coords, paths = reference_and_eval(ds)
    d, reference = float(ds.diameter_px), (ref, coords)
    rows = []
    for method in methods:
        t0 = time.perf_counter()
        if method == TOPAZ_TRAINED:
            epochs, epoch_size, minibatch = topaz_schedule
            model = topaz.train_on_reference(ref, coords, d, runs / f"topaz_{ds.name}", seed=seed, epochs=epochs,
                                             epoch_size=epoch_size, minibatch_size=minibatch)
            picks, oracle = topaz.pick_with_model(paths, model, d, seed=seed), True
        elif method == TOPAZ:
            picks, oracle = pick_micrographs("topaz", paths, d, threshold=-math.inf, seed=seed, progress=False), True
        else:
            name = {DETECTOR: "detector", BLOB: "blob", EMMAE: "cryoemmae"}[method]
            picks = pick_micrographs(name, paths, d, reference=reference, seed=seed, progress=False)
            oracle = False
        rows.append({"dataset": ds.name, "method": method, "operating_point": OPERATING_POINT[method],
                     **_scores(ds, picks, paths, oracle), "n_scored": len(paths), "n_reference_labels": len(coords),
                     "seconds": time.perf_counter() - t0})
        log.info("%s %s: F1 %.3f", ds.name, method, rows[-1]["f1"])
    return rows


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Methods x datasets of F1, with the mean over datasets, best first."""
    wide = rows.pivot_table(index="method", columns="dataset", values="f1", aggfunc="first")
    wide["mean"] = wide.mean(axis=1)
    return wide.sort_values("mean", ascending=False)


def detector_leads(rows: pd.DataFrame) -> dict:
    """Whether the adapted detector has the best mean F1, and its margin over the runner-up (F1)."""
    means = rows.groupby("method")["f1"].mean().sort_values(ascending=False)
    others = means.drop(DETECTOR, errors="ignore")
    margin = float(means.get(DETECTOR, math.nan) - others.max()) if len(others) else math.nan
    return {"leader": str(means.index[0]), "detector_mean_f1": float(means.get(DETECTOR, math.nan)),
            "runner_up": str(others.index[0]) if len(others) else None, "margin_f1": margin,
            "detector_leads": bool(means.index[0] == DETECTOR)}
