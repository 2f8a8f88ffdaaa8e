"""``cryolib pretrain``: pretrain an encoder on micrographs (Cryo-EMMAE §3.2, §4.1).

Example::

    cryolib pretrain --objective mae --data data/default/sim-10291 --out runs/mae/mae.pt --profile default

``--data`` takes dataset folders (CryoPPP layout: the train split trains, the val split
validates, the particle diameter comes from the dataset) or plain micrograph folders (all
micrographs train; ``--diameter-px`` is then required). The checkpoint is written to ``--out``;
its folder also gets ``checkpoint.pt`` (the working copy that ``--resume`` continues),
``train_log.csv`` and ``run.yaml``. Notebooks call :func:`cryolib.pick.cryoemmae.pretrain_mae`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from pathlib import Path

import yaml

from cryolib.core.atomic import atomic_path, atomic_write_text
from cryolib.core.errors import CryolibError

log = logging.getLogger(__name__)

#: --objective name -> what it trains. DRACO joins in a later issue.
OBJECTIVE_CHOICES = {"mae": "Cryo-EMMAE's MAE recipe (mask 0.5, pixel MSE)"}


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cryolib pretrain``."""
    parser.add_argument("--objective", default="mae",
                        help=f"pretraining objective: {', '.join(OBJECTIVE_CHOICES)} (default mae)")
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR",
                        help="dataset folders (CryoPPP layout; train split) or plain micrograph folders")
    parser.add_argument("--out", required=True, metavar="CKPT", help="checkpoint path; its folder gets the logs")
    parser.add_argument("--profile", default="default", help="sizes from cryolib.core.profiles (smoke/default/full)")
    parser.add_argument("--model", default=None, help="model size (default: the profile's)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the profile's)")
    parser.add_argument("--diameter-px", type=float, default=None,
                        help="particle diameter (px) of plain folders, and of dataset folders that lack one")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--resume", action="store_true", help="continue the checkpoint in --out's folder")


def collect_training_data(dirs: list[str], diameter_px: float | None) -> tuple[list[Path], list[Path], dict]:
    """--data folders -> (train paths, val paths, {path: diameter px}); raises CryolibError on bad folders."""
    from cryolib.io.datasets import load_dataset
    from cryolib.io.micrographs import list_micrographs

    if diameter_px is not None and not diameter_px > 0:
        raise CryolibError(f"--diameter-px must be > 0 (px), got {diameter_px}")
    train, val, diameters = [], [], {}
    for entry in dirs:
        root = Path(entry)
        if not root.is_dir():
            raise CryolibError(f"--data {root} is not a folder; pass dataset or micrograph folders")
        if (root / "micrographs").is_dir():
            try:
                ds = load_dataset(root)
            except CryolibError:
                if diameter_px is None:
                    raise
                ds = load_dataset(root, diameter_px)
            parts, d = (ds.split("train"), ds.split("val")), ds.diameter_px
            if not parts[0]:
                raise CryolibError(f"--data {root}: the dataset has no micrographs in its train split")
        else:
            if diameter_px is None:
                raise CryolibError(f"--data {root} is a plain micrograph folder; pass --diameter-px (px)")
            parts, d = (list_micrographs(root), []), float(diameter_px)
        train += parts[0]
        val += parts[1]
        diameters.update({str(p): d for p in parts[0] + parts[1]})
        log.info("--data %s: %d train, %d val micrographs, particle diameter %.1f px", root, *map(len, parts), d)
    return train, val, diameters


def _publish(working: Path, out: Path) -> None:
    """Make ``out`` the finished checkpoint: a hard link to the working copy (a copy where links fail)."""
    if out.resolve() == working.resolve():
        return
    with atomic_path(out) as tmp:
        tmp.unlink()
        try:
            os.link(working, tmp)
        except OSError:
            shutil.copy2(working, tmp)


def main(args: argparse.Namespace) -> int:
    """Run ``cryolib pretrain``; returns the exit code."""
    from cryolib.pick.cryoemmae import pretrain_mae
    from cryolib.core.profiles import get_profile
    from cryolib.core.results import git_commit, package_versions
    from cryolib.training.loop import CHECKPOINT_NAME

    t0 = time.time()
    if args.objective not in OBJECTIVE_CHOICES:
        names = "; ".join(f"{k} ({v})" for k, v in OBJECTIVE_CHOICES.items())
        raise CryolibError(f"unknown --objective {args.objective!r}; available: {names}")
    get_profile(args.profile)
    if args.epochs is not None and args.epochs < 1:
        raise CryolibError(f"--epochs must be at least 1, got {args.epochs}")
    out = Path(args.out)
    if out.is_dir():
        raise CryolibError(f"--out {out} is a folder; pass the checkpoint file path (e.g. {out / 'mae.pt'})")
    train_paths, val_paths, diameters = collect_training_data(args.data, args.diameter_px)
    working = out.parent / CHECKPOINT_NAME
    if args.resume and not working.exists() and out.is_file():
        log.info("resuming from %s", out)
        _publish(out, working)
    ckpt = pretrain_mae(train_paths, diameters, out.parent, profile=args.profile, model=args.model,
                        epochs=args.epochs, seed=args.seed, resume=args.resume, val_paths=val_paths or None)
    _publish(ckpt, out)
    run = {"command": "pretrain", "parameters": {k: v for k, v in vars(args).items() if not k.startswith("_")},
           "n_train": len(train_paths), "n_val": len(val_paths), "checkpoint": str(out), "git_commit": git_commit(),
           "packages": package_versions(), "wall_time_s": round(time.time() - t0, 1)}
    atomic_write_text(out.parent / "run.yaml", yaml.safe_dump(run, sort_keys=False))
    print(f"pretrained {args.objective} on {len(train_paths)} micrographs -> {out} "
          f"(logs in {out.parent / 'train_log.csv'})")
    return 0
