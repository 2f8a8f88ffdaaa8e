"""Notebook 03's study, part 1: Cryo-EMMAE Figures 1 and 2 (§4.2) on the simulated analogs.

The experiment design lives here, not in the notebook:

* :func:`load_study`: the datasets, which micrographs each analog is scored on, where the runs are.
* :func:`reference_micrograph`: the ONE annotated micrograph of an analog (the first good micrograph
  of its training split). It is the only label the unsupervised methods see: Cryo-EMMAE names its
  particle cluster from it; blob and Topaz (pretrained) calibrate their score threshold on it.
* :func:`fit_pickers`, :func:`train_topaz_baselines`: one Cryo-EMMAE picker and one Topaz model
  per training analog (Topaz is supervised: it learns every label of the training split).
* :func:`cross_dataset_table`: the Figure 2 rows (method x training analog x evaluation analog).
* :func:`fig1_example`: the Figure 1 micrograph, chosen by a rule (:func:`median_f1_micrograph`).
* :func:`headline_metrics`: the numbers notebook 03 writes to ``metrics.json``.

Operating points (one per method, each documented): Cryo-EMMAE keeps every pick of its own
threshold rule (§3.3); blob and Topaz (pretrained) use the threshold calibrated on the training
analog's reference micrograph (:meth:`cryolib.pick.registry.Picker.calibrate`); Topaz from scratch
uses the same rule (best F1 on ONE annotated micrograph) on :func:`topaz_calibration_micrograph`,
the first good micrograph of the validation split: the reference micrograph is one of its training
images, whose in-sample scores would bias the threshold (:func:`topaz_scratch_thresholds`). Each
evaluation analog is picked ONCE per model with every pick and its score (``threshold=-inf``);
thresholds are applied while scoring.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from cryolib.core.errors import CryolibError
from cryolib.core.profiles import Profile, get_profile
from cryolib.core.results import run_dir
from cryolib.evaluate.scoring import evaluation_micrographs, good_micrographs, load_images, score_picks, truth_by_stem
from cryolib.io.datasets import Dataset, dataset_dir, datasets_with_role, load_dataset
from cryolib.io.micrographs import read_micrograph
from cryolib.pick import get_picker, pick_micrographs
from cryolib.pick.cryoemmae import CryoEMMAEPicker, fit_picker
from cryolib.pick.registry import best_f1_threshold_on
from cryolib.pick.topaz import TRAINED_THRESHOLD, pick_with_model, train_from_scratch

log = logging.getLogger(__name__)

EMMAE = "Cryo-EMMAE"
TOPAZ_SCRATCH = "Topaz (from scratch)"
TOPAZ_PRETRAINED = "Topaz (pretrained general)"
BLOB = "Blob (LoG)"
FIG2_METHODS = (EMMAE, TOPAZ_SCRATCH, TOPAZ_PRETRAINED, BLOB)
#: Topaz from scratch without a calibration micrograph: logit 0, p = 0.5 (cryolib.pick.topaz.TRAINED_THRESHOLD).
TOPAZ_SCRATCH_THRESHOLD = TRAINED_THRESHOLD
#: The calibrated methods: table name -> registry name.
CALIBRATED = {BLOB: "blob", TOPAZ_PRETRAINED: "topaz"}
#: The generalisation check's methods (cryoemmae_generalisation.generalisation_check).
GEN_EMMAE_REF = "Cryo-EMMAE (shipped, 1 annotated micrograph)"
GEN_EMMAE_DEFAULT = "Cryo-EMMAE (shipped, default reference)"
GEN_BLOB = "Blob (LoG, 1 annotated micrograph)"
GEN_TOPAZ = "Topaz (pretrained general, 1 annotated micrograph)"
GEN_METHODS = (GEN_EMMAE_REF, GEN_EMMAE_DEFAULT, GEN_BLOB, GEN_TOPAZ)


@dataclass
class PickingStudy:
    """What every Cryo-EMMAE picking experiment shares: datasets, roles, scored micrographs, runs.

    ``scored``: for each Figure 2 analog the micrographs it is scored on (the test split of a
    training analog, every good micrograph of an evaluation-only analog; see
    :func:`cryolib.evaluate.scoring.evaluation_micrographs`). ``runs``: where notebook 02 put the
    MAE checkpoints (``mae_<name>/checkpoint.pt``) and where Topaz runs go.
    """

    profile: str
    seed: int
    rule: str
    data: dict[str, Dataset]
    train_sets: list[str]
    eval_sets: list[str]
    gen_sets: list[str]
    runs: Path
    scored: dict[str, list[Path]]

    @property
    def sizes(self) -> Profile:
        """The profile's sizes (Topaz schedule, number of test micrographs)."""
        return get_profile(self.profile)


