"""Notebook 03's study, part 2: the shipped picker, its generalisation check and ablation, and Topaz's schedule.

* :func:`fit_joint_picker`: the picker ``cryolib pick`` ships: the MAE trained on all four
  training analogs (``mae_all4``), k-means on all four, the first training analog's reference.
* :func:`generalisation_check`: that picker, blob and Topaz (pretrained) on analogs made with
  settings the training analogs never use. Per analog the only label is ONE annotated micrograph
  (:func:`generalisation_reference`), which is not scored.
* :func:`picker_ablation`: our two picker additions against the paper/repository setting.
* :func:`ship_checkpoint`: the picker file and its model card from the same run, optionally
  installed as the package default (``cryolib/assets/cryoemmae_default.{pt,md}``).
* :func:`topaz_training_length`: is Topaz-from-scratch short of training, or of data?
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from cryolib.core.atomic import install_files
from cryolib.core.errors import CryolibError
from cryolib.core.model_card import write_model_card
from cryolib.evaluate.scoring import best_threshold_scores, good_micrographs, score_picks, truth_by_stem
from cryolib.io.datasets import Dataset
from cryolib.pick import pick_micrographs
from cryolib.pick.cryoemmae import DEFAULT_CHECKPOINT, CryoEMMAEPicker, fit_picker, load_picker, save_picker
from cryolib.pick.topaz import pick_with_model, validation_curve
from cryolib.studies.cryoemmae_picking import (  # noqa: F401  (GEN_* re-exported)
    GEN_BLOB,
    GEN_EMMAE_DEFAULT,
    GEN_EMMAE_REF,
    GEN_METHODS,
    GEN_TOPAZ,
    topaz_scratch_thresholds,
    PickingStudy,
    calibrated_threshold,
    mae_checkpoint,
    reference_micrograph,
    train_topaz,
)

log = logging.getLogger(__name__)

#: The picker settings of the Cryo-EMMAE paper and repository (raw tokens; cluster with most tokens inside).
PAPER_SETTING = {"standardize_tokens": False, "reference_cluster_rule": "count"}
#: The longer Topaz schedule: x epochs, x minibatches per epoch, x crops per minibatch (25x the crops).
TOPAZ_LONG_SCHEDULE = (5, 2.5, 2)
ASSETS_DIR = DEFAULT_CHECKPOINT.parent
SHIPPED_NAME = DEFAULT_CHECKPOINT.stem


def fit_joint_picker(study: PickingStudy, overrides: Mapping[str, Any] | None = None) -> CryoEMMAEPicker:
    """The joint picker: ``mae_all4`` with k-means on every training analog's training split, the
    particle cluster named by the first training analog's :func:`reference_micrograph`.
    ``overrides``: :class:`cryolib.pick.cluster.PickerConfig` fields (e.g. :data:`PAPER_SETTING`)."""
    ref_path, ref_coords = reference_micrograph(study.data[study.train_sets[0]])
    return fit_picker(mae_checkpoint(study, "all4"), {t: study.data[t].split("train") for t in study.train_sets},
                      ref_path, ref_coords, {t: study.data[t].diameter_px for t in study.train_sets},
                      seed=study.seed, overrides=overrides)


def shipping_card(study: PickingStudy) -> dict[str, Any]:
    """The model card stored in the shipped picker file: profile, seed, training analogs, reference micrograph."""
    return {"profile": study.profile, "seed": study.seed, "train_sets": list(study.train_sets),
            "reference_micrograph": reference_micrograph(study.data[study.train_sets[0]])[0].name}


def as_shipped(picker: CryoEMMAEPicker) -> CryoEMMAEPicker:
    """The picker exactly as its picker file will hold it (saved and read back), so the
    generalisation check measures the shipped weights and k-means centres, not the in-memory fit."""
    with tempfile.TemporaryDirectory() as tmp:
        return load_picker(save_picker(Path(tmp) / "picker.pt", picker))


def generalisation_reference(ds: Dataset) -> tuple[tuple[Path, pd.DataFrame], list[Path]]:
    """((reference path, its coordinates), scored paths) of a generalisation analog: the first good
    micrograph is the ONE annotated micrograph; the other good micrographs are scored."""
    good = good_micrographs(ds, list(ds.micrographs))
    if len(good) < 2:
        raise CryolibError(f"{ds.name} needs at least 2 good micrographs (one annotated, one scored); "
                           f"it has {len(good)}: rebuild it with more micrographs")
    return (good[0], ds.coordinates(good[0].stem)), good[1:]


def generalisation_check(study: PickingStudy, picker: CryoEMMAEPicker) -> pd.DataFrame:
    """Every method on every generalisation analog, given its diameter and ONE annotated micrograph.

    Cryo-EMMAE (``picker``, as shipped) re-names its particle cluster from the reference, or keeps the
    shipped one (``default reference``); blob and Topaz (pretrained) calibrate their threshold on
    it (each analog picked once with every score; the calibrated threshold applied at scoring).
    One row per (dataset, method): micrographs, reference, threshold, precision, recall, f1, iou, rule.
    """
    shipped = as_shipped(picker)
    rows = []
    for g in study.gen_sets:
        ds = study.data[g]
        ref, rest = generalisation_reference(ds)
        d, seed = ds.diameter_px, study.seed
        runs = {  # method -> (picks, threshold applied at scoring; None = every pick)
            GEN_EMMAE_REF: (pick_micrographs("cryoemmae", rest, d, checkpoint=shipped, reference=ref, seed=seed,
                                             progress=False), None),
            GEN_EMMAE_DEFAULT: (pick_micrographs("cryoemmae", rest, d, checkpoint=shipped, seed=seed, progress=False),
                                None),
        }
        for method, name in ((GEN_BLOB, "blob"), (GEN_TOPAZ, "topaz")):
            runs[method] = (pick_micrographs(name, rest, d, threshold=-math.inf, seed=seed, progress=False),
                            calibrated_threshold(name, ref, d, seed))
        for method, (picks, thr) in runs.items():
            s = score_picks(ds, picks, rest, study.rule, thr)
            rows.append({"dataset": g, "method": method, "micrographs": len(rest), "reference": ref[0].stem,
                         "threshold": math.nan if thr is None else thr, "precision": s["precision"],
                         "recall": s["recall"], "f1": s["f1"], "iou": s["mean_iou"], "rule": study.rule})
    return pd.DataFrame(rows)


def picker_ablation(study: PickingStudy, settings: Mapping[str, CryoEMMAEPicker]) -> pd.DataFrame:
    """Each picker of ``settings`` ({label: picker}) on every Figure 2 analog (its scored micrographs)
    and every generalisation analog (all good micrographs but the reference), with the picker's own
    (training) reference only. One row per (setting, dataset): precision, recall, f1, rule."""
    rows = []
    for label, p in settings.items():
        for e in dict.fromkeys(study.eval_sets + study.gen_sets):  # an analog in both roles is scored once
            ds = study.data[e]
            paths = study.scored[e] if e in study.scored else generalisation_reference(ds)[1]
            picks = pick_micrographs("cryoemmae", paths, ds.diameter_px, checkpoint=p, seed=study.seed, progress=False)
            s = score_picks(ds, picks, paths, study.rule)
            rows.append({"setting": label, "dataset": e, "precision": s["precision"], "recall": s["recall"],
                         "f1": s["f1"], "rule": study.rule})
    return pd.DataFrame(rows)


def ablation_f1(ablation: pd.DataFrame) -> pd.DataFrame:
    """The ablation's F1 as a dataset x setting table, with a ``mean`` row."""
    table = ablation.pivot(index="dataset", columns="setting", values="f1")
    table.loc["mean"] = table.mean()
    return table


