"""Notebook 07's Table 1 resolution column: the map each picker's picks give (DRACO §5.1, Table 1).

For each test analog and method, the kept picks of :func:`cryolib.studies.draco_picking.table1` (above the
method's calibrated threshold, on the scored micrographs) go through
:func:`cryolib.reconstruct.single_particle.reconstruct_from_picks`: true positives take their particle's
pose and centre, false positives a random pose at their own position, so precision shows in the map;
recall shows through the particle count, up to the cap.

**Cap.** One cap per analog, the same for every method: ``max_particles`` when given, else the smallest
number of picks any method kept on that analog, but at least :data:`MIN_PARTICLES`. The highest-scoring
picks are kept (ties seeded). A method with fewer picks than the cap uses all of them (its
``n_particles`` says so); with fewer than 2 it gets no map (resolution NaN). crYOLO and CryoTransformer
do not run here: their rows carry the paper's number only (``source`` "reported (paper)").
"""

from __future__ import annotations

import logging
import math
from typing import Mapping

import pandas as pd

from cryolib.reconstruct.single_particle import reconstruct_from_picks
from cryolib.studies import draco_picking as dp

__all__ = ["MIN_PARTICLES", "PAPER_TABLE1_RESOLUTION", "resolution_cap", "table1_resolution", "resolution_wide",
           "resolution_claims", "resolution_metrics"]

log = logging.getLogger(__name__)

MIN_PARTICLES = 50  # the default cap never goes below this (a method with fewer picks uses what it has)
#: DRACO Table 1, resolution column (Å) per test analog; "Topaz" is its pretrained general model,
#: "Detectron" detectron2 from scratch.
PAPER_TABLE1_RESOLUTION: dict[str, dict[str, float]] = {
    "sim-10081": {dp.TOPAZ: 4.20, "crYOLO": 4.15, "CryoTransformer": 4.13, dp.SCRATCH: 4.50, dp.MAE: 4.32,
                  dp.DRACO_B: 4.03, dp.DRACO_L: 3.90},
    "sim-10407": {dp.TOPAZ: 2.80, "crYOLO": 2.78, "CryoTransformer": 2.79, dp.SCRATCH: 2.85, dp.MAE: 2.84,
                  dp.DRACO_B: 2.61, dp.DRACO_L: 2.51},
    "sim-10350": {dp.TOPAZ: 3.67, "crYOLO": 4.62, "CryoTransformer": 3.67, dp.SCRATCH: 3.86, dp.MAE: 4.03,
                  dp.DRACO_B: 3.55, dp.DRACO_L: 3.53},
}


def _count(picks: Mapping[str, pd.DataFrame]) -> int:
    return int(sum(len(df) for df in picks.values()))


def resolution_cap(by_method: Mapping[str, Mapping[str, pd.DataFrame]], max_particles: int | None = None) -> int:
    """The analog's particle cap (module docstring): ``max_particles``, else max(MIN_PARTICLES, fewest picks)."""
    if max_particles is not None:
        return int(max_particles)
    counts = [_count(p) for p in by_method.values()]
    return max(MIN_PARTICLES, min(counts) if counts else 0)


def _row(name: str, method: str, rec, cap: int, n_picks: int) -> dict:
    return {"dataset": name, "method": method, "source": "ours",
            "resolution_A": rec.resolution_A if rec else math.nan,
            "paper_resolution_A": PAPER_TABLE1_RESOLUTION.get(name, {}).get(method, math.nan),
            "n_particles": rec.n_particles if rec else n_picks,
            "n_true_positive": rec.n_true_positive if rec else 0,
            "n_false_positive": rec.n_false_positive if rec else n_picks,
            "max_particles": cap, "nyquist_A": 2.0 * rec.pixel_size_A if rec else math.nan}


