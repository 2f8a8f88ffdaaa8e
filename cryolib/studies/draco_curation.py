"""Notebook 06's study: micrograph curation by linear probing (DRACO 2024 §5.3, Table 4).

* Data (:func:`build_curation_set`): a balanced curation set simulated for this study, in the
  CryoPPP layout under ``<data>/<profile>/curation/<analog>/``. Each analog gets ``n_good`` good
  micrographs and ``n_per_defect`` of each quality defect of the simulator (empty, thick ice,
  crystalline ice, contamination, severe drift, carbon only), in a fixed order, each micrograph
  seeded on its own (resumable: a finished micrograph is never redone). The registry's
  ``bad_fraction`` draws defects at random, which at a few dozen micrographs per analog leaves
  some defect classes empty; a fixed plan does not. Probes train on :data:`TRAIN_ANALOGS` and
  are scored on :data:`TEST_ANALOGS`, particle families the training analogs lack (held out).
* Methods (:func:`run_methods`): linear heads (:class:`cryolib.curate.probe.LinearProbe`) on the
  frozen DRACO-B, DRACO-L and plain-MAE encoders (``draco_pretraining.draco_checkpoints``), on
  image statistics, and on DRACO-B's embedding with the image statistics beside it (the shipped
  head); a ResNet18 from scratch. Miffi cannot run here: its paper row is shown. The linear heads
  train on the simulator's quality classes (good and the six defects): each is a K-class linear
  layer with P(accept) = P(good) (why: :mod:`cryolib.curate.probe`). The ResNet18 runs twice: on
  accept/reject labels as in the paper (:data:`RESNET`, the row the claims test) and on the same
  quality classes as the linear heads (:data:`RESNET_CLASSES`), so a reader sees whether the labels
  or the features make the difference.
* Settings no training saw (:func:`unseen_settings_set`, :func:`unseen_settings_results`): every
  method scored on the registry's generalisation analogs (lower dose, other pixel sizes, ice
  gradients, carbon edges, other particle families), one session per analog. The heads with image
  statistics take the mean counts relative to the session (:mod:`cryolib.curate.features`): the
  mean scales with dose × pixel area, which differs between sessions, not with quality.
* Tables: :func:`table4` (ours beside the paper's Table 4), :func:`per_class_results` (per defect
  class), :func:`claims_table`; :func:`curation_metrics` for one checkpoint (Table 5's ablation).
* :func:`ship_curation_head`: the head file and its model card from the same run. The shipped head
  is the DRACO-B + image-statistics one: on our analogs the embedding does not see the spectral
  defects (severe drift takes high-frequency power away, a carbon film adds it) that the
  statistics measure directly, and a head on both is what a user of ``cryolib curate`` needs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import yaml

from cryolib.core.atomic import atomic_write_text
from cryolib.core.errors import CryolibError
from cryolib.core.jsonable import to_jsonable
from cryolib.core.reproducibility import child_rng
from cryolib.curate.features import N_BANDS
from cryolib.curate.head import DEFAULT_ENCODER, CurationHead, encoder_fingerprint, load_encoder
from cryolib.curate.probe import METRICS, QUALITY_CLASSES, LinearProbe, classification_metrics, per_class_table
from cryolib.curate.resnet import train_resnet
from cryolib.curate.ship import ship_curation_head  # noqa: F401  (re-exported for notebook 06)
from cryolib.io.datasets import (Dataset, default_data_root, get_spec, load_dataset, read_micrograph_meta,
                                 write_dataset_info)
from cryolib.io.micrographs import read_micrograph
from cryolib.simulate.dataset import (SIMULATOR_VERSION, acquisition_config, dataset_structure, sample_config,
                                      write_micrograph)

log = logging.getLogger(__name__)

TRAIN_ANALOGS = ("sim-10291", "sim-10077", "sim-10590", "sim-10816")  # globular, ribosome, elongated, cage
TEST_ANALOGS = ("sim-10059", "sim-10075")  # membrane channel, icosahedral capsid: held out
DEFECT_CLASSES = QUALITY_CLASSES[1:]
PROBE_C = 1.0  # inverse L2 strength of every linear probe
#: The registry's generalisation analogs (cryolib/io/datasets.yaml, role "generalisation").
UNSEEN_SETTINGS = ("gen-capsid-lowdose", "gen-channel-gradient", "gen-filament-carbon")


@dataclass(frozen=True)
class CurationSizes:
    """Sizes of the curation study at one profile (px, frames, micrographs per class and analog)."""

    micrograph_px: int
    n_frames: int
    n_good: int  # good micrographs per analog
    n_per_defect: int  # micrographs per defect class per analog
    n_train_analogs: int  # the first n of TRAIN_ANALOGS
    n_test_analogs: int  # the first n of TEST_ANALOGS
    resnet_px: int  # ResNet18 input side (px)
    resnet_epochs: int
    max_tiles: int = 16  # encoder tiles per micrograph


#: Per profile. default: 6 analogs x 24 = 144 micrographs of 256 px (~2 min to simulate on 2 cores).
CURATION_SIZES = {
    "smoke": CurationSizes(128, 4, 2, 1, 2, 1, 64, 2),
    "default": CurationSizes(256, 8, 12, 2, 4, 2, 96, 12),
    "full": CurationSizes(1024, 40, 60, 10, 4, 2, 256, 50),
}

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
DRACO_STATS = "DRACO-B + image statistics (linear probe)"  # the shipped head
RESNET_CLASSES = "ResNet18 (from scratch, quality classes)"


def curation_sizes(profile: str) -> CurationSizes:
    if profile not in CURATION_SIZES:
        raise CryolibError(f"unknown profile {profile!r}; choose one of {', '.join(CURATION_SIZES)}")
    return CURATION_SIZES[profile]


def class_plan(n_good: int, n_per_defect: int) -> list[str]:
    """The quality class of each micrograph of one analog: n_good "good", then each defect n_per_defect times."""
    return ["good"] * n_good + [d for d in DEFECT_CLASSES for _ in range(n_per_defect)]


def _prepare(root: Path, info: dict) -> None:
    """Start ``root`` afresh when it holds a curation analog made with other settings; write dataset.yaml."""
    old_path = root / "dataset.yaml"
    if old_path.is_file():
        old = yaml.safe_load(old_path.read_text()) or {}
        if old.get("curation") is not None and old != json.loads(json.dumps(info)):
            log.info("%s was made with other settings: rebuilding", root)
            shutil.rmtree(root)
        elif old.get("curation") is None:
            raise CryolibError(f"{root} holds a dataset that is not a curation set; use another data_root")
    root.mkdir(parents=True, exist_ok=True)
    write_dataset_info(root, info)


def build_curation_analog(name: str, root: str | os.PathLike, sizes: CurationSizes, seed: int = 0,
                          progress: bool = False) -> Dataset:
    """Simulate (or resume) one analog of the curation set (module docstring) -> the opened Dataset."""
    from tqdm.auto import tqdm

    from cryolib.simulate.micrograph import simulate_micrograph

    spec, root = get_spec(name), Path(root)
    plan = class_plan(sizes.n_good, sizes.n_per_defect)
    info = to_jsonable({"name": spec.name, "curation": {"n_good": sizes.n_good, "n_per_defect": sizes.n_per_defect},
                        "note": "SIMULATED curation set (cryolib.studies.draco_curation); not real data",
                        "seed": seed, "size_px": sizes.micrograph_px, "n_frames": sizes.n_frames,
                        "simulator_version": SIMULATOR_VERSION, "pixel_size_A": spec.pixel_size_A,
                        "diameter_px": float(spec.diameter_px), "spec": dataclasses.asdict(spec)})
    _prepare(root, info)
    structure = dataset_structure(spec, seed)
    acq, sample = acquisition_config(spec, sizes.micrograph_px, sizes.n_frames), sample_config(spec)
    rows = []
    for i, quality in enumerate(tqdm(plan, desc=f"curation {name}", disable=not progress, leave=False)):
        stem = f"{spec.name}_cur{i:03d}"
        row = read_micrograph_meta(root, stem)
        if row is None or not (root / "micrographs" / f"{stem}.mrc").is_file():
            rng = child_rng(seed, spec.name, "curation", i)
            sim = simulate_micrograph(structure, acq, sample, rng, defect=None if quality == "good" else quality)
            row = write_micrograph(root, stem, sim, spec.pixel_size_A, spec.diameter_px, "all", False)
        rows.append({k: v for k, v in row.items() if not isinstance(v, (list, dict))})
    atomic_write_text(root / "metadata.csv", pd.DataFrame(rows).to_csv(index=False))
    return load_dataset(root)


@dataclass
class CurationData:
    """The curation set: one row per micrograph (analog, micrograph, path, quality, defect, split)."""

    table: pd.DataFrame
    sizes: CurationSizes
    _images: dict = dataclasses.field(default_factory=dict, repr=False)

    def rows(self, split: str) -> pd.DataFrame:
        sub = self.table[self.table["split"] == split]
        if sub.empty:
            raise CryolibError(f"the curation set has no {split!r} micrographs")
        return sub

    def images(self, split: str) -> list[np.ndarray]:
        """The micrographs (counts) of ``split`` ("train" or "test"), read once."""
        return [self._read(p) for p in self.rows(split)["path"]]

    def _read(self, path: str) -> np.ndarray:
        if path not in self._images:
            self._images[path] = read_micrograph(path)[0]
        return self._images[path]

    def accept(self, split: str) -> np.ndarray:
        """1 for good (accept), 0 for bad (reject)."""
        return (self.rows(split)["quality"] == "good").to_numpy().astype(int)

    def sessions(self, split: str) -> list[str]:
        """The analog of each micrograph: one analog is one session (session-relative statistics)."""
        return [str(a) for a in self.rows(split)["analog"]]

    def classes(self, split: str) -> list[str]:
        return ["good" if q == "good" else str(d) for q, d in self.rows(split)[["quality", "defect"]].to_numpy()]


def build_curation_set(profile: str, data_root: str | os.PathLike | None = None, seed: int = 0,
                       progress: bool = True) -> CurationData:
    """Build (or reuse) the curation set at the profile's size (:data:`CURATION_SIZES`)."""
    sizes = curation_sizes(profile)
    base = (Path(data_root) if data_root is not None else default_data_root()) / profile / "curation"
    parts = []
    plan = (("train", TRAIN_ANALOGS[: sizes.n_train_analogs]), ("test", TEST_ANALOGS[: sizes.n_test_analogs]))
    for split, names in plan:
        for name in names:
            ds = build_curation_analog(name, base / name, sizes, seed, progress)
            meta = ds.metadata
            parts.append(pd.DataFrame({"analog": name, "micrograph": meta["micrograph"],
                                       "path": [str(ds.path_of(s)) for s in meta["micrograph"]],
                                       "quality": meta["quality"], "defect": meta["defect"].fillna(""), "split": split}))
    return CurationData(pd.concat(parts, ignore_index=True), sizes)