def ship_checkpoint(picker: CryoEMMAEPicker, gen_table: pd.DataFrame, out_dir: str | os.PathLike,
                    extra_card: Mapping[str, Any] | None = None, install: bool = False,
                    name: str = SHIPPED_NAME, assets_dir: str | os.PathLike = ASSETS_DIR, notes: str = "") -> Path:
    """Write ``out_dir/<name>.pt`` (the picker file) and ``out_dir/<name>.md`` (its model card,
    with ``gen_table`` as the measured evaluation) from the same run; return the picker file.

    ``install=True`` also copies both into ``assets_dir`` (the package's
    ``cryolib/assets/cryoemmae_default.{pt,md}``, what ``cryolib pick`` uses without
    ``--checkpoint``), staged and renamed so the pair is never half replaced.
    """
    if gen_table.empty:
        raise CryolibError("ship_checkpoint needs the generalisation table to write the model card; "
                           "run generalisation_check first")
    out = Path(out_dir)
    pt = save_picker(out / f"{name}.pt", picker, extra_card=extra_card)
    md = write_model_card(pt, pt.with_suffix(".md"), gen_table, notes)
    if install:
        install_files([pt, md], Path(assets_dir))
        log.info("installed %s and %s into %s", pt.name, md.name, assets_dir)
    return pt


