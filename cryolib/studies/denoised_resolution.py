"""Notebook 05's Table 3: the resolution of maps from denoised particles, poses fixed (DRACO §5.2, Table 3).

Protocol. For each Table 2 analog (role ``draco_denoising``), the micrographs notebook 05 denoised for
Table 2 (:attr:`~cryolib.studies.draco_denoising.DenoisingStudy.denoised`: up to 5 good micrographs, every
method through the denoiser registry) give one map per method: the ground-truth picks of those micrographs,
the same particle cap and the same seed for every method, so the particles, their poses and their half-map
split are identical and only the pixels differ (:func:`cryolib.reconstruct.single_particle.reconstruct_from_picks`
with ``images=``). Methods: Raw (not in the paper), Low-pass, Topaz-Denoise, MAE, DRACO-B and DRACO-L.

What to expect. With the poses fixed, the FSC is a ratio per Fourier shell, so a linear filter applied to
every particle alike (the low-pass) cancels out of it wherever it does not reach zero: low-pass and raw
should score alike. A denoiser can only raise the FSC by adding signal that is consistent between the
halves, which a nonlinear, learned model can do (or fake: a prior it imposes on every particle correlates
too). The paper's numbers come from real data refined in cryoSPARC at full pixel size (2-4 Å); ours are
bounded by Nyquist at the binned pixel sizes (6-12 Å) and by a few hundred particles.
"""

from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cryolib.core.errors import CryolibError
from cryolib.io.micrographs import read_micrograph
from cryolib.reconstruct.poses import ground_truth_picks
from cryolib.reconstruct.single_particle import reconstruct_from_picks
from cryolib.studies import draco_denoising as dn

__all__ = ["TABLE3_METHODS", "PAPER_TABLE3", "denoised_images", "table3", "table3_pivot", "table3_claims",
           "table3_metrics"]

log = logging.getLogger(__name__)

TABLE3_METHODS = (dn.RAW, dn.LOWPASS, dn.TOPAZ, dn.MAE, dn.DRACO_B, dn.DRACO_L)
#: DRACO Table 3 (Å): Human Apoferritin, HA Trimer, Phage MS2, RNA polymerase (no Raw, no DRACO-L row).
PAPER_TABLE3: dict[str, dict[str, float]] = {
    "sim-10421": {dn.LOWPASS: 2.63, dn.TOPAZ: 2.34, dn.MAE: 2.77, dn.DRACO_B: 2.05},
    "sim-10096": {dn.LOWPASS: 2.06, dn.TOPAZ: 3.06, dn.MAE: 2.15, dn.DRACO_B: 2.10},
    "sim-10075": {dn.LOWPASS: 3.46, dn.TOPAZ: 2.52, dn.MAE: 3.78, dn.DRACO_B: 2.51},
    "sim-11521": {dn.LOWPASS: 2.75, dn.TOPAZ: 2.93, dn.MAE: 2.81, dn.DRACO_B: 2.56},
}


def denoised_images(study: dn.DenoisingStudy, name: str, methods: Sequence[str] = TABLE3_METHODS
                    ) -> dict[str, dict[str, np.ndarray]]:
    """stem -> method -> image for one analog: Table 2's outputs when :func:`~dn.table2` ran, else the same
    micrographs (:func:`~dn.study_micrographs`) denoised now through :func:`~dn.denoise_all`."""
    done = study.denoised.get(name, {})
    if done and all(m in out for out in done.values() for m in methods):
        return {stem: {m: out[m] for m in methods} for stem, out in done.items()}
    ds = study.datasets[name]
    out = {}
    for path in dn.study_micrographs(ds, study.n_micrographs):
        image, header = read_micrograph(path)
        clean = read_micrograph(ds.path_of(path.stem, "clean"))[0]
        out[path.stem] = dn.denoise_all(study, image, header if header > 0 else ds.pixel_size_A, clean, tuple(methods))
    return out


