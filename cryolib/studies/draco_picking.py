"""Notebook 07's study: DRACO particle picking (DRACO 2024 §5.1: Table 1's picking columns, Figure 3,
Table 6's picking columns) and a few-shot curve against Topaz trained on the same labels.

Protocol (the paper's where it says, ours where it is silent):

* **Detectors** (:mod:`cryolib.pick.detector`, detectron2 ViTDet on the shared encoder). The paper
  fine-tunes each backbone on a large annotated set and tests on three EMPIAR sets it never saw. Here
  stage 1 (:func:`~cryolib.pick.detector_training.finetune_detector`) fine-tunes each backbone on the
  annotated training analogs (role ``cryoemmae_train``, their train split), and Table 1 scores it on the
  analogs of 10081, 10407 and 10350 (role ``draco_picking``), which neither pretraining nor fine-tuning saw.
  Backbones: random ("Detectron", from scratch), notebook 04's MAE, DRACO-B and DRACO-L stand-ins.
* **One annotated micrograph per test analog** (:func:`reference_and_eval`): the good micrograph of the
  train split with the most particles. Every picker gets it: the detectors, blob and Topaz set their
  score threshold on it (best F1, :meth:`cryolib.pick.registry.Picker.calibrate`), Cryo-EMMAE names its
  particle cluster from it. One extra row, "DRACO-B + adapted", also fine-tunes the general DRACO-B
  detector on it (stage 2, :func:`~cryolib.pick.detector_training.adapt_detector`). All other good
  micrographs of the analog are scored (``overlap60``, Cryo-EMMAE §4.1's rule).
* crYOLO and CryoTransformer do not run here; their rows carry the paper's numbers, marked as reported.
* **Table 6** (70S ribosome analog): the general detector on each of notebook 08's loss ablations
  (without N2N, without recon, both terms = γ 0.75), same protocol as Table 1.
* **Few-shot curve**: F1 against the number of annotated particles on one micrograph, for the general
  DRACO-B detector adapted to them and for Topaz trained from scratch on the same labels
  (:func:`cryolib.pick.topaz.train_on_reference`). Partial labels cannot calibrate a threshold, so both
  are scored at their own default operating point, with the oracle best-F1 beside it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from cryolib.core.errors import CryolibError
from cryolib.core.profiles import get_profile
from cryolib.core.results import run_dir
from cryolib.evaluate.metrics import match_picks
from cryolib.evaluate.scoring import best_threshold_scores, good_micrographs, score_picks
from cryolib.io.datasets import Dataset, dataset_dir, datasets_with_role, load_dataset
from cryolib.io.micrographs import read_micrograph
from cryolib.pick import topaz
from cryolib.pick.cryoemmae import DEFAULT_CHECKPOINT as SHIPPED_CRYOEMMAE
from cryolib.pick.detector import DEFAULT_THRESHOLD as DETECTOR_THRESHOLD
from cryolib.pick.detector_training import SCHEDULES, adapt_detector, finetune_detector
from cryolib.pick.registry import check_reference, get_picker, micrograph_shapes
from cryolib.studies.draco_pretraining import draco_checkpoints

log = logging.getLogger(__name__)

ROLE = "draco_picking"
TRAIN_ROLE = "cryoemmae_train"
TABLE6_SET = "sim-10407"  # 70S ribosome (Table 6)
SCRATCH, MAE, DRACO_B, DRACO_L = "Detectron (scratch)", "MAE", "DRACO-B", "DRACO-L"
ADAPTED = "DRACO-B + adapted"
TOPAZ, BLOB = "Topaz (pretrained)", "Blob (LoG)"
EMMAE_MAE, EMMAE_DRACO = "Cryo-EMMAE clustering (MAE features)", "Cryo-EMMAE clustering (DRACO features)"
TOPAZ_TRAINED = "Topaz (trained on the labels)"
#: Detector rows -> key of notebook 04's checkpoints ("scratch": random weights).
BACKBONES: dict[str, str] = {SCRATCH: "scratch", MAE: "mae", DRACO_B: "draco-b", DRACO_L: "draco-l"}
REPORTED = ("crYOLO", "CryoTransformer")
#: DRACO Table 1 (precision, recall, F1) per test set; "Topaz" is its pretrained general model,
#: "Detectron" detectron2 from scratch.
PAPER_TABLE1: dict[str, dict[str, tuple[float, float, float]]] = {
    "sim-10081": {TOPAZ: (0.462, 0.956, 0.623), "crYOLO": (0.818, 0.748, 0.782),
                  "CryoTransformer": (0.475, 0.910, 0.624), SCRATCH: (0.392, 0.834, 0.533),
                  MAE: (0.703, 0.649, 0.675), DRACO_B: (0.768, 0.799, 0.793), DRACO_L: (0.830, 0.802, 0.816)},
    "sim-10407": {TOPAZ: (0.362, 0.943, 0.523), "crYOLO": (0.602, 0.869, 0.711),
                  "CryoTransformer": (0.517, 0.887, 0.654), SCRATCH: (0.668, 0.901, 0.767),
                  MAE: (0.712, 0.876, 0.786), DRACO_B: (0.732, 0.905, 0.810), DRACO_L: (0.803, 0.846, 0.824)},
    "sim-10350": {TOPAZ: (0.518, 0.761, 0.617), "crYOLO": (0.632, 0.163, 0.224),
                  "CryoTransformer": (0.429, 0.706, 0.534), SCRATCH: (0.589, 0.804, 0.680),
                  MAE: (0.591, 0.805, 0.682), DRACO_B: (0.637, 0.779, 0.701), DRACO_L: (0.678, 0.780, 0.725)},
}
#: DRACO Table 6, picking columns (70S ribosome): run of notebook 08 -> (label, precision, recall, F1).
PAPER_TABLE6: dict[str, tuple[str, float, float, float]] = {
    "no-n2n": ("DRACO-B w/o N2N", 0.712, 0.876, 0.786),
    "no-recon": ("DRACO-B w/o recon", 0.713, 0.817, 0.761),
    "mask0.75": ("DRACO-B (N2N + recon)", 0.732, 0.905, 0.810),
}
METRICS = ("precision", "recall", "f1")


@dataclass
class PickingStudy:
    """Everything notebook 07 works on: the test analogs, the fine-tuning analogs and the backbones."""

    profile: str
    seed: int
    datasets: dict[str, Dataset]
    train_sets: dict[str, Dataset]
    backbones: dict[str, str | Path]
    runs: Path
    shipped_cryoemmae: Path = SHIPPED_CRYOEMMAE
    timings: dict[str, float] = field(default_factory=dict)


def _open(names: Sequence[str], profile: str, data_root: str | Path | None) -> dict[str, Dataset]:
    missing = [n for n in names if not (dataset_dir(n, profile, data_root) / "micrographs").is_dir()]
    if missing:
        raise CryolibError(f"analogs {missing} are not simulated at profile {profile!r}; run notebook 01 first")
    return {n: load_dataset(dataset_dir(n, profile, data_root)) for n in names}


def load_study(profile: str, seed: int = 0, data_root: str | Path | None = None, runs_root: str | Path | None = None,
               checkpoints: Mapping[str, str | Path] | None = None) -> PickingStudy:
    """Open the analogs and notebook 04's checkpoints (``checkpoints`` overrides them: {"mae", "draco-b",
    "draco-l"} -> path); every file is checked before any work."""
    get_profile(profile)
    ckpts = dict(draco_checkpoints(profile, runs_root)) | dict(checkpoints or {})
    backbones: dict[str, str | Path] = {}
    for row, key in BACKBONES.items():
        if key == "scratch":
            backbones[row] = "scratch"
            continue
        path = Path(ckpts[key])
        if not path.is_file():
            raise CryolibError(f"{row} backbone {path} not found; run notebook 04 (04_pretrain_draco) first")
        backbones[row] = path
    runs = run_dir(profile, runs_root) / "draco_picking"
    return PickingStudy(profile, int(seed), _open(datasets_with_role(ROLE), profile, data_root),
                        _open(datasets_with_role(TRAIN_ROLE), profile, data_root), backbones, runs)


def reference_and_eval(ds: Dataset) -> tuple[Path, pd.DataFrame, list[Path]]:
    """(reference micrograph, its particles, the micrographs scored): the good train-split micrograph with the
    most particles is the one annotated micrograph; every other good micrograph is scored."""
    good = good_micrographs(ds, list(ds.micrographs))
    train = [p for p in good_micrographs(ds, ds.split("train")) if len(ds.coordinates(p.stem))] or good
    if len(good) < 2 or not train:
        raise CryolibError(f"{ds.name} needs at least two good micrographs with particles (one reference, one scored)")
    ref = max(train, key=lambda p: (len(ds.coordinates(p.stem)), -train.index(p)))
    return ref, ds.coordinates(ref.stem), [p for p in good if p != ref]


def training_annotations(study: PickingStudy) -> tuple[list[Path], list[pd.DataFrame], list[float]]:
    """Stage 1's data: every good train-split micrograph of the fine-tuning analogs, its particles, its diameter."""
    paths, coords, diams = [], [], []
    for ds in study.train_sets.values():
        for p in good_micrographs(ds, ds.split("train")):
            paths.append(p)
            coords.append(ds.coordinates(p.stem))
            diams.append(float(ds.diameter_px))
    if not paths:
        raise CryolibError("no good annotated training micrographs for the detector's fine-tuning")
    return paths, coords, diams