def load_study(profile: str, seed: int = 0, data_root: str | Path | None = None, runs_root: str | Path | None = None,
               rule: str = "overlap60") -> PickingStudy:
    """Open every analog of the study (roles from the registry) for ``profile``; see :class:`PickingStudy`."""
    train_sets = datasets_with_role("cryoemmae_train")
    eval_sets = datasets_with_role("cryoemmae_eval")
    gen_sets = datasets_with_role("generalisation")
    names = list(dict.fromkeys(train_sets + eval_sets + gen_sets))
    data = {n: load_dataset(dataset_dir(n, profile, data_root)) for n in names}
    return study_from_datasets(data, train_sets, eval_sets, gen_sets, profile, seed, run_dir(profile, runs_root), rule)


def study_from_datasets(data: Mapping[str, Dataset], train_sets: Sequence[str], eval_sets: Sequence[str],
                        gen_sets: Sequence[str], profile: str, seed: int, runs: str | Path,
                        rule: str = "overlap60") -> PickingStudy:
    """A :class:`PickingStudy` over already opened datasets (tests use tiny ones)."""
    missing = sorted((set(train_sets) | set(eval_sets) | set(gen_sets)) - set(data))
    if missing:
        raise CryolibError(f"datasets {missing} are not open; build them first (notebook 01 or `cryolib simulate`)")
    n_test = get_profile(profile).picking.n_test_micrographs
    scored = {n: evaluation_micrographs(data[n], n in train_sets, n_test) for n in eval_sets}
    empty = [n for n, paths in scored.items() if not paths]
    if empty:
        raise CryolibError(f"analogs {empty} have no good micrograph to score; rebuild them with more micrographs")
    return PickingStudy(profile, int(seed), rule, dict(data), list(train_sets), list(eval_sets), list(gen_sets),
                        Path(runs), scored)


def scored_summary(study: PickingStudy) -> pd.DataFrame:
    """One row per Figure 2 analog: how many micrographs are scored and the particle diameter (px)."""
    return pd.DataFrame({"dataset": list(study.scored),
                         "scored_micrographs": [len(v) for v in study.scored.values()],
                         "diameter_px": [round(study.data[n].diameter_px, 1) for n in study.scored]})


def reference_micrograph(ds: Dataset) -> tuple[Path, pd.DataFrame]:
    """The ONE annotated micrograph of an analog: the first good micrograph of its training split.

    Returns (path, its ground-truth coordinates: x, y in px). Training analogs score their test
    split, so the reference is never scored.
    """
    good = good_micrographs(ds, ds.split("train"))
    if not good:
        raise CryolibError(f"{ds.name} has no good micrograph in its training split to annotate; "
                           "rebuild it with more micrographs")
    return good[0], ds.coordinates(good[0].stem)


def mae_checkpoint(study: PickingStudy, name: str) -> Path:
    """The MAE checkpoint notebook 02 wrote for ``name`` (a training analog or ``all4``)."""
    path = study.runs / f"mae_{name}" / "checkpoint.pt"
    if not path.is_file():
        raise CryolibError(f"no MAE checkpoint at {path}; run notebook 02 (or `cryolib pretrain`) at this profile first")
    return path


def fit_pickers(study: PickingStudy) -> dict[str, CryoEMMAEPicker]:
    """One Cryo-EMMAE picker per training analog: its own MAE, k-means on its training split,
    the particle cluster named by its :func:`reference_micrograph` (§3.2)."""
    pickers = {}
    for t in study.train_sets:
        ds = study.data[t]
        ref_path, ref_coords = reference_micrograph(ds)
        pickers[t] = fit_picker(mae_checkpoint(study, t), ds.split("train"), ref_path, ref_coords, ds.diameter_px,
                                seed=study.seed)
    return pickers