def set_summary(data: CurationData) -> pd.DataFrame:
    """Micrographs per analog, split and quality class."""
    t = data.table.assign(cls=data.classes("train") + data.classes("test"))
    return t.pivot_table(index=["split", "analog"], columns="cls", values="micrograph", aggfunc="count", fill_value=0
                         )[[c for c in QUALITY_CLASSES if c in set(t["cls"])]].reset_index()


def class_examples(data: CurationData, split: str = "test") -> dict[str, np.ndarray]:
    """The first micrograph of each quality class in ``split`` (for the notebook's gallery)."""
    rows, classes = data.rows(split), data.classes(split)
    first = dict(reversed(list(zip(classes, rows["path"]))))
    return {c: data._read(first[c]) for c in QUALITY_CLASSES if c in first}


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
                 with_statistics: bool = False) -> CurationHead:
    """A linear head on the frozen encoder of ``checkpoint`` (a path or ``asset:<file>``), with the image
    statistics beside the embedding when ``with_statistics``, trained on the training analogs' quality classes."""
    ref = str(checkpoint)
    model, _ = load_encoder(ref)
    features = ({"kind": "encoder+image_statistics", "max_tiles": data.sizes.max_tiles, "n_bands": N_BANDS,
                 "session_relative": True} if with_statistics else {"kind": "encoder", "max_tiles": data.sizes.max_tiles})
    head = CurationHead(name=name, probe=LinearProbe(PROBE_C), features=features,
                        encoder=ref if ref.startswith("asset:") else str(Path(ref).resolve()),
                        encoder_sha256=encoder_fingerprint(model))
    head.probe.fit(head.featurise(data.images("train"), data.sessions("train")), data.classes("train"), seed)
    return head