def long_schedule(epochs: int, epoch_size: int, minibatch: int,
                  multipliers: tuple[float, float, float] = TOPAZ_LONG_SCHEDULE) -> tuple[int, int, int]:
    """The longer Topaz schedule: each of (epochs, minibatches per epoch, crops per minibatch) times
    its multiplier, rounded; at least 1 each."""
    return tuple(max(1, round(v * m)) for v, m in zip((epochs, epoch_size, minibatch), multipliers))  # type: ignore[return-value]


def topaz_training_length(study: PickingStudy, profile_model: Path,
                          multipliers: tuple[float, float, float] = TOPAZ_LONG_SCHEDULE
                          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Topaz from scratch on the first training analog at the profile's schedule (``profile_model``,
    from :func:`train_topaz_baselines`) and at :func:`long_schedule`, scored on its test split.

    Returns (table, curves). Table: one row per schedule with the best validation AUPRC and its
    epoch, F1/precision/recall at the threshold calibrated on one validation micrograph (Figure 2's
    operating point, :func:`~cryolib.studies.cryoemmae_picking.topaz_scratch_thresholds`) and the oracle F1
    at the best threshold in hindsight. Curves: schedule, label, crops_seen, auprc per validated epoch.
    """
    t = study.train_sets[0]
    ds, paths = study.data[t], study.scored[t]
    pk = study.sizes.picking
    schedules = {"profile": (pk.topaz_epochs, pk.topaz_epoch_size, pk.topaz_minibatch)}
    schedules[f"{round(math.prod(multipliers))}x longer"] = long_schedule(*schedules["profile"], multipliers)
    models = {"profile": Path(profile_model)}
    tr = good_micrographs(ds, ds.split("train"))
    rows, curves = [], []
    for label, (ep, es, mb) in schedules.items():
        if label not in models:
            models[label] = train_topaz(study, t, f"topaz_long_{t}", ep, es, mb)
        curve = validation_curve(models[label].parent)
        curves.append(pd.DataFrame({"schedule": label, "label": f"{label}: {ep} epochs x {es} minibatches x {mb} crops",
                                    "crops_seen": curve["epoch"] * es * mb, "auprc": curve["auprc"]}))
        picks = pick_with_model(paths, models[label], ds.diameter_px)
        threshold = topaz_scratch_thresholds(study, {t: models[label]})[t]
        s = score_picks(ds, picks, paths, study.rule, threshold)
        b = best_threshold_scores(ds, picks, paths, study.rule)
        rows.append({"schedule": label, "epochs": ep, "minibatches_per_epoch": es, "crops_per_minibatch": mb,
                     "training_micrographs": len(tr), "training_particles": sum(len(c) for c in truth_by_stem(ds, tr).values()),
                     "best_val_auprc": curve["auprc"].max() if len(curve) else math.nan,
                     "best_epoch": curve.loc[curve["auprc"].idxmax(), "epoch"] if len(curve) and curve["auprc"].notna().any() else None,
                     "threshold": threshold, "f1_calibrated": s["f1"], "precision": s["precision"],
                     "recall": s["recall"],
                     "oracle_f1": b["f1"], "oracle_threshold": b["threshold"], "rule": study.rule})
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)
