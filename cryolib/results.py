"""Where results go and how they are written: figures, tables, metrics.json, run.yaml.

Layout (STYLE.md §2, §14): ``results/<profile>/{figures,tables,notebooks}/`` plus
``metrics.json`` (headline numbers per notebook) and ``run.yaml`` (provenance per
notebook). Every write is atomic.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from cryolib.atomic import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
TRACKED_PACKAGES = ("cryolib", "numpy", "scipy", "torch", "timm", "scikit-learn", "topaz-em", "mrcfile", "starfile")


def results_dir(profile: str, root: str | os.PathLike | None = None) -> Path:
    """``results/<profile>/`` (created). ``root`` overrides the repository's ``results/``."""
    base = Path(root) if root is not None else Path(os.environ.get("CRYOLIB_RESULTS", REPO_ROOT / "results"))
    out = base / profile
    for sub in ("figures", "tables", "notebooks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    return out


def save_figure(fig, name: str, profile: str, root: str | os.PathLike | None = None, svg: bool = False) -> Path:
    """Save a matplotlib figure as ``figures/<name>.png`` (and ``.svg`` when asked)."""
    out = results_dir(profile, root) / "figures" / f"{name}.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    if svg:
        with atomic_path(out.with_suffix(".svg")) as tmp:
            fig.savefig(tmp, bbox_inches="tight", format="svg")
    return out


def save_table(df, name: str, profile: str, root: str | os.PathLike | None = None, floatfmt: str = ".3f") -> Path:
    """Save a pandas DataFrame as ``tables/<name>.csv`` and ``tables/<name>.md``."""
    out = results_dir(profile, root) / "tables" / f"{name}.csv"
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)
    atomic_write_text(out.with_suffix(".md"), df.to_markdown(index=False, floatfmt=floatfmt) + "\n")
    return out


def to_jsonable(value: Any) -> Any:
    """Plain JSON/YAML types: numpy/torch scalars and arrays become Python values, non-finite floats
    become None, and paths inside the repository become relative."""
    if isinstance(value, (str, Path)) and str(value).startswith(str(REPO_ROOT) + os.sep):
        return os.path.relpath(str(value), REPO_ROOT)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _merge_file(path: Path, key: str, value: Any, loader, dumper) -> None:
    data = loader(path.read_text()) if path.exists() else {}
    data = data or {}
    data[key] = value
    atomic_write_text(path, dumper(data))


def write_metrics(section: str, metrics: Mapping[str, Any], profile: str, root: str | os.PathLike | None = None) -> Path:
    """Merge ``metrics`` under ``section`` (usually the notebook name) into ``metrics.json``."""
    path = results_dir(profile, root) / "metrics.json"
    _merge_file(path, section, to_jsonable(metrics), json.loads, lambda d: json.dumps(d, indent=2, sort_keys=True) + "\n")
    return path


def read_metrics(profile: str, root: str | os.PathLike | None = None) -> dict:
    """Read ``metrics.json`` for a profile ({} when absent)."""
    path = results_dir(profile, root) / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def git_commit() -> str:
    """The repository's HEAD commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the numbers."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


class RunRecord:
    """Provenance of one notebook or command run, written to ``run.yaml`` by :meth:`finish`.

    >>> run = RunRecord("01_datasets", profile="smoke", seed=0, parameters={"datasets": ["sim-10081"]})
    >>> ...  # the work
    >>> run.finish()
    """

    def __init__(self, name: str, profile: str, seed: int, parameters: Mapping[str, Any], root: str | os.PathLike | None = None):
        self.name, self.profile, self.seed = name, profile, seed
        self.parameters = dict(parameters)
        self.root = root
        self._t0 = time.time()

    def finish(self, **extra: Any) -> Path:
        """Write this run's entry into ``results/<profile>/run.yaml`` and return its path."""
        from cryolib.profiles import get_profile

        entry = {
            "parameters": to_jsonable(self.parameters),
            "profile": get_profile(self.profile).as_dict(),
            "seed": self.seed,
            "git_commit": git_commit(),
            "packages": package_versions(),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self._t0)),
            "wall_time_s": round(time.time() - self._t0, 1),
            **to_jsonable(extra),
        }
        path = results_dir(self.profile, self.root) / "run.yaml"
        _merge_file(path, self.name, entry, yaml.safe_load, lambda d: yaml.safe_dump(d, sort_keys=False))
        log.info("recorded run %s in %s", self.name, path)
        return path


def run_dir(profile: str, root: str | os.PathLike | None = None) -> Path:
    """``runs/<profile>/``: checkpoints and training logs (gitignored; ``root`` overrides ``runs/``)."""
    base = Path(root) if root is not None else Path(os.environ.get("CRYOLIB_RUNS", REPO_ROOT / "runs"))
    out = base / profile
    out.mkdir(parents=True, exist_ok=True)
    return out