def general_detectors(study: PickingStudy, steps: int | None = None, progress: bool = True) -> dict[str, Path]:
    """Stage 1 for every backbone -> {row: checkpoint} (``runs/<profile>/draco_picking/general_<key>``).
    Finished runs are reused: the loop resumes a run that already reached its last step."""
    paths, coords, diams = training_annotations(study)
    out = {}
    for row, init in study.backbones.items():
        t0 = time.perf_counter()
        out[row] = finetune_detector(paths, coords, diams, study.runs / f"general_{BACKBONES[row]}", init=init,
                                     profile=study.profile, steps=steps, seed=study.seed, resume=True,
                                     progress=progress)
        study.timings[f"stage1 {row}"] = time.perf_counter() - t0
    return out


def _all_picks(study: PickingStudy, method: str, paths: list[Path], diameter_px: float, checkpoint=None,
               reference: tuple[Path, pd.DataFrame] | None = None, fit_on_reference: bool = False
               ) -> tuple[dict[str, pd.DataFrame], float | None]:
    """Every pick with its score on ``paths``, and the threshold of the method's own rule on ``reference``.

    ``fit_on_reference`` hands the reference to the method's :meth:`~cryolib.pick.registry.Picker.prepare`:
    Cryo-EMMAE names its particle cluster from it, the detector adapts to it (stage 2). Otherwise the model
    is used as given. Either way the reference then sets the score threshold
    (:meth:`~cryolib.pick.registry.Picker.calibrate_prepared`; Cryo-EMMAE has none).
    """
    picker = get_picker(method)
    ref = check_reference(reference) if reference is not None else None
    every = [*paths, ref.path] if ref is not None else list(paths)
    state = picker.prepare(every, diameter_px, micrograph_shapes(every), checkpoint=checkpoint,
                           reference=ref if fit_on_reference else None, seed=study.seed)
    picks = picker.pick_all(paths, diameter_px, state, seed=study.seed, progress=False)
    threshold = None
    if ref is not None:
        try:
            threshold = picker.calibrate_prepared(ref, diameter_px, state, study.seed)
        except CryolibError as err:  # no pick matches a reference particle: nothing to calibrate on
            threshold = picker.default_threshold
            log.warning("%s: %s; scoring at its default threshold %s", method, err, threshold)
    return picks, threshold