def table3(study: dn.DenoisingStudy, max_particles: int | None = None, methods: Sequence[str] = TABLE3_METHODS,
           progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 3 -> (one row per analog and method, FSC curves).

    Rows: dataset, method, resolution_A, paper_resolution_A, nyquist_A, n_particles, n_micrographs, box_px.
    ``max_particles`` caps the ground-truth particles per analog (None: all of the denoised micrographs').
    Curves: dataset, method, shell, frequency_per_A, resolution_A, fsc.
    """
    unknown = [m for m in methods if m not in dn.METHODS]
    if unknown:
        raise CryolibError(f"unknown Table 3 methods {unknown}; choose from {list(dn.METHODS)}")
    rows, curves = [], []
    jobs = [(name, m) for name in study.datasets for m in methods]
    bar = tqdm(total=len(jobs), desc="Table 3 maps", disable=not progress, leave=False)
    for name, ds in study.datasets.items():
        images = denoised_images(study, name, methods)
        if not images:
            raise CryolibError(f"{name}: no good micrograph to reconstruct from; rebuild it with notebook 01")
        picks = ground_truth_picks(ds, sorted(images))
        for method in methods:
            rec = reconstruct_from_picks(ds, picks, max_particles, study.seed,
                                         images={s: out[method] for s, out in images.items()})
            rows.append({"dataset": name, "method": method, "resolution_A": rec.resolution_A,
                         "paper_resolution_A": PAPER_TABLE3.get(name, {}).get(method, math.nan),
                         "nyquist_A": 2.0 * rec.pixel_size_A, "n_particles": rec.n_particles,
                         "n_micrographs": len(images), "box_px": rec.box_px})
            curves.append(rec.fsc.drop(columns="n_voxels").assign(dataset=name, method=method))
            bar.update()
    bar.close()
    curve = pd.concat(curves, ignore_index=True)
    return pd.DataFrame(rows), curve[["dataset", "method", "shell", "frequency_per_A", "resolution_A", "fsc"]]


def table3_pivot(rows: pd.DataFrame, value: str = "resolution_A") -> pd.DataFrame:
    """The paper's layout: one row per method, one column per analog (Å), plus the mean."""
    wide = rows.pivot(index="method", columns="dataset", values=value)
    wide = wide.reindex([m for m in TABLE3_METHODS if m in wide.index])
    wide["mean"] = wide.mean(axis=1)
    return wide


def _wins(wide: pd.DataFrame, ours: Sequence[str], theirs: Sequence[str]) -> tuple[int, int]:
    """(analogs where the best (lowest Å) of ``ours`` is strictly better than the best of ``theirs``, analogs)."""
    ours = [m for m in ours if m in wide.index]
    theirs = [m for m in theirs if m in wide.index]
    if not ours or not theirs:
        return 0, 0
    cols = [c for c in wide.columns if c != "mean" and wide.loc[ours + theirs, c].notna().all()]
    return int(sum(wide.loc[ours, c].min() < wide.loc[theirs, c].min() for c in cols)), len(cols)


def table3_claims(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: claim, paper_statement, paper_numbers, our_numbers, supported (yes/no)."""
    ours = table3_pivot(rows)
    paper = pd.DataFrame(PAPER_TABLE3)  # methods x analogs
    draco = (dn.DRACO_B, dn.DRACO_L)
    out = []
    for claim, statement, mine, others, rule in [
        ("DRACO gives the best resolution on most sets", "DRACO-B is best on 3 of 4 sets (Table 3)",
         draco, (dn.LOWPASS, dn.TOPAZ, dn.MAE), "most"),
        ("DRACO beats Topaz-Denoise", "DRACO-B < Topaz-Denoise on 4 of 4 sets (Table 3)", draco, (dn.TOPAZ,), "most"),
        ("DRACO beats the plain MAE", "DRACO-B < MAE on 4 of 4 sets (Table 3)", draco, (dn.MAE,), "most"),
        ("Denoising with DRACO beats raw particles (ours)", "not in the paper (no raw row)", draco, (dn.RAW,), "most"),
        ("Every denoiser beats raw particles (ours)", "not in the paper (no raw row)",
         (dn.LOWPASS, dn.TOPAZ, dn.MAE, *draco), (dn.RAW,), "all"),
    ]:
        if rule == "all":
            per = [_wins(ours, (m,), others) for m in mine if m in ours.index]
            wins, n = sum(w for w, _ in per), sum(k for _, k in per)
            ok = n > 0 and wins == n
        else:
            wins, n = _wins(ours, mine, others)
            ok = n > 0 and wins > n / 2
        p_mine = [m for m in mine if m in paper.index]
        p_others = [m for m in others if m in paper.index]
        p = (f"{int(sum(paper.loc[p_mine, c].min() < paper.loc[p_others, c].min() for c in paper.columns))}"
             f"/{paper.shape[1]} sets") if p_mine and p_others else "n/a"
        out.append((claim, statement, p, f"{wins}/{n} {'method-analog pairs' if rule == 'all' else 'analogs'}", ok))
    table = pd.DataFrame(out, columns=["claim", "paper_statement", "paper_numbers", "our_numbers", "supported"])
    table["supported"] = table["supported"].map({True: "yes", False: "no"})
    return table


def table3_metrics(rows: pd.DataFrame, claims: pd.DataFrame) -> dict:
    """Named numbers for ``metrics.json``: mean resolution per method (Å), per-analog DRACO-B and Raw, claims."""
    wide = table3_pivot(rows)
    by = rows.set_index(["method", "dataset"])["resolution_A"]
    return {
        "table3_mean_resolution_A": wide["mean"].dropna().to_dict(),
        "table3_draco_b_resolution_A": by.loc[dn.DRACO_B].to_dict() if dn.DRACO_B in wide.index else {},
        "table3_raw_resolution_A": by.loc[dn.RAW].to_dict() if dn.RAW in wide.index else {},
        "table3_n_particles": rows.groupby("dataset")["n_particles"].first().astype(int).to_dict(),
        "table3_claims_supported": dict(zip(claims["claim"], claims["supported"] == "yes")),
    }
