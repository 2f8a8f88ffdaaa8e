"""The curation set of notebook 06 (DRACO 2024 §5.3): what the curation heads train and are scored on.

* :func:`build_curation_set`: a balanced set simulated for the study, in the CryoPPP layout under
  ``<data>/<profile>/curation/<analog>/``. Each analog gets ``n_good`` good micrographs and
  ``n_per_defect`` of each quality defect of the simulator (empty, thick ice, crystalline ice,
  contamination, severe drift, carbon only), in a fixed order, each micrograph seeded on its own
  (resumable: a finished micrograph is never redone). The registry's ``bad_fraction`` draws defects
  at random, which at a few dozen micrographs per analog leaves some defect classes empty; a fixed
  plan does not. Heads train on :data:`TRAIN_ANALOGS` and are scored on :data:`TEST_ANALOGS`,
  particle families the training analogs lack (held out).
* :func:`unseen_settings_set`: the registry's generalisation analogs (another dose, pixel size, ice,
  carbon edges) as a second, test-only set.
* :class:`CurationData`: the rows, labels, sessions (one analog = one session) and micrographs of a set.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from cryolib.core.atomic import atomic_write_text
from cryolib.core.errors import CryolibError
from cryolib.core.jsonable import to_jsonable
from cryolib.core.reproducibility import child_rng
from cryolib.curate.probe import QUALITY_CLASSES
from cryolib.io.datasets import (Dataset, default_data_root, get_spec, load_dataset, read_micrograph_meta,
                                 write_dataset_info)
from cryolib.io.micrographs import read_micrograph
from cryolib.simulate.dataset import (SIMULATOR_VERSION, acquisition_config, dataset_structure, sample_config,
                                      write_micrograph)

log = logging.getLogger(__name__)

__all__ = ["TRAIN_ANALOGS", "TEST_ANALOGS", "DEFECT_CLASSES", "UNSEEN_SETTINGS", "CurationSizes", "CURATION_SIZES",
           "curation_sizes", "class_plan", "build_curation_analog", "CurationData", "analog_rows",
           "build_curation_set", "unseen_settings_set", "set_summary", "class_examples"]

TRAIN_ANALOGS = ("sim-10291", "sim-10077", "sim-10590", "sim-10816")  # globular, ribosome, elongated, cage
TEST_ANALOGS = ("sim-10059", "sim-10075")  # membrane channel, icosahedral capsid: held out
DEFECT_CLASSES = QUALITY_CLASSES[1:]
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


#: Per profile. default: 6 analogs x 24 = 144 micrographs of 1024 px (~2 min to simulate on 2 cores), 30–100
#: particles each as in a real micrograph's field; at 256 px (2–8 particles) no feature told an empty micrograph
#: from a good one.
CURATION_SIZES = {
    "smoke": CurationSizes(128, 4, 2, 1, 2, 1, 64, 2),
    "default": CurationSizes(1024, 8, 12, 2, 4, 2, 96, 12),
    "full": CurationSizes(1024, 40, 60, 10, 4, 2, 256, 50),
}


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
    _coverage: dict = dataclasses.field(default_factory=dict, repr=False)

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

    def coverage(self, split: str, spec: dict | None = None) -> np.ndarray:
        """The log10 particle coverage of each micrograph of ``split``, counted as a head's ``features["particles"]``
        says (``spec``; default: the shipped detector at its default score) at its analog's diameter
        (:mod:`cryolib.studies.curation_particles`), once per spec and micrograph."""
        from tqdm.auto import tqdm

        from cryolib.studies.curation_particles import counter_for, particles_spec

        spec = dict(spec) if spec is not None else particles_spec()
        cache = self._coverage.setdefault(json.dumps(spec, sort_keys=True), {})
        rows = self.rows(split)
        for diameter, group in rows.groupby("diameter_px", sort=False):
            todo = [p for p in group["path"] if p not in cache]
            if todo:
                count = counter_for(spec, float(diameter))
                for path in tqdm(todo, desc=f"particle coverage, {split} ({float(diameter):.0f} px)", leave=False):
                    cache[path] = count(self._read(path))
        return np.array([cache[p] for p in rows["path"]], dtype=np.float64)

    def accept(self, split: str) -> np.ndarray:
        """1 for good (accept), 0 for bad (reject)."""
        return (self.rows(split)["quality"] == "good").to_numpy().astype(int)

    def sessions(self, split: str) -> list[str]:
        """The analog of each micrograph: one analog is one session (session-relative statistics)."""
        return [str(a) for a in self.rows(split)["analog"]]

    def classes(self, split: str) -> list[str]:
        return ["good" if q == "good" else str(d) for q, d in self.rows(split)[["quality", "defect"]].to_numpy()]


def analog_rows(name: str, ds: Dataset, split: str) -> pd.DataFrame:
    """One row per micrograph of an opened analog: analog, micrograph, path, quality, defect ("" when good), split,
    diameter_px (the analog's particle diameter, px)."""
    meta = ds.metadata
    return pd.DataFrame({"analog": name, "micrograph": meta["micrograph"],
                         "path": [str(ds.path_of(s)) for s in meta["micrograph"]], "quality": meta["quality"],
                         "defect": meta["defect"].astype(object).fillna(""), "split": split,
                         "diameter_px": float(ds.diameter_px)})


def build_curation_set(profile: str, data_root: str | os.PathLike | None = None, seed: int = 0,
                       progress: bool = True) -> CurationData:
    """Build (or reuse) the curation set at the profile's size (:data:`CURATION_SIZES`)."""
    sizes = curation_sizes(profile)
    base = (Path(data_root) if data_root is not None else default_data_root()) / profile / "curation"
    parts = []
    plan = (("train", TRAIN_ANALOGS[: sizes.n_train_analogs]), ("test", TEST_ANALOGS[: sizes.n_test_analogs]))
    for split, names in plan:
        for name in names:
            parts.append(analog_rows(name, build_curation_analog(name, base / name, sizes, seed, progress), split))
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


def unseen_settings_set(profile: str, data_root: str | os.PathLike | None = None, seed: int = 0,
                        sizes: CurationSizes | None = None) -> CurationData:
    """The generalisation analogs (:data:`UNSEEN_SETTINGS`; notebook 01 builds them, built here when missing)
    as a test-only curation set, with the simulator's quality labels (mostly good: the defects are those the
    registry's ``bad_fraction`` drew)."""
    from cryolib.studies.datasets import build_analogs

    parts = [analog_rows(name, ds, "test")
             for name, ds in build_analogs(UNSEEN_SETTINGS, profile, data_root, seed, progress=False).items()]
    return CurationData(pd.concat(parts, ignore_index=True), sizes or curation_sizes(profile))