def _row(ds: Dataset, method: str, picks: Mapping[str, pd.DataFrame], paths: list[Path], threshold: float | None,
         seconds: float) -> dict:
    kept = {s: df if threshold is None else df[df["score"] >= threshold] for s, df in picks.items()}
    scores = score_picks(ds, kept, paths)
    return {"dataset": ds.name, "method": method, "source": "ours", **{m: scores[m] for m in METRICS},
            "tp": scores["tp"], "fp": scores["fp"], "fn": scores["fn"], "threshold": threshold,
            "n_micrographs": scores["n_micrographs"], "seconds": seconds}


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def score_dataset_methods(study: PickingStudy, ds: Dataset, detectors: Mapping[str, Path],
                          adapt: bool = True) -> tuple[list[dict], dict[str, dict[str, pd.DataFrame]]]:
    """Every method of Table 1 on one analog -> (rows, {method: kept picks per micrograph})."""
    ref_path, ref_coords, paths = reference_and_eval(ds)
    reference, d = (ref_path, ref_coords), float(ds.diameter_px)
    # row -> (registry method, checkpoint, fit on the reference: Cryo-EMMAE names its cluster, the detector adapts)
    runs: dict[str, tuple[str, object, bool]] = {row: ("detector", ckpt, False) for row, ckpt in detectors.items()}
    if adapt and DRACO_B in detectors:
        runs[ADAPTED] = ("detector", detectors[DRACO_B], True)
    runs |= {TOPAZ: ("topaz", None, False), BLOB: ("blob", None, False),
             EMMAE_MAE: ("cryoemmae", study.shipped_cryoemmae, True),
             EMMAE_DRACO: ("cryoemmae", study.backbones[DRACO_B], True)}
    rows, kept = [], {}
    for name, (method, ckpt, fit) in runs.items():
        (picks, threshold), secs = _timed(_all_picks, study, method, paths, d, ckpt, reference, fit)
        row = _row(ds, name, picks, paths, threshold, secs)
        rows.append(row)
        kept[name] = {s: df if threshold is None else df[df["score"] >= threshold] for s, df in picks.items()}
        log.info("%s %s: F1 %.3f (%.0f s)", ds.name, name, row["f1"], secs)
    return rows, kept