def stats_head(data: CurationData, seed: int = 0) -> CurationHead:
    """A linear head on :func:`cryolib.curate.features.image_statistics`, trained on the training analogs' classes."""
    head = CurationHead(name="image-statistics", probe=LinearProbe(PROBE_C),
                        features={"kind": "image_statistics", "n_bands": N_BANDS, "session_relative": True})
    head.probe.fit(head.featurise(data.images("train"), data.sessions("train")), data.classes("train"), seed)
    return head


def evaluate_scores(scores: np.ndarray, data: CurationData, threshold: float = 0.5) -> dict[str, Any]:
    """Table 4 metrics and the per-class table of test-set scores P(accept)."""
    accepted = np.asarray(scores) >= threshold
    return {**classification_metrics(data.accept("test").astype(bool), accepted),
            "per_class": per_class_table(data.classes("test"), accepted)}


def curation_metrics(checkpoint: str | os.PathLike, curation_data: CurationData, seed: int = 0) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 (and ``per_class``) of a linear probe on one checkpoint's
    encoder, trained on the training analogs and scored on the held-out ones (Tables 4 and 5)."""
    head = encoder_head(checkpoint, curation_data, seed)
    return evaluate_scores(head.scores(curation_data.images("test"), curation_data.sessions("test")), curation_data)


def run_methods(data: CurationData, encoders: Mapping[str, str | os.PathLike], seed: int = 0) -> dict[str, dict]:
    """Every method of Table 4 that runs here -> {method: {"head" or "model", "scores", metrics, per_class}}.

    ``encoders``: {"draco-b" | "draco-l" | "mae": checkpoint} (:data:`ENCODER_METHODS`); with "draco-b",
    also the shipped head's kind (:data:`DRACO_STATS`).
    """
    unknown = sorted(set(encoders) - set(ENCODER_METHODS))
    if unknown:
        raise CryolibError(f"unknown encoder keys {unknown}; use {sorted(ENCODER_METHODS)}")
    test, sessions = data.images("test"), data.sessions("test")
    out = {}
    for key, ckpt in sorted(encoders.items(), key=lambda kv: list(ENCODER_METHODS).index(kv[0])):
        head = encoder_head(ckpt, data, seed, name=f"{key}-curation")
        scores = head.scores(test, sessions)
        out[ENCODER_METHODS[key]] = {"head": head, "scores": scores, **evaluate_scores(scores, data)}
    if "draco-b" in encoders:
        head = encoder_head(encoders["draco-b"], data, seed, name="draco-b+statistics-curation", with_statistics=True)
        scores = head.scores(test, sessions)
        out[DRACO_STATS] = {"head": head, "scores": scores, **evaluate_scores(scores, data)}
    head = stats_head(data, seed)
    scores = head.scores(test, sessions)
    out[STATS] = {"head": head, "scores": scores, **evaluate_scores(scores, data)}
    for method, labels in ((RESNET, data.accept("train")), (RESNET_CLASSES, data.classes("train"))):
        resnet = train_resnet(data.images("train"), labels, data.sizes.resnet_px, data.sizes.resnet_epochs, seed=seed)
        scores = resnet.scores(test)
        out[method] = {"model": resnet, "scores": scores, **evaluate_scores(scores, data)}
    return out


def shipping_head(data: CurationData, results: Mapping[str, Mapping[str, Any]], install: bool = False, seed: int = 0
                  ) -> tuple[CurationHead, pd.DataFrame, pd.DataFrame]:
    """The head to ship, its evaluation row and per-class table: the DRACO-B + image-statistics head from
    :func:`run_methods` (:data:`DRACO_STATS`); with ``install``, the same head retrained on the shipped DRACO
    model (``asset:draco_default.pt``, which must exist)."""
    if install:
        head = encoder_head(DEFAULT_ENCODER, data, seed, name="draco-curation", with_statistics=True)
        res: Mapping[str, Any] = evaluate_scores(head.scores(data.images("test"), data.sessions("test")), data)
    else:
        res = results[DRACO_STATS]
        head = dataclasses.replace(res["head"], name="draco-curation")
    held_out = ", ".join(sorted(set(data.rows("test")["analog"])))
    evaluation = pd.DataFrame([{"head": head.name, "encoder": head.encoder, "test_analogs": held_out,
                                **{m: float(res[m]) for m in METRICS}}])
    return head, evaluation, res["per_class"]


def unseen_settings_set(profile: str, data_root: str | os.PathLike | None = None, seed: int = 0,
                        sizes: CurationSizes | None = None) -> CurationData:
    """The generalisation analogs (:data:`UNSEEN_SETTINGS`; notebook 01 builds them, built here when missing)
    as a test-only curation set, with the simulator's quality labels (mostly good: the defects are those the
    registry's ``bad_fraction`` drew)."""
    from cryolib.studies.datasets import build_analogs

    parts = []
    for name, ds in build_analogs(UNSEEN_SETTINGS, profile, data_root, seed, progress=False).items():
        meta = ds.metadata
        parts.append(pd.DataFrame({"analog": name, "micrograph": meta["micrograph"],
                                   "path": [str(ds.path_of(s)) for s in meta["micrograph"]],
                                   "quality": meta["quality"], "defect": meta["defect"].astype(object).fillna(""),
                                   "split": "test"}))
    return CurationData(pd.concat(parts, ignore_index=True), sizes or curation_sizes(profile))


