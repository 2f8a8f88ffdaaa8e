"""Provenance of a run: git commit, package versions, machine, wall time, written as ``run.yaml``.

One writer for the commands (:func:`write_run_yaml`, a ``run.yaml`` beside each command's
outputs) and for the notebooks (:class:`cryolib.core.results.RunRecord`, one entry per notebook
in ``results/<profile>/run.yaml``); both build their entry with :func:`provenance`.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import yaml

from cryolib.core.atomic import atomic_write_text
from cryolib.core.jsonable import REPO_ROOT, to_jsonable

TRACKED_PACKAGES = ("cryolib", "numpy", "scipy", "torch", "timm", "scikit-learn", "topaz-em", "mrcfile", "starfile")


def git_commit() -> str:
    """The repository's HEAD commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True).stdout.strip()
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


def machine_info() -> dict[str, Any]:
    """The machine a benchmark ran on: platform, Python, CPUs, torch (version, threads, GPU name or None) and the
    1-minute load average at the call (None where the OS has none). torch is imported here, not at module load."""
    import torch

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def provenance(parameters: Mapping[str, Any], seed: int | None, started: float, **extra: Any) -> dict[str, Any]:
    """The run record: parameters, seed, git commit, package versions, machine, start and wall time (s)."""
    return {
        "parameters": to_jsonable(parameters),
        "seed": seed,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "wall_time_s": round(time.time() - started, 1),
        **to_jsonable(extra),
    }


def command_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """A command's parsed flags without argparse's private entries."""
    return {k: v for k, v in vars(args).items() if not k.startswith("_")}


def write_run_yaml(out_dir: str | os.PathLike, command: str, args: argparse.Namespace | Mapping[str, Any],
                   started: float, **extra: Any) -> Path:
    """Write ``out_dir/run.yaml`` for one ``cryolib <command>`` run (atomically) and return its path."""
    params = command_parameters(args) if isinstance(args, argparse.Namespace) else dict(args)
    record = {"command": command, **provenance(params, params.get("seed"), started, **extra)}
    path = Path(out_dir) / "run.yaml"
    atomic_write_text(path, yaml.safe_dump(record, sort_keys=False))
    return path