def table1(study: PickingStudy, detectors: Mapping[str, Path], adapt: bool = True
           ) -> tuple[pd.DataFrame, dict[str, dict[str, dict[str, pd.DataFrame]]]]:
    """Table 1's picking columns, ours and the paper's -> (long table, {dataset: {method: picks}})."""
    rows, picks = [], {}
    for name, ds in study.datasets.items():
        r, picks[name] = score_dataset_methods(study, ds, detectors, adapt)
        rows += r
    for name in study.datasets:
        for method, (p, r, f) in PAPER_TABLE1.get(name, {}).items():
            if method in REPORTED:
                rows.append({"dataset": name, "method": method, "source": "reported (paper)", "precision": p,
                             "recall": r, "f1": f})
    out = pd.DataFrame(rows)
    out["paper_f1"] = [PAPER_TABLE1.get(d, {}).get(m, (math.nan,) * 3)[2] for d, m in zip(out["dataset"], out["method"])]
    return out, picks


def table1_wide(rows: pd.DataFrame, value: str = "f1") -> pd.DataFrame:
    """Methods x analogs of ``value``, with the mean over analogs and the paper's mean F1 beside it."""
    wide = rows.pivot_table(index="method", columns="dataset", values=value, aggfunc="first")
    wide["mean"] = wide.mean(axis=1)
    paper = {m: np.nanmean([PAPER_TABLE1[d].get(m, (math.nan,) * 3)[2] for d in PAPER_TABLE1]) if any(
        m in PAPER_TABLE1[d] for d in PAPER_TABLE1) else math.nan for m in wide.index}
    wide["paper mean F1"] = pd.Series(paper)
    return wide.sort_values("mean", ascending=False)


def figure3_panels(study: PickingStudy, picks: Mapping[str, Mapping[str, Mapping[str, pd.DataFrame]]],
                   methods: Sequence[str]) -> list[dict]:
    """Per analog, the first scored micrograph with TP / FP / FN centres of each method (Figure 3)."""
    panels = []
    for name, ds in study.datasets.items():
        _, _, paths = reference_and_eval(ds)
        stem, truth = paths[0].stem, ds.coordinates(paths[0].stem)
        for method in methods:
            pred = picks[name][method].get(stem, pd.DataFrame({"x": [], "y": []}))
            m = match_picks(pred, truth, float(ds.diameter_px))
            tp = np.zeros(len(pred), bool)
            tp[np.asarray(m.pred_idx, int)] = True
            found = np.zeros(len(truth), bool)
            found[np.asarray(m.gt_idx, int)] = True
            panels.append({"dataset": name, "method": method, "image": read_micrograph(paths[0])[0],
                           "diameter_px": float(ds.diameter_px), "tp": pred[tp], "fp": pred[~tp],
                           "fn": truth[~found], "f1": m.f1})
    return panels