def picker_summary(study: PickingStudy, pickers: Mapping[str, CryoEMMAEPicker]) -> pd.DataFrame:
    """One row per fitted picker: training analog, its reference micrograph, the particle cluster."""
    return pd.DataFrame({"trained_on": list(pickers),
                         "reference_micrograph": [reference_micrograph(study.data[t])[0].stem for t in pickers],
                         "particle_cluster": [p.particle_cluster for p in pickers.values()]})


def train_topaz(study: PickingStudy, name: str, out_name: str, epochs: int, epoch_size: int, minibatch: int) -> Path:
    """Topaz from scratch on one analog's good training micrographs, validated on its good val split.

    Simulated labels are complete, so Topaz's ``-n`` is the labelled count (the default of
    :func:`~cryolib.pick.topaz.train_from_scratch`: PN); the epoch with the best validation AUPRC.
    """
    ds = study.data[name]
    tr, va = good_micrographs(ds, ds.split("train")), good_micrographs(ds, ds.split("val"))
    return train_from_scratch(load_images(tr), truth_by_stem(ds, tr), ds.diameter_px, study.runs / out_name,
                              epochs=epochs, epoch_size=epoch_size, minibatch_size=minibatch,
                              val_images=load_images(va) or None, val_coords=truth_by_stem(ds, va) or None,
                              seed=study.seed)


def train_topaz_baselines(study: PickingStudy) -> dict[str, Path]:
    """Topaz trained from scratch on each training analog (Cryo-EMMAE §4.1's baseline) at the
    profile's schedule (``PickingSizes.topaz_*``); returns {analog: model file}."""
    pk = study.sizes.picking
    return {t: train_topaz(study, t, f"topaz_{t}", pk.topaz_epochs, pk.topaz_epoch_size, pk.topaz_minibatch)
            for t in study.train_sets}


def topaz_calibration_micrograph(ds: Dataset) -> tuple[Path, pd.DataFrame] | None:
    """The ONE annotated micrograph a Topaz-from-scratch model is calibrated on: the first good micrograph
    of the validation split (never trained on, never scored); None when the split has none."""
    val = good_micrographs(ds, ds.split("val"))
    return (val[0], ds.coordinates(val[0].stem)) if val else None


def topaz_scratch_thresholds(study: PickingStudy, topaz_models: Mapping[str, Path]) -> dict[str, float]:
    """{training analog: best-F1 threshold (overlap60) of its Topaz-from-scratch model on
    :func:`topaz_calibration_micrograph`}; :data:`TOPAZ_SCRATCH_THRESHOLD` with a warning where
    there is no such micrograph or no pick matches it (tiny profiles)."""
    out = {}
    for t, model in topaz_models.items():
        ds = study.data[t]
        ref = topaz_calibration_micrograph(ds)
        try:
            if ref is None:
                raise CryolibError("no good validation micrograph")
            picks = pick_with_model([ref[0]], model, ds.diameter_px, seed=study.seed)[ref[0].stem]
            out[t] = best_f1_threshold_on(picks, ref[1], ds.diameter_px, TOPAZ_SCRATCH)
        except CryolibError as err:
            log.warning("%s on %s: no calibrated threshold (%s); using %s", TOPAZ_SCRATCH, t, err,
                        TOPAZ_SCRATCH_THRESHOLD)
            out[t] = TOPAZ_SCRATCH_THRESHOLD
    return out


def calibrated_threshold(method: str, reference: tuple[Path, pd.DataFrame], diameter_px: float, seed: int = 0) -> float:
    """The score threshold of registry picker ``method`` (``blob``, ``topaz``) calibrated on ONE
    reference micrograph (best F1, overlap60). Where no threshold matches any reference particle,
    the method's documented default, with a warning (the study must still run on tiny profiles)."""
    picker = get_picker(method)
    try:
        thr = picker.calibrate(reference, diameter_px, seed=seed)
    except CryolibError as err:
        log.warning("%s: calibration on %s failed (%s); using the default threshold %s", method,
                    Path(reference[0]).name, err, picker.default_threshold)
        thr = None
    return float(picker.default_threshold if thr is None else thr)


def calibrated_thresholds(study: PickingStudy, method: str) -> dict[str, float]:
    """{training analog: :func:`calibrated_threshold` of ``method`` on that analog's reference micrograph}."""
    return {t: calibrated_threshold(method, reference_micrograph(study.data[t]), study.data[t].diameter_px, study.seed)
            for t in study.train_sets}


