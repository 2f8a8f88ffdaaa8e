"""Registry of dataset analogs (``cryolib/io/datasets.yaml``) and the CryoPPP-style folders they build.

Every EMPIAR set named in the two papers has a ``sim-<EMPIAR>`` entry: a simulated analog
that matches the real set's particle type, diameter (Å) and difficulty. An entry with a
``path:`` points at a local folder of real data instead (same layout, same reader).

On-disk layout of one dataset (the CryoPPP layout plus what only a simulation knows)::

    <root>/<name>/
      micrographs/<stem>.mrc                       full-dose motion-corrected sum
      ground_truth/particle_coordinates/<stem>.csv  X-Coordinate, Y-Coordinate, Diameter (px)
      ground_truth/particle_poses/<stem>.csv        x, y, rot, tilt, psi (deg)
      movies/{full,odd,even}/<stem>.mrc             DRACO §3 triplets (full = odd + even)
      movies/frames/<stem>.tif                      raw counts, only with keep_frames
      clean/<stem>.mrc                              noise-free expected image (e⁻/px)
      meta/<stem>.json                              per-micrograph truth; written last (resume marker)
      metadata.csv                                  one row per micrograph (defocus, dose, quality, split …)
      dataset.yaml                                  the spec, seed and sizes that made it
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from cryolib.core.atomic import atomic_write_text
from cryolib.core.errors import CryolibError
from cryolib.core.jsonable import REPO_ROOT
from cryolib.core.reproducibility import child_rng

log = logging.getLogger(__name__)

REGISTRY_PATH = Path(__file__).resolve().with_name("datasets.yaml")  # package data: works in a non-editable install
DATA_ENV = "CRYOLIB_DATA"  # environment variable that overrides the data root
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train / val / test (Cryo-EMMAE §4.1)


@dataclass(frozen=True)
class DatasetSpec:
    """One registry entry: what the analog must match, and how to simulate it."""

    name: str
    empiar: int  # 0 for our own entries that are no EMPIAR analog
    roles: tuple[str, ...]
    particle: str
    family: str
    diameter_A: float
    pixel_size_A: float  # the binned pixel size we simulate at (Å/px)
    acquisition: dict[str, Any]
    sample: dict[str, Any]
    bad_fraction: float
    difficulty: str = ""
    real_pixel_size_A: float | None = None
    cryoppp_diameter_px: float | None = None
    path: str | None = None  # a local folder of real data, when given

    @property
    def diameter_px(self) -> float:
        """Particle diameter at the simulated pixel size (px)."""
        return self.diameter_A / self.pixel_size_A

    @property
    def is_simulated(self) -> bool:
        return self.path is None


def _merge(base: dict, override: dict | None) -> dict:
    out = copy.deepcopy(base)
    out.update(override or {})
    return out


def load_registry(path: str | Path = REGISTRY_PATH) -> dict[str, DatasetSpec]:
    """Read the registry YAML into ``{name: DatasetSpec}`` (defaults merged into each entry)."""
    path = Path(path)
    if not path.is_file():
        raise CryolibError(f"dataset registry {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CryolibError(f"dataset registry {path} is not valid YAML: {err}") from None
    defaults = raw.get("defaults", {})
    specs = {}
    for name, entry in raw.get("datasets", {}).items():
        if "pixel_size_A" in entry:
            pixel = float(entry["pixel_size_A"])
        elif "d512" in entry:
            pixel = float(entry["diameter_A"]) / (2.0 * float(entry["d512"]))
        else:
            raise CryolibError(f"{path}: dataset {name} needs pixel_size_A or d512")
        specs[name] = DatasetSpec(
            name=name,
            empiar=int(entry.get("empiar", 0)),
            roles=tuple(entry.get("roles", ())),
            particle=str(entry.get("particle", "")),
            family=str(entry["family"]),
            diameter_A=float(entry["diameter_A"]),
            pixel_size_A=round(pixel, 3),
            acquisition=_merge(defaults.get("acquisition", {}), entry.get("acquisition")),
            sample=_merge(defaults.get("sample", {}), entry.get("sample")),
            bad_fraction=float(entry.get("bad_fraction", defaults.get("bad_fraction", 0.0))),
            difficulty=str(entry.get("difficulty", "")),
            real_pixel_size_A=entry.get("real_pixel_size_A"),
            cryoppp_diameter_px=entry.get("cryoppp_diameter_px"),
            path=entry.get("path"),
        )
    return specs


def get_spec(name: str, registry: dict[str, DatasetSpec] | None = None) -> DatasetSpec:
    """Look a dataset up by name (``sim-10081``) or bare EMPIAR id (``10081``)."""
    registry = registry if registry is not None else load_registry()
    key = name if name in registry else f"sim-{name}"
    if key not in registry:
        raise CryolibError(f"unknown dataset {name!r}; known datasets: {', '.join(registry)}")
    return registry[key]


def datasets_with_role(role: str, registry: dict[str, DatasetSpec] | None = None) -> list[str]:
    """Names of the registry entries that play ``role`` (e.g. ``cryoemmae_train``), in file order."""
    registry = registry if registry is not None else load_registry()
    return [name for name, spec in registry.items() if role in spec.roles]


def assign_splits(n: int, seed: int, name: str) -> list[str]:
    """A seeded 60/20/20 train/val/test split of ``n`` micrographs (at least one train)."""
    order = child_rng(seed, name, "split").permutation(n)
    n_train = max(1, int(round(SPLIT_FRACTIONS[0] * n)))
    n_val = int(round(SPLIT_FRACTIONS[1] * n)) if n >= 3 else 0
    labels = np.array(["test"] * n, dtype=object)
    labels[order[:n_train]] = "train"
    labels[order[n_train : n_train + n_val]] = "val"
    if n >= 2 and "test" not in labels:
        labels[order[-1]] = "test"
    return list(labels)


@dataclass
class Dataset:
    """A dataset folder on disk: micrograph paths, ground-truth coordinates and metadata."""

    name: str
    root: Path
    micrographs: list[Path]
    metadata: pd.DataFrame
    diameter_px: float
    pixel_size_A: float
    spec: DatasetSpec | None = None
    _coords: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def stems(self) -> list[str]:
        return [p.stem for p in self.micrographs]

    def split(self, which: str) -> list[Path]:
        """Micrograph paths of one split (``train``, ``val`` or ``test``); all when there is no split column."""
        if "split" not in self.metadata:
            return list(self.micrographs)
        keep = set(self.metadata.loc[self.metadata["split"] == which, "micrograph"])
        return [p for p in self.micrographs if p.stem in keep]

    def coordinates(self, stem: str) -> pd.DataFrame:
        """Ground-truth particle coordinates of one micrograph (x, y, diameter, score)."""
        if stem not in self._coords:
            from cryolib.io.micrographs import read_coordinates

            path = self.root / "ground_truth" / "particle_coordinates" / f"{stem}.csv"
            self._coords[stem] = read_coordinates(path, default_diameter=self.diameter_px)
        return self._coords[stem]

    def path_of(self, stem: str, kind: str = "micrographs") -> Path:
        """Path of one micrograph's image of ``kind``: micrographs, clean, odd, even, full."""
        sub = {"micrographs": "micrographs", "clean": "clean", "odd": "movies/odd", "even": "movies/even", "full": "movies/full"}
        if kind not in sub:
            raise CryolibError(f"unknown image kind {kind!r}; choose one of {', '.join(sub)}")
        return self.root / sub[kind] / f"{stem}.mrc"