def unseen_settings_results(results: Mapping[str, Mapping[str, Any]], unseen: CurationData) -> pd.DataFrame:
    """Each method of :func:`run_methods` on :func:`unseen_settings_set` -> method, micrographs, good, bad,
    good_accepted, bad_rejected (shares), accuracy, precision, recall, f1. One session per analog."""
    images, sessions = unseen.images("test"), unseen.sessions("test")
    good = unseen.accept("test").astype(bool)
    rows = []
    for method, res in results.items():
        scores = res["head"].scores(images, sessions) if "head" in res else res["model"].scores(images)
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
    others = ran[~ran["method"].isin(["DRACO-B", "DRACO-L", DRACO_STATS])]
    beats_all = bool(all((best[m] >= others[m]).all() for m in METRICS))
    f1b, f1l, f1r, f1m, f1s, f1h = (_f1(t4, m) for m in ("DRACO-B", "DRACO-L", RESNET, ENCODER_METHODS["mae"], STATS,
                                                          DRACO_STATS))
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
        {"claim": f"The shipped head (DRACO-B + image statistics) reaches F1 >= {target_f1} (our question)",
         "paper_statement": "not in the paper",
         "our_numbers": f"F1 {f1h:.3f} on the held-out analogs",
         "supported": "yes" if f1h >= target_f1 else ("no" if np.isfinite(f1h) else "not testable")},
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
            "shipped_head_f1": _f1(t4, DRACO_STATS),
            "per_class_correct": {m: g.set_index("class")["correct"].to_dict() for m, g in per_class.groupby("method")},
            "n_train": int((data.table["split"] == "train").sum()), "n_test": int((data.table["split"] == "test").sum()),
            "claims_supported": int((claims["supported"] == "yes").sum()),
            "claims_tested": int(claims["supported"].isin(["yes", "no"]).sum())}
