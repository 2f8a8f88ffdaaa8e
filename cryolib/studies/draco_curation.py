"""Notebook 06's study: micrograph curation by linear probing (DRACO 2024 §5.3, Table 4).

* Data: :mod:`cryolib.studies.curation_set` (re-exported here for notebook 06): the balanced
  curation set of simulated analogs, held-out :data:`TEST_ANALOGS`, and the unseen-settings set.
* Methods (:func:`run_methods`): linear heads (:class:`cryolib.curate.probe.LinearProbe`) on the
  frozen DRACO-B, DRACO-L and plain-MAE encoders (``draco_pretraining.draco_checkpoints``), on
  image statistics, on DRACO-B's embedding with the statistics, and with the particle coverage too (the
  shipped head); a ResNet18 from scratch. Miffi cannot run here: its paper row is shown. The linear heads
  train on the simulator's quality classes (good and the six defects): each is a K-class linear
  layer with P(accept) = P(good) (why: :mod:`cryolib.curate.probe`). The ResNet18 runs twice: on
  accept/reject labels as in the paper (:data:`RESNET`, the row the claims test) and on the same
  quality classes as the linear heads (:data:`RESNET_CLASSES`), so a reader sees whether the labels
  or the features make the difference.
* Settings no training saw (:func:`unseen_settings_results`): every method scored on the registry's
  generalisation analogs (lower dose, other pixel sizes, ice gradients, carbon edges, other particle
  families), one session per analog. The heads with image statistics take every feature relative to
  its session's median (:mod:`cryolib.curate.features`): the mean counts scale with dose × pixel
  area, and the embedding and the power spectrum move with pixel size, dose and defocus range, all
  settings of a session, not qualities of a micrograph. The encoder-only probes stay the paper's
  (absolute features).
* Tables: :func:`table4` (ours beside the paper's Table 4), :func:`per_class_results` (per defect
  class), :func:`claims_table`; :func:`curation_metrics` for one checkpoint (Table 5's ablation).
* :func:`ship_curation_head`: the head file and its model card from the same run. The shipped head
  is the DRACO-B + image-statistics + particle-coverage one: on our analogs the embedding does not see
  the spectral defects (severe drift takes high-frequency power away, a carbon film adds it) that the
  statistics measure directly, and neither sees an empty micrograph, which differs from a good one
  only in its particles; the particle coverage (:mod:`cryolib.studies.curation_particles`, DRACO's
  detector on the same backbone) counts them. ``cryolib curate`` then needs the particle diameter.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from cryolib.core.errors import CryolibError
from cryolib.curate.features import N_BANDS
from cryolib.curate.head import DEFAULT_ENCODER, CurationHead, encoder_fingerprint, load_encoder
from cryolib.curate.probe import METRICS, LinearProbe, classification_metrics, per_class_table
from cryolib.curate.resnet import train_resnet
from cryolib.curate.ship import ship_curation_head  # noqa: F401  (re-exported for notebook 06)
from cryolib.studies.curation_particles import particles_spec
from cryolib.studies.curation_set import (  # noqa: F401  (re-exported for notebook 06 and the tests)
    CURATION_SIZES,
    DEFECT_CLASSES,
    TEST_ANALOGS,
    TRAIN_ANALOGS,
    UNSEEN_SETTINGS,
    CurationData,
    CurationSizes,
    analog_rows,
    build_curation_analog,
    build_curation_set,
    class_examples,
    class_plan,
    curation_sizes,
    set_summary,
    unseen_settings_set,
)

log = logging.getLogger(__name__)

PROBE_C = 1.0  # inverse L2 strength of every linear probe

#: DRACO Table 4 (accuracy, precision, recall, F1), by our method name.
PAPER_TABLE4 = {
    "DRACO-B": (0.963, 0.976, 0.953, 0.964),
    "DRACO-L": (0.983, 0.976, 0.992, 0.984),
    "MAE (linear probe)": (0.904, 0.927, 0.892, 0.909),
    "ResNet18 (from scratch)": (0.938, 0.923, 0.960, 0.940),
    "Miffi (reported)": (0.836, 0.899, 0.845, 0.871),
}
ENCODER_METHODS = {"draco-b": "DRACO-B", "draco-l": "DRACO-L", "mae": "MAE (linear probe)"}
RESNET, STATS, MIFFI = "ResNet18 (from scratch)", "Image statistics (linear probe)", "Miffi (reported)"
DRACO_STATS = "DRACO-B + image statistics (linear probe)"
DRACO_PARTICLES = "DRACO-B + image statistics + particle coverage (linear probe)"  # the shipped head
RESNET_CLASSES = "ResNet18 (from scratch, quality classes)"


def curation_encoders(profile: str, runs_root: str | os.PathLike | None = None) -> dict[str, Path]:
    """{"mae", "draco-b", "draco-l": checkpoint} written by notebook 04; raises when one is missing."""
    from cryolib.studies.draco_pretraining import draco_checkpoints

    found = {k: Path(v) for k, v in draco_checkpoints(profile, runs_root).items() if k in ENCODER_METHODS}
    missing = [f"{k} ({p})" for k, p in found.items() if not p.is_file()] + sorted(set(ENCODER_METHODS) - set(found))
    if missing:
        raise CryolibError(f"DRACO/MAE checkpoints missing: {', '.join(missing)}; run notebook 04 (DRACO pretraining) "
                           f"at profile {profile!r} first")
    return found


def shipping_card(data: CurationData, encoder_key: str = "draco-b") -> dict:
    """What the shipped head was trained on (for its model card)."""
    return {"encoder_key": encoder_key, "train_analogs": sorted(set(data.rows("train")["analog"])),
            "test_analogs": sorted(set(data.rows("test")["analog"])), "n_train": int(len(data.rows("train"))),
            "micrograph_px": data.sizes.micrograph_px, "labels": "simulator quality classes (good vs 6 defects)"}


# --------------------------------------------------------------------------------------------- methods


def encoder_head(checkpoint: str | os.PathLike, data: CurationData, seed: int = 0, name: str = "probe",
                 with_statistics: bool = False, with_particles: bool = False) -> CurationHead:
    """A linear head on the frozen encoder of ``checkpoint`` (a path or ``asset:<file>``), with the image
    statistics beside the embedding when ``with_statistics`` and the particle coverage after them when
    ``with_particles`` (session-relative, like the statistics), trained on the training analogs' quality classes."""
    ref = str(checkpoint)
    model, _ = load_encoder(ref)
    features = ({"kind": "encoder+image_statistics", "max_tiles": data.sizes.max_tiles, "n_bands": N_BANDS,
                 "session_relative": "all"} if with_statistics else {"kind": "encoder", "max_tiles": data.sizes.max_tiles})
    if with_particles:
        features["particles"] = particles_spec()
    head = CurationHead(name=name, probe=LinearProbe(PROBE_C), features=features,
                        encoder=ref if ref.startswith("asset:") else str(Path(ref).resolve()),
                        encoder_sha256=encoder_fingerprint(model))
    coverage = data.coverage("train", features["particles"]) if with_particles else None
    return head.fit(data.images("train"), data.classes("train"), data.sessions("train"), seed, coverage)