def load_dataset(root: str | Path, diameter_px: float | None = None, name: str | None = None) -> Dataset:
    """Open a dataset folder: ours (simulated) or a real CryoPPP folder.

    ``diameter_px`` is needed for real folders whose coordinate files carry no diameter;
    for our folders it comes from ``dataset.yaml``.
    """
    root = Path(root)
    mic_dir = root / "micrographs"
    if not mic_dir.is_dir():
        raise CryolibError(f"{root} is not a dataset folder: {mic_dir} is missing (expected the CryoPPP layout)")
    micrographs = sorted(p for p in mic_dir.iterdir() if p.suffix.lower() in {".mrc", ".tif", ".tiff"})
    if not micrographs:
        raise CryolibError(f"no micrographs (*.mrc, *.tif) in {mic_dir}")
    info = yaml.safe_load((root / "dataset.yaml").read_text()) if (root / "dataset.yaml").is_file() else {}
    spec = None
    if info.get("name"):
        try:
            spec = get_spec(info["name"])
        except CryolibError:
            spec = None
    meta_path = root / "metadata.csv"
    metadata = pd.read_csv(meta_path) if meta_path.is_file() else pd.DataFrame({"micrograph": [p.stem for p in micrographs]})
    diameter = diameter_px or info.get("diameter_px")
    if diameter is None:
        diameter = _diameter_from_coordinates(root, micrographs)
    if diameter is None or float(diameter) <= 0:
        raise CryolibError(f"particle diameter unknown for {root}: pass diameter_px (in px)")
    return Dataset(
        name=name or info.get("name") or root.name,
        root=root,
        micrographs=micrographs,
        metadata=metadata,
        diameter_px=float(diameter),
        pixel_size_A=float(info.get("pixel_size_A", 0.0)),
        spec=spec,
    )