def table1_resolution(study: dp.PickingStudy, picks: Mapping[str, Mapping[str, Mapping[str, pd.DataFrame]]],
                      max_particles: int | None = None) -> pd.DataFrame:
    """One row per (analog, method): resolution_A, paper_resolution_A, n_particles, n_true_positive,
    n_false_positive, max_particles (the cap), nyquist_A, source; ``picks`` is ``table1``'s second value."""
    rows = []
    for name, by_method in picks.items():
        ds = study.datasets[name]
        cap = resolution_cap(by_method, max_particles)
        for method, method_picks in by_method.items():
            n = _count(method_picks)
            rec = None
            if min(n, cap) >= 2:
                rec = reconstruct_from_picks(ds, method_picks, cap, study.seed)
            else:
                log.warning("%s %s: %d pick(s), no map", name, method, n)
            rows.append(_row(name, method, rec, cap, n))
        for method in dp.REPORTED:
            if method in PAPER_TABLE1_RESOLUTION.get(name, {}):
                rows.append({"dataset": name, "method": method, "source": "reported (paper)",
                             "paper_resolution_A": PAPER_TABLE1_RESOLUTION[name][method]})
    cols = ["dataset", "method", "source", "resolution_A", "paper_resolution_A", "n_particles", "n_true_positive",
            "n_false_positive", "max_particles", "nyquist_A"]
    return pd.DataFrame(rows).reindex(columns=cols)


def resolution_wide(table: pd.DataFrame, value: str = "resolution_A") -> pd.DataFrame:
    """Methods x analogs of ``value`` (Å) with the mean over analogs, best (lowest) first."""
    wide = table.pivot_table(index="method", columns="dataset", values=value, aggfunc="first")
    wide["mean"] = wide.mean(axis=1)
    return wide.sort_values("mean")


def _better(wide: pd.DataFrame, ours: tuple[str, ...], theirs: tuple[str, ...]) -> tuple[int, int]:
    """(analogs where the best of ``ours`` is strictly better (lower Å) than the best of ``theirs``, analogs)."""
    ours = tuple(m for m in ours if m in wide.index)
    theirs = tuple(m for m in theirs if m in wide.index)
    if not ours or not theirs:
        return 0, 0
    cols = [c for c in wide.columns if c != "mean" and wide.loc[list(ours + theirs), c].notna().all()]
    return int(sum(wide.loc[list(ours), c].min() < wide.loc[list(theirs), c].min() for c in cols)), len(cols)


def resolution_claims(table: pd.DataFrame) -> pd.DataFrame:
    """Table 1's resolution claims on our numbers: claim, paper, ours, holds (yes/no)."""
    ours = resolution_wide(table[table["source"] == "ours"])
    paper = pd.DataFrame(PAPER_TABLE1_RESOLUTION)  # methods x analogs
    draco, others = (dp.DRACO_B, dp.DRACO_L), (dp.TOPAZ, dp.SCRATCH, dp.MAE)
    rows = []
    for claim, mine, theirs in [
        ("DRACO's picks give the best map (vs Topaz, Detectron from scratch, MAE)", draco, others),
        ("DRACO-B's picks give a better map than Topaz's", (dp.DRACO_B,), (dp.TOPAZ,)),
        ("DRACO-B's picks give a better map than the MAE detector's", (dp.DRACO_B,), (dp.MAE,)),
    ]:
        wins, n = _better(ours, mine, theirs)
        p_wins, p_n = _better(paper, mine, theirs)
        rows.append((claim, f"{p_wins}/{p_n} sets", f"{wins}/{n} analogs", "yes" if n and wins > n / 2 else "no"))
    return pd.DataFrame(rows, columns=["claim", "paper", "ours", "holds"])


def resolution_metrics(table: pd.DataFrame, claims: pd.DataFrame) -> dict:
    """Named numbers for ``metrics.json``: resolution (Å) per analog and method, the cap per analog, claims."""
    ours = table[table["source"] == "ours"]
    by = {name: dict(zip(g["method"], g["resolution_A"])) for name, g in ours.groupby("dataset")}
    return {"table1_resolution_A": by,
            "table1_resolution_cap": ours.groupby("dataset")["max_particles"].first().astype(int).to_dict(),
            "table1_resolution_claims": dict(zip(claims["claim"], claims["holds"] == "yes"))}