def split_scores(head: CurationHead, data: CurationData, split: str = "test") -> np.ndarray:
    """P(accept) of a head on one split, the split's analogs as sessions (and its particle coverage when the
    head uses it)."""
    coverage = data.coverage(split, head.features["particles"]) if head.needs_coverage else None
    return head.scores(data.images(split), data.sessions(split), coverage)


def stats_head(data: CurationData, seed: int = 0) -> CurationHead:
    """A linear head on :func:`cryolib.curate.features.image_statistics`, trained on the training analogs' classes."""
    head = CurationHead(name="image-statistics", probe=LinearProbe(PROBE_C),
                        features={"kind": "image_statistics", "n_bands": N_BANDS, "session_relative": "all"})
    return head.fit(data.images("train"), data.classes("train"), data.sessions("train"), seed)


def evaluate_scores(scores: np.ndarray, data: CurationData, threshold: float = 0.5) -> dict[str, Any]:
    """Table 4 metrics and the per-class table of test-set scores P(accept)."""
    accepted = np.asarray(scores) >= threshold
    return {**classification_metrics(data.accept("test").astype(bool), accepted),
            "per_class": per_class_table(data.classes("test"), accepted)}


def curation_metrics(checkpoint: str | os.PathLike, curation_data: CurationData, seed: int = 0) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 (and ``per_class``) of a linear probe on one checkpoint's
    encoder, trained on the training analogs and scored on the held-out ones (Tables 4 and 5)."""
    head = encoder_head(checkpoint, curation_data, seed)
    return evaluate_scores(split_scores(head, curation_data), curation_data)


def run_methods(data: CurationData, encoders: Mapping[str, str | os.PathLike], seed: int = 0) -> dict[str, dict]:
    """Every method of Table 4 that runs here -> {method: {"head" or "model", "scores", metrics, per_class}}.

    ``encoders``: {"draco-b" | "draco-l" | "mae": checkpoint} (:data:`ENCODER_METHODS`); with "draco-b",
    also DRACO-B with the image statistics (:data:`DRACO_STATS`) and with the particle coverage too
    (:data:`DRACO_PARTICLES`, the shipped head's kind).
    """
    unknown = sorted(set(encoders) - set(ENCODER_METHODS))
    if unknown:
        raise CryolibError(f"unknown encoder keys {unknown}; use {sorted(ENCODER_METHODS)}")
    heads = {ENCODER_METHODS[key]: encoder_head(ckpt, data, seed, name=f"{key}-curation")
             for key, ckpt in sorted(encoders.items(), key=lambda kv: list(ENCODER_METHODS).index(kv[0]))}
    if "draco-b" in encoders:
        heads[DRACO_STATS] = encoder_head(encoders["draco-b"], data, seed, name="draco-b+statistics-curation",
                                          with_statistics=True)
        heads[DRACO_PARTICLES] = encoder_head(encoders["draco-b"], data, seed, name="draco-b+particles-curation",
                                              with_statistics=True, with_particles=True)
    heads[STATS] = stats_head(data, seed)
    out = {}
    for method, head in heads.items():
        scores = split_scores(head, data)
        out[method] = {"head": head, "scores": scores, **evaluate_scores(scores, data)}
    for method, labels in ((RESNET, data.accept("train")), (RESNET_CLASSES, data.classes("train"))):
        resnet = train_resnet(data.images("train"), labels, data.sizes.resnet_px, data.sizes.resnet_epochs, seed=seed)
        scores = resnet.scores(data.images("test"))
        out[method] = {"model": resnet, "scores": scores, **evaluate_scores(scores, data)}
    return out


def shipping_head(data: CurationData, results: Mapping[str, Mapping[str, Any]], install: bool = False, seed: int = 0
                  ) -> tuple[CurationHead, pd.DataFrame, pd.DataFrame]:
    """The head to ship, its evaluation row and per-class table: the DRACO-B + image-statistics + particle-coverage
    head from :func:`run_methods` (:data:`DRACO_PARTICLES`); with ``install``, the same head retrained on the
    shipped DRACO model (``asset:draco_default.pt``, which must exist)."""
    if install:
        head = encoder_head(DEFAULT_ENCODER, data, seed, name="draco-curation", with_statistics=True,
                            with_particles=True)
        res: Mapping[str, Any] = evaluate_scores(split_scores(head, data), data)
    else:
        res = results[DRACO_PARTICLES]
        head = dataclasses.replace(res["head"], name="draco-curation")
    held_out = ", ".join(sorted(set(data.rows("test")["analog"])))
    evaluation = pd.DataFrame([{"head": head.name, "encoder": head.encoder, "test_analogs": held_out,
                                **{m: float(res[m]) for m in METRICS}}])
    return head, evaluation, res["per_class"]


def unseen_settings_results(results: Mapping[str, Mapping[str, Any]], unseen: CurationData) -> pd.DataFrame:
    """Each method of :func:`run_methods` on :func:`unseen_settings_set` -> method, micrographs, good, bad,
    good_accepted, bad_rejected (shares), accuracy, precision, recall, f1. One session per analog."""
    good = unseen.accept("test").astype(bool)
    rows = []
    for method, res in results.items():
        scores = split_scores(res["head"], unseen) if "head" in res else res["model"].scores(unseen.images("test"))
        accepted = np.asarray(scores) >= 0.5
        rows.append({"method": method, "micrographs": len(good), "good": int(good.sum()), "bad": int((~good).sum()),
                     "good_accepted": float(accepted[good].mean()) if good.any() else float("nan"),
                     "bad_rejected": float((~accepted[~good]).mean()) if (~good).any() else float("nan"),
                     **classification_metrics(good, accepted)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------- tables


def table4(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Ours beside DRACO's Table 4: method, source, accuracy … f1, paper_accuracy … paper_f1.

    Miffi's row is the paper's only (not run: it needs its own pretrained model and data).
    """
    rows = []
    for method, res in results.items():
        paper = PAPER_TABLE4.get(method, (np.nan,) * 4)
        rows.append({"method": method, "source": "run here", **{m: float(res[m]) for m in METRICS},
                     **{f"paper_{m}": v for m, v in zip(METRICS, paper)}})
    rows.append({"method": MIFFI, "source": "reported (not run)", **{m: np.nan for m in METRICS},
                 **{f"paper_{m}": v for m, v in zip(METRICS, PAPER_TABLE4[MIFFI])}})
    return pd.DataFrame(rows)


def per_class_results(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Long table: method, class, n, accepted, rejected, correct (good: accepted share; defect: rejected share)."""
    return pd.concat([res["per_class"].assign(method=method) for method, res in results.items()], ignore_index=True
                     )[["method", "class", "n", "accepted", "rejected", "correct"]]


def _best_draco(t4: pd.DataFrame) -> pd.Series:
    draco = t4[t4["method"].isin(["DRACO-B", "DRACO-L"]) & t4["f1"].notna()]
    if draco.empty:
        raise CryolibError("Table 4 has no DRACO row; run_methods needs the draco-b/draco-l encoders")
    return draco.loc[draco["f1"].idxmax()]


def _f1(t4: pd.DataFrame, method: str) -> float:
    row = t4[t4["method"] == method]
    return float(row["f1"].iloc[0]) if len(row) and row["f1"].notna().iloc[0] else float("nan")


def claims_table(t4: pd.DataFrame, target_f1: float = 0.95) -> pd.DataFrame:
    """Each Table 4 claim of the paper, tested on our numbers: claim, paper_statement, our_numbers, supported."""
    best = _best_draco(t4)
    ran = t4[t4["source"] == "run here"]
    others = ran[~ran["method"].isin(["DRACO-B", "DRACO-L", DRACO_STATS, DRACO_PARTICLES])]
    beats_all = bool(all((best[m] >= others[m]).all() for m in METRICS))
    f1b, f1l, f1r, f1m, f1s, f1h, f1p = (_f1(t4, m) for m in ("DRACO-B", "DRACO-L", RESNET, ENCODER_METHODS["mae"],
                                                               STATS, DRACO_STATS, DRACO_PARTICLES))
    rows = [
        ("DRACO is best on all four metrics", "DRACO reports the best results on all four classification metrics (Table 4)",
         f"best DRACO ({best['method']}): " + ", ".join(f"{m} {best[m]:.3f}" for m in METRICS)
         + "; best other: " + ", ".join(f"{m} {others[m].max():.3f}" for m in METRICS), beats_all),
        ("DRACO beats a ResNet18 trained from scratch", "ResNet faces difficulties separating noise from signal (§5.3)",
         f"F1 {best['method']} {best['f1']:.3f} vs ResNet18 {f1r:.3f}", best["f1"] > f1r),
        ("DRACO beats the plain MAE's linear probe", "MAE faces difficulties; DRACO extracts global information better (§5.3)",
         f"F1 {best['method']} {best['f1']:.3f} vs MAE {f1m:.3f}", best["f1"] > f1m),
        ("The larger DRACO curates better", "DRACO-L 0.984 F1 vs DRACO-B 0.964 (Table 4, §5.4)",
         f"F1 DRACO-L {f1l:.3f} vs DRACO-B {f1b:.3f}", f1l >= f1b),
        (f"DRACO reaches F1 >= {target_f1} on held-out analogs", "DRACO-B F1 0.964 on the paper's test set (Table 4)",
         f"F1 {best['method']} {best['f1']:.3f} on the held-out analogs", best["f1"] >= target_f1),
    ]
    table = pd.DataFrame(rows, columns=["claim", "paper_statement", "our_numbers", "supported"])
    table["supported"] = table["supported"].map({True: "yes", False: "no"})
    extra = pd.DataFrame([
        {"claim": "A pretrained encoder beats simple image statistics (our question, not the paper's)",
         "paper_statement": "not in the paper",
         "our_numbers": f"F1 {best['method']} {best['f1']:.3f} vs image statistics {f1s:.3f}",
         "supported": "yes" if best["f1"] > f1s else "no"},
        {"claim": "DRACO's embedding adds to the image statistics (our question, not the paper's)",
         "paper_statement": "not in the paper",
         "our_numbers": f"F1 DRACO-B + image statistics {f1h:.3f} vs image statistics alone {f1s:.3f}",
         "supported": "yes" if f1h > f1s else ("no" if np.isfinite(f1h) else "not testable")},
        {"claim": f"The shipped head (DRACO-B + image statistics + particle coverage) reaches F1 >= {target_f1} "
                  "(our question)",
         "paper_statement": "not in the paper",
         "our_numbers": f"F1 {f1p:.3f} on the held-out analogs",
         "supported": "yes" if f1p >= target_f1 else ("no" if np.isfinite(f1p) else "not testable")},
        {"claim": "The particle coverage adds to DRACO-B and the image statistics (our question, not the paper's)",
         "paper_statement": "not in the paper",
         "our_numbers": f"F1 with the coverage {f1p:.3f} vs without {f1h:.3f}",
         "supported": "yes" if f1p > f1h else ("no" if np.isfinite(f1p) else "not testable")},
        {"claim": "Miffi (reported, not run)",
         "paper_statement": "Miffi lacks generalisability on the test set: F1 0.871 (Table 4)",
         "our_numbers": "not run: Miffi's general model and its 45,000 training micrographs are not available here",
         "supported": "not testable"}])
    return pd.concat([table, extra], ignore_index=True)


def headline_metrics(t4: pd.DataFrame, claims: pd.DataFrame, per_class: pd.DataFrame, data: CurationData,
                     unseen: pd.DataFrame | None = None) -> dict:
    """Numbers for metrics.json: F1 and accuracy per method, the shipped head's F1 (NaN without its row),
    per-class correct share, set sizes, claims, and F1 per method on settings no training saw (``unseen``,
    from :func:`unseen_settings_results`; {} without it)."""
    ran = t4[t4["source"] == "run here"].set_index("method")
    best = _best_draco(t4)
    return {"f1": ran["f1"].to_dict(), "accuracy": ran["accuracy"].to_dict(),
            "unseen_settings_f1": {} if unseen is None else unseen.set_index("method")["f1"].to_dict(),
            "best_draco": str(best["method"]), "best_draco_f1": float(best["f1"]),
            "draco_beats_resnet": bool(best["f1"] > _f1(t4, RESNET)),
            "shipped_head_f1": _f1(t4, DRACO_PARTICLES),
            "per_class_correct": {m: g.set_index("class")["correct"].to_dict() for m, g in per_class.groupby("method")},
            "n_train": int((data.table["split"] == "train").sum()), "n_test": int((data.table["split"] == "test").sum()),
            "claims_supported": int((claims["supported"] == "yes").sum()),
            "claims_tested": int(claims["supported"].isin(["yes", "no"]).sum())}