def table6_picking(study: PickingStudy, ablations: Mapping[str, Path], steps: int | None = None,
                   progress: bool = True) -> pd.DataFrame:
    """Table 6's picking columns on the 70S analog: stage 1 on each loss ablation's encoder, then the Table 1
    protocol (threshold from the reference micrograph), the paper's numbers beside ours. ``steps``: stage-1
    steps per run; None = half the profile's stage-1 schedule (three more fine-tunings would double notebook
    07's CPU time; the three runs share the same budget, so they compare with each other, not with Table 1)."""
    missing = [r for r in PAPER_TABLE6 if r not in ablations]
    if missing:
        raise CryolibError(f"Table 6 needs notebook 08's runs {missing}")
    paths, coords, diams = training_annotations(study)
    steps = steps if steps is not None else max(1, SCHEDULES[study.profile][0].steps // 2)
    ds = study.datasets[TABLE6_SET]
    ref_path, ref_coords, eval_paths = reference_and_eval(ds)
    rows = []
    for run, (label, p, r, f) in PAPER_TABLE6.items():
        ckpt = finetune_detector(paths, coords, diams, study.runs / f"general_ablation_{run}", init=ablations[run],
                                 profile=study.profile, steps=steps, seed=study.seed, resume=True, progress=progress)
        (picks, threshold), secs = _timed(_all_picks, study, "detector", eval_paths, float(ds.diameter_px), ckpt,
                                          (ref_path, ref_coords))
        row = _row(ds, label, picks, eval_paths, threshold, secs)
        rows.append({**row, "run": run, "paper_precision": p, "paper_recall": r, "paper_f1": f})
    return pd.DataFrame(rows)


def few_shot_curve(study: PickingStudy, detector: Path, counts: Sequence[int | None], dataset: str = TABLE6_SET,
                   topaz_minutes: float | None = None, progress: bool = False) -> pd.DataFrame:
    """F1 against the number of annotated particles on ONE micrograph of ``dataset``: the general detector
    adapted to them vs Topaz trained from scratch on them with the profile's Topaz schedule, as in Figure 2
    (``PickingSizes.topaz_*``; seeded subsets; None = all labels). Counts at or
    above the reference's particle count collapse to "all". Scored at each method's default operating
    point (``f1``) and at the oracle best-F1 threshold (``f1_oracle``)."""
    ds = study.datasets[dataset]
    ref_path, ref_coords, paths = reference_and_eval(ds)
    d, pk = float(ds.diameter_px), get_profile(study.profile).picking
    wanted = sorted({int(c) for c in counts if c is not None and int(c) < len(ref_coords)}) + [len(ref_coords)]
    rows = []
    for n in wanted:
        subset = None if n >= len(ref_coords) else n
        tag = "all" if subset is None else str(n)
        adapted, secs = _timed(adapt_detector, detector, (ref_path, ref_coords), d, study.runs / f"fewshot_det_{tag}",
                               n_particles=subset, seed=study.seed, profile=study.profile, progress=progress)
        picks, pick_secs = _timed(lambda: _all_picks(study, "detector", paths, d, adapted)[0])
        rows.append(_few_shot_row(ds, "Detector (DRACO-B)", n, picks, paths, DETECTOR_THRESHOLD, secs, pick_secs))
        model, secs = _timed(topaz.train_on_reference, ref_path, ref_coords, d, study.runs / f"fewshot_topaz_{tag}",
                             n_particles=subset, seed=study.seed, max_minutes=topaz_minutes,
                             epochs=pk.topaz_epochs, epoch_size=pk.topaz_epoch_size, minibatch_size=pk.topaz_minibatch)
        picks, pick_secs = _timed(topaz.pick_with_model, paths, model, d)
        rows.append(_few_shot_row(ds, TOPAZ_TRAINED, n, picks, paths, topaz.TRAINED_THRESHOLD, secs, pick_secs))
    return pd.DataFrame(rows)


def _few_shot_row(ds: Dataset, method: str, n: int, picks: Mapping[str, pd.DataFrame], paths: list[Path],
                  threshold: float, train_s: float, pick_s: float) -> dict:
    at_default = score_picks(ds, picks, paths, threshold=threshold)
    oracle = best_threshold_scores(ds, picks, paths)
    return {"dataset": ds.name, "method": method, "n_labels": n, **{m: at_default[m] for m in METRICS},
            "threshold": threshold, "f1_oracle": oracle["f1"], "oracle_threshold": oracle["threshold"],
            "train_s": train_s, "pick_s": pick_s}


def claims_table(t1: pd.DataFrame, t6: pd.DataFrame, few: pd.DataFrame) -> pd.DataFrame:
    """The paper's picking claims (and the issue's bar), each tested against our numbers."""
    ours = t1[t1["source"] == "ours"]
    mean = ours.groupby("method")["f1"].mean()
    wins = int(sum(ours[ours["dataset"] == d].set_index("method")["f1"].get(DRACO_B, -1) >
                   ours[ours["dataset"] == d].set_index("method")["f1"].get(TOPAZ, 2) for d in ours["dataset"].unique()))
    n_sets = ours["dataset"].nunique()
    full = t6.set_index("run")["f1"]
    last = few[few["n_labels"] == few["n_labels"].max()].set_index("method")["f1"]
    rows = [
        ("DRACO-B's detector beats Topaz (pretrained) on F1", "3 of 3 sets", f"{wins} of {n_sets} analogs",
         wins == n_sets),
        ("DRACO-L >= DRACO-B >= MAE >= Detectron from scratch (mean F1)", "3 of 3 sets (L > B > MAE > scratch)",
         " ≥ ".join(f"{mean.get(m, math.nan):.3f}" for m in (DRACO_L, DRACO_B, MAE, SCRATCH)),
         bool(mean.get(DRACO_L, 0) >= mean.get(DRACO_B, 0) >= mean.get(MAE, 0) >= mean.get(SCRATCH, 0))),
        ("Pretraining helps: DRACO-B beats Detectron from scratch (mean F1)", "3 of 3 sets",
         f"{mean.get(DRACO_B, math.nan):.3f} vs {mean.get(SCRATCH, math.nan):.3f}",
         bool(mean.get(DRACO_B, 0) > mean.get(SCRATCH, 0))),
        ("Both loss terms help picking (Table 6: full beats w/o N2N and w/o recon)", "0.810 vs 0.786 / 0.761",
         f"{full.get('mask0.75', math.nan):.3f} vs {full.get('no-n2n', math.nan):.3f} / "
         f"{full.get('no-recon', math.nan):.3f}",
         bool(full.get("mask0.75", 0) > max(full.get("no-n2n", 1), full.get("no-recon", 1)))),
        ("With one annotated micrograph, the detector beats Topaz trained on the same labels", "(the issue's bar)",
         f"{last.get('Detector (DRACO-B)', math.nan):.3f} vs {last.get(TOPAZ_TRAINED, math.nan):.3f}",
         bool(last.get("Detector (DRACO-B)", 0) > last.get(TOPAZ_TRAINED, 1))),
    ]
    return pd.DataFrame(rows, columns=["claim", "paper", "ours", "holds"])


def headline_metrics(t1: pd.DataFrame, t6: pd.DataFrame, few: pd.DataFrame, claims: pd.DataFrame,
                     timings: Mapping[str, float]) -> dict:
    """metrics.json of notebook 07."""
    ours = t1[t1["source"] == "ours"]
    return {"table1_mean_f1": {m: float(v) for m, v in ours.groupby("method")["f1"].mean().items()},
            "table6_f1": {r: float(v) for r, v in t6.set_index("run")["f1"].items()},
            "few_shot_f1": {f"{m} n={n}": float(v) for m, n, v in few[["method", "n_labels", "f1"]].itertuples(False)},
            "claims_holding": int(claims["holds"].sum()), "claims": len(claims),
            "seconds": {k: float(v) for k, v in timings.items()}}
