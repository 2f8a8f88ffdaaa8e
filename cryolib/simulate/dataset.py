"""Build one dataset analog on disk: N simulated micrographs in the CryoPPP layout.

Each micrograph ``i`` draws from its own generator ``child_rng(seed, name, i)``, so a
dataset is identical however it is built (in one go, resumed after a kill, or grown).
Every file is written atomically and ``meta/<stem>.json`` is written last, so a
micrograph whose JSON exists is complete and is skipped on resume.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cryolib.core.atomic import atomic_write_text
from cryolib.core.results import to_jsonable
from cryolib.io.datasets import (
    Dataset,
    DatasetSpec,
    assign_splits,
    get_spec,
    load_dataset,
    read_micrograph_meta,
    write_dataset_info,
)
from cryolib.core.errors import CryolibError
from cryolib.core.reproducibility import child_rng

log = logging.getLogger(__name__)

LAYOUT_DIRS = ("micrographs", "ground_truth", "movies", "clean", "meta")


def acquisition_config(spec: DatasetSpec, size_px: int, n_frames: int):
    """The :class:`AcquisitionConfig` of one analog at a given micrograph size (px) and frame count."""
    from cryolib.simulate.micrograph import AcquisitionConfig

    fields = {f.name for f in dataclasses.fields(AcquisitionConfig)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.acquisition.items() if k in fields}
    return AcquisitionConfig(size_px=int(size_px), pixel_size_A=spec.pixel_size_A, n_frames=int(n_frames), **values)


def sample_config(spec: DatasetSpec):
    """The :class:`SampleConfig` of one analog."""
    from cryolib.simulate.micrograph import SampleConfig

    fields = {f.name for f in dataclasses.fields(SampleConfig)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.sample.items() if k in fields}
    return SampleConfig(**values)


def choose_defect(spec: DatasetSpec, rng: np.random.Generator) -> str | None:
    """None for a good micrograph; with probability ``bad_fraction`` one of the quality defects."""
    from cryolib.simulate.micrograph import DEFECTS

    if rng.random() >= spec.bad_fraction:
        return None
    return str(rng.choice(DEFECTS))


def dataset_structure(spec: DatasetSpec, seed: int):
    """The particle model of an analog (one per dataset, from the seed)."""
    from cryolib.simulate.structures import make_structure

    return make_structure(spec.family, spec.diameter_A, child_rng(seed, spec.name, "structure"))


def write_micrograph(root: Path, stem: str, sim, pixel_size_A: float, diameter_px: float, split: str, keep_frames: bool) -> dict:
    """Write one :class:`SimulatedMicrograph` into the layout; return its metadata row."""
    from cryolib.io.micrographs import write_coordinates, write_movie, write_mrc

    write_mrc(root / "micrographs" / f"{stem}.mrc", sim.full, pixel_size_A)
    write_mrc(root / "movies" / "full" / f"{stem}.mrc", sim.full, pixel_size_A)
    write_mrc(root / "movies" / "odd" / f"{stem}.mrc", sim.odd, pixel_size_A)
    write_mrc(root / "movies" / "even" / f"{stem}.mrc", sim.even, pixel_size_A)
    write_mrc(root / "clean" / f"{stem}.mrc", sim.clean, pixel_size_A)
    if keep_frames and sim.frames is not None:
        write_movie(root / "movies" / "frames" / f"{stem}.tif", sim.frames, pixel_size_A)
    coords = sim.particles[["x", "y"]].copy()
    coords["diameter"] = diameter_px
    write_coordinates(root / "ground_truth" / "particle_coordinates" / f"{stem}.csv", coords, fmt="csv")
    poses = sim.particles.copy()
    atomic_write_text(root / "ground_truth" / "particle_poses" / f"{stem}.csv", poses.to_csv(index=False))
    row = {"micrograph": stem, "split": split, **to_jsonable(sim.meta)}
    atomic_write_text(root / "meta" / f"{stem}.json", json.dumps(row, indent=1))
    return row


STALE_KEYS = ("name", "seed", "size_px", "n_frames", "simulator_version", "spec")


def _is_stale(root: Path, info: dict) -> bool:
    """True when ``root`` holds a dataset made with other settings (registry entry, seed, sizes, physics)."""
    import yaml

    existing = root / "dataset.yaml"
    if not existing.is_file():
        return False
    old = yaml.safe_load(existing.read_text()) or {}
    return any(old.get(k) != info.get(k) for k in STALE_KEYS)


def _check_or_start(root: Path, info: dict, overwrite: bool | str) -> None:
    """Start (or resume) ``root``. A folder made with other settings raises, unless ``overwrite`` is
    True (always start afresh) or ``"if-stale"`` (start afresh only when the settings differ)."""
    stale = _is_stale(root, info)
    if (overwrite is True or (overwrite == "if-stale" and stale)) and root.exists():
        for sub in LAYOUT_DIRS:
            shutil.rmtree(root / sub, ignore_errors=True)
        for name in ("metadata.csv", "dataset.yaml"):
            (root / name).unlink(missing_ok=True)
    elif stale:
        raise CryolibError(
            f"{root} holds a dataset made with other settings (registry entry, seed, size, frames or "
            "simulator version); use another --out folder or --overwrite"
        )
    write_dataset_info(root, info)


SIMULATOR_VERSION = 3  # bump when the physics changes, so stale folders are not resumed (2: robust motion correction; 3: carbon-edge fix)


def build_dataset(
    name: str,
    n_micrographs: int,
    out_dir: str | Path,
    size_px: int = 1024,
    n_frames: int = 40,
    seed: int = 0,
    keep_frames: bool = False,
    overwrite: bool | str = False,
    progress: bool = True,
) -> Dataset:
    """Simulate ``n_micrographs`` of the analog ``name`` into ``out_dir`` (resumable); return it opened.

    ``overwrite``: False (resume; refuse a folder made with other settings), True (start afresh) or
    ``"if-stale"`` (resume when the settings match, start afresh when they do not).
    """
    spec = get_spec(name)
    if not spec.is_simulated:
        raise CryolibError(f"{spec.name} points at real data ({spec.path}); there is nothing to simulate")
    if n_micrographs < 1:
        raise CryolibError(f"n_micrographs must be at least 1, got {n_micrographs}")
    if size_px < 64:
        raise CryolibError(f"micrograph size must be at least 64 px, got {size_px}")
    if n_frames < 2:
        raise CryolibError(f"a movie needs at least 2 frames (odd and even halves), got {n_frames}")
    root = Path(out_dir)
    info = {
        "name": spec.name,
        "simulated_analog_of": f"EMPIAR-{spec.empiar}" if spec.empiar else "none (our generalisation check)",
        "note": "SIMULATED analog made by cryolib.simulate; not the real EMPIAR data",
        "seed": int(seed),
        "size_px": int(size_px),
        "n_frames": int(n_frames),
        "simulator_version": SIMULATOR_VERSION,
        "pixel_size_A": spec.pixel_size_A,
        "diameter_A": spec.diameter_A,
        "diameter_px": float(spec.diameter_px),
        "family": spec.family,
        "spec": to_jsonable(dataclasses.asdict(spec)),
    }
    _check_or_start(root, info, overwrite)
    from cryolib.simulate.micrograph import simulate_micrograph

    structure = dataset_structure(spec, seed)
    acq, sample = acquisition_config(spec, size_px, n_frames), sample_config(spec)
    splits = assign_splits(n_micrographs, seed, spec.name)
    rows = []
    for i in tqdm(range(n_micrographs), desc=spec.name, disable=not progress, leave=False):
        stem = f"{spec.name}_{i:04d}"
        row = read_micrograph_meta(root, stem)
        if row is None or not (root / "micrographs" / f"{stem}.mrc").is_file():
            rng = child_rng(seed, spec.name, i)
            defect = choose_defect(spec, rng)
            sim = simulate_micrograph(structure, acq, sample, rng, defect=defect, keep_frames=keep_frames)
            row = write_micrograph(root, stem, sim, spec.pixel_size_A, spec.diameter_px, splits[i], keep_frames)
        rows.append(row)
    table = pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, (list, dict))} for r in rows])
    atomic_write_text(root / "metadata.csv", table.to_csv(index=False))
    log.info("built %s: %d micrographs in %s", spec.name, n_micrographs, root)
    return load_dataset(root)


def defect_examples(name: str, size_px: int, n_frames: int, seed: int = 0) -> dict[str, Any]:
    """One good micrograph and one per quality defect, with the optics of the analog ``name``.

    Returns ``{"good": SimulatedMicrograph, "empty": ..., ...}`` (for the curation-label figure).
    """
    from cryolib.simulate.micrograph import DEFECTS, simulate_micrograph

    spec = get_spec(name)
    structure = dataset_structure(spec, seed)
    acq, sample = acquisition_config(spec, size_px, n_frames), sample_config(spec)
    out = {}
    for defect in (None, *DEFECTS):
        rng = child_rng(seed, spec.name, "defect-example", defect or "good")
        out[defect or "good"] = simulate_micrograph(structure, acq, sample, rng, defect=defect)
    return out
