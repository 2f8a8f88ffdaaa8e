"""Where results go and how they are written: figures, tables, metrics.json, run.yaml.

Layout (STYLE.md §2, §14): ``results/<profile>/{figures,tables,notebooks}/`` plus
``metrics.json`` (headline numbers per notebook) and ``run.yaml`` (provenance per
notebook). Every write is atomic.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

import yaml

from cryolib.core.atomic import atomic_path, atomic_write_text
from cryolib.core.jsonable import REPO_ROOT, to_jsonable
from cryolib.core.provenance import git_commit, package_versions, provenance  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)



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
        from cryolib.core.profiles import get_profile

        entry = provenance(self.parameters, self.seed, self._t0, profile=get_profile(self.profile).as_dict(), **extra)
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