def _row(study: PickingStudy, method: str, trained_on: str, e: str, picks: Mapping[str, pd.DataFrame],
         threshold: float | None) -> dict:
    """One Figure 2 row: ``picks`` scored on analog ``e`` at ``threshold`` (None: all picks)."""
    s = score_picks(study.data[e], picks, study.scored[e], study.rule, threshold)
    return {"method": method, "trained_on": trained_on, "eval_set": e, "iou": s["mean_iou"], "recall": s["recall"],
            "precision": s["precision"], "f1": s["f1"], "tp": s["tp"], "fp": s["fp"], "fn": s["fn"],
            "threshold": math.nan if threshold is None else float(threshold), "rule": study.rule,
            "in_domain": trained_on == e}


def cross_dataset_table(study: PickingStudy, pickers: Mapping[str, CryoEMMAEPicker],
                        topaz_models: Mapping[str, Path] | None = None,
                        methods: Sequence[str] = FIG2_METHODS) -> pd.DataFrame:
    """Figure 2 of Cryo-EMMAE: one row per (method, training analog, evaluation analog).

    Columns: method, trained_on, eval_set, iou, recall, precision, f1, tp, fp, fn, threshold
    (the score threshold applied; NaN = every pick), rule, in_domain. Blob and Topaz (pretrained)
    are trained on nothing; their ``trained_on`` is the analog whose reference micrograph
    calibrated their threshold. Topaz (from scratch) is scored at :func:`topaz_scratch_thresholds`.
    """
    unknown = set(methods) - set(FIG2_METHODS)
    if unknown:
        raise CryolibError(f"unknown Figure 2 methods {sorted(unknown)}; choose from {', '.join(FIG2_METHODS)}")
    if TOPAZ_SCRATCH in methods and not topaz_models:
        raise CryolibError("Topaz (from scratch) needs topaz_models from train_topaz_baselines(study)")
    thresholds = {m: calibrated_thresholds(study, CALIBRATED[m]) for m in methods if m in CALIBRATED}
    scratch = topaz_scratch_thresholds(study, topaz_models) if TOPAZ_SCRATCH in methods else {}
    rows = []
    for e in study.eval_sets:
        d, paths = study.data[e].diameter_px, study.scored[e]
        for m, by_ref in thresholds.items():
            everything = pick_micrographs(CALIBRATED[m], paths, d, threshold=-math.inf, seed=study.seed, progress=False)
            rows += [_row(study, m, t, e, everything, by_ref[t]) for t in study.train_sets]
        for t in study.train_sets:
            if EMMAE in methods:
                picks = pick_micrographs("cryoemmae", paths, d, checkpoint=pickers[t], seed=study.seed, progress=False)
                rows.append(_row(study, EMMAE, t, e, picks, None))
            if TOPAZ_SCRATCH in methods:
                picks = pick_with_model(paths, topaz_models[t], d, seed=study.seed)
                rows.append(_row(study, TOPAZ_SCRATCH, t, e, picks, scratch[t]))
    order = {m: i for i, m in enumerate(FIG2_METHODS)}
    table = pd.DataFrame(rows)
    return table.sort_values("method", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def per_micrograph_f1(ds: Dataset, picks: Mapping[str, pd.DataFrame], paths: Sequence[Path],
                      rule: str = "overlap60") -> pd.DataFrame:
    """F1, precision, recall, tp, fp, fn of ``picks`` on each micrograph of ``paths`` (all picks)."""
    rows = []
    for p in paths:
        s = score_picks(ds, picks, [p], rule)
        rows.append({"micrograph": p.stem, **{k: s[k] for k in ("f1", "precision", "recall", "tp", "fp", "fn")}})
    return pd.DataFrame(rows)


def median_f1_micrograph(table: pd.DataFrame) -> str:
    """The micrograph at the median F1 of ``table`` (columns micrograph, f1).

    With an even count, the lower of the two middle ones; ties in F1 are broken by name, so the
    choice is deterministic.
    """
    if table.empty:
        raise CryolibError("no scored micrographs to choose the Figure 1 micrograph from")
    order = table.sort_values(["f1", "micrograph"], kind="stable").reset_index(drop=True)
    return str(order["micrograph"].iloc[(len(order) - 1) // 2])


def fig1_example(study: PickingStudy, pickers: Mapping[str, CryoEMMAEPicker]) -> dict:
    """The Figure 1 micrograph and its pipeline stages, chosen by a rule, not by hand.

    Rule: among the scored micrographs of the FIRST training analog, the one with the median F1
    under that analog's Cryo-EMMAE picker (:func:`median_f1_micrograph`): a typical micrograph,
    neither the best nor a failure. Returns {"dataset", "path", "image", "picks", "stages",
    "truth", "diameter_px", "f1_table"} (stages: :meth:`CryoEMMAEPicker.pick` with ``return_stages``).
    """
    t0 = study.train_sets[0]
    ds, paths = study.data[t0], study.scored[t0]
    picks = pick_micrographs("cryoemmae", paths, ds.diameter_px, checkpoint=pickers[t0], seed=study.seed,
                             progress=False)
    f1 = per_micrograph_f1(ds, picks, paths, study.rule)
    stem = median_f1_micrograph(f1)
    path = next(p for p in paths if p.stem == stem)
    image = read_micrograph(path)[0]
    chosen, stages = pickers[t0].pick(image, ds.diameter_px, return_stages=True)
    return {"dataset": t0, "path": path, "image": image, "picks": chosen, "stages": stages,
            "truth": ds.coordinates(stem), "diameter_px": ds.diameter_px, "f1_table": f1}


def _mean_by(table: pd.DataFrame, key: str, value: str) -> dict[str, float]:
    return {str(k): float(v) for k, v in table.groupby(key)[value].mean().items()}


def headline_metrics(fig2: pd.DataFrame, gen: pd.DataFrame, ablation: pd.DataFrame, topaz_length: pd.DataFrame,
                     rule: str) -> dict:
    """Notebook 03's ``metrics.json`` section.

    Means per method over the Figure 2 rows and per generalisation-check method; the ablation's
    mean F1 per setting; the Topaz schedule F1s; and the headline claim
    ``shipped_beats_blob_and_topaz``: the shipped Cryo-EMMAE picker with one annotated micrograph
    has a higher mean generalisation F1 than both calibrated peers (blob and Topaz pretrained).
    """
    gen_f1 = _mean_by(gen, "method", "f1")
    missing = {GEN_EMMAE_REF, GEN_BLOB, GEN_TOPAZ} - set(gen_f1)
    if missing:
        raise CryolibError(f"the generalisation table lacks methods {sorted(missing)}")
    return {
        "rule": rule,
        "mean_f1": _mean_by(fig2, "method", "f1"), "mean_precision": _mean_by(fig2, "method", "precision"),
        "mean_recall": _mean_by(fig2, "method", "recall"), "mean_iou": _mean_by(fig2, "method", "iou"),
        "generalisation_f1": gen_f1,
        "picker_ablation_mean_f1": _mean_by(ablation, "setting", "f1"),
        "topaz_training_length_f1": {str(k): float(v) for k, v in
                                     topaz_length.set_index("schedule")["f1_calibrated"].items()},
        "shipped_beats_blob_and_topaz": bool(gen_f1[GEN_EMMAE_REF] > max(gen_f1[GEN_BLOB], gen_f1[GEN_TOPAZ])),
    }


def f1_summary(fig2: pd.DataFrame) -> pd.DataFrame:
    """Mean IoU, recall, precision and F1 per method over every Figure 2 row."""
    return fig2.groupby("method", sort=False)[["iou", "recall", "precision", "f1"]].mean()


__all__ = ["EMMAE", "TOPAZ_SCRATCH", "TOPAZ_PRETRAINED", "BLOB", "FIG2_METHODS", "TOPAZ_SCRATCH_THRESHOLD",
           "GEN_EMMAE_REF", "GEN_EMMAE_DEFAULT", "GEN_BLOB", "GEN_TOPAZ", "GEN_METHODS",
           "PickingStudy", "load_study", "study_from_datasets", "scored_summary", "reference_micrograph",
           "mae_checkpoint", "fit_pickers", "picker_summary", "train_topaz", "train_topaz_baselines",
           "topaz_calibration_micrograph", "topaz_scratch_thresholds", "calibrated_threshold", "calibrated_thresholds",
           "cross_dataset_table", "per_micrograph_f1", "median_f1_micrograph", "fig1_example", "headline_metrics",
           "f1_summary"]