def _diameter_from_coordinates(root: Path, micrographs: list[Path]) -> float | None:
    """Median ``Diameter`` of a CryoPPP folder's coordinate files (None when absent)."""
    coord_dir = root / "ground_truth" / "particle_coordinates"
    for mic in micrographs:
        path = coord_dir / f"{mic.stem}.csv"
        if path.is_file():
            df = pd.read_csv(path)
            if "Diameter" in df and len(df):
                return float(df["Diameter"].median())
    return None


def dataset_dir(name: str, profile: str, data_root: str | Path | None = None) -> Path:
    """Where a dataset lives: the entry's ``path`` for real data, else ``<data root>/<profile>/<name>``.

    The data root is ``data_root``, else ``$CRYOLIB_DATA``, else the repository's ``data/`` folder
    (never the package folder: the registry is package data, the datasets are not).
    """
    spec = get_spec(name)
    if spec.path:
        return Path(spec.path)
    root = Path(data_root) if data_root is not None else default_data_root()
    return root / profile / spec.name


def default_data_root() -> Path:
    """``$CRYOLIB_DATA`` if set, else ``<repository>/data``."""
    return Path(os.environ.get(DATA_ENV) or REPO_ROOT / "data")


def write_dataset_info(root: Path, info: dict[str, Any]) -> None:
    """Write ``dataset.yaml`` (the spec, seed and sizes that made a folder) atomically."""
    atomic_write_text(root / "dataset.yaml", yaml.safe_dump(info, sort_keys=False))


def read_micrograph_meta(root: Path, stem: str) -> dict[str, Any] | None:
    """The per-micrograph truth JSON of a simulated dataset, or None when not (yet) written."""
    path = root / "meta" / f"{stem}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def dataset_summary(ds: Dataset) -> dict[str, Any]:
    """Per-dataset statistics for the datasets table: sizes, crowding, SNR, optics, quality."""
    meta = ds.metadata
    good = meta[meta["quality"] == "good"] if "quality" in meta else meta
    n_parts = [len(ds.coordinates(s)) for s in good["micrograph"]] if "micrograph" in good else []

    def mean(col: str) -> float:
        return float(good[col].mean()) if col in good and len(good) else float("nan")

    return {
        "dataset": ds.name,
        "empiar": ds.spec.empiar if ds.spec else None,
        "family": ds.spec.family if ds.spec else "",
        "diameter_A": ds.spec.diameter_A if ds.spec else float("nan"),
        "pixel_size_A": ds.pixel_size_A,
        "diameter_px": round(ds.diameter_px, 1),
        "micrographs": len(meta),
        "bad_micrographs": int((meta["quality"] != "good").sum()) if "quality" in meta else 0,
        "particles_per_micrograph": float(np.mean(n_parts)) if n_parts else float("nan"),
        "snr_db": mean("snr_true_dB"),
        "defocus_um": (mean("defocus_u_um") + mean("defocus_v_um")) / 2 if "defocus_u_um" in good else float("nan"),
        "dose_e_per_A2": mean("dose_e_per_A2"),
        "ice_thickness_nm": mean("ice_thickness_nm"),
        "drift_px": mean("drift_total_px"),
        "shift_error_rms_px": mean("shift_error_rms_px"),
    }
