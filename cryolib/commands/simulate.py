"""``cryolib simulate``: write one simulated dataset analog in the CryoPPP layout.

Example::

    cryolib simulate --dataset sim-10081 --profile smoke --seed 0 --out data/mine/sim-10081
    cryolib simulate --dataset sim-10081 --n-micrographs 10 --size 1024 --frames 40 --out data/mine/sim-10081

Sizes come from ``--profile`` (:mod:`cryolib.core.profiles`: micrograph side, movie frames, and the
number of micrographs for the entry's role); ``--size``, ``--frames`` and ``--n-micrographs`` override
them. Writes the dataset into ``--out`` and ``--out/run.yaml``. Notebooks call
:func:`cryolib.simulate.dataset.build_dataset`.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from cryolib.core.errors import CryolibError

log = logging.getLogger(__name__)

PROFILE_CHOICES = ("smoke", "default", "full")


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cryolib simulate``."""
    parser.add_argument("--dataset", required=True,
                        help="registry name (sim-10081) or EMPIAR id (10081); see cryolib/io/datasets.yaml")
    parser.add_argument("--profile", default="default", choices=PROFILE_CHOICES,
                        help="sizes from cryolib.core.profiles (default: default)")
    parser.add_argument("--n-micrographs", type=int, default=None,
                        help="number of micrographs (default: the profile's count for the entry's role)")
    parser.add_argument("--size", type=int, default=None, help="micrograph side in px (default: the profile's)")
    parser.add_argument("--frames", type=int, default=None, help="movie frames per micrograph (default: the profile's)")
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (created; resumed if it holds the same dataset)")
    parser.add_argument("--keep-frames", action="store_true", help="also write the raw movie frames (TIFF, counts)")
    parser.add_argument("--overwrite", action="store_true", help="replace a folder made with other settings")


def resolve_sizes(args: argparse.Namespace) -> tuple[int, int, int]:
    """(n_micrographs, size px, frames): the flags where given, else the profile's; checked."""
    from cryolib.core.profiles import get_profile
    from cryolib.io.datasets import get_spec

    spec = get_spec(args.dataset)  # fail fast on an unknown name, before any work
    sim = get_profile(args.profile).simulation
    n = sim.micrographs_for(spec.roles) if args.n_micrographs is None else args.n_micrographs
    size = sim.micrograph_px if args.size is None else args.size
    frames = sim.n_frames if args.frames is None else args.frames
    if n < 1:
        raise CryolibError(f"--n-micrographs must be at least 1, got {n}")
    if size < 64:
        raise CryolibError(f"--size must be at least 64 px, got {size}")
    if frames < 2:
        raise CryolibError(f"--frames must be at least 2 (odd and even halves), got {frames}")
    return n, size, frames


def main(args: argparse.Namespace) -> int:
    """Run ``cryolib simulate``; returns the exit code."""
    from cryolib.core.provenance import write_run_yaml
    from cryolib.simulate.dataset import build_dataset

    t0 = time.time()
    n, size, frames = resolve_sizes(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CryolibError(f"--out {out} is a file; pass a folder for the dataset")
    ds = build_dataset(args.dataset, n, out, size_px=size, n_frames=frames, seed=args.seed,
                       keep_frames=args.keep_frames, overwrite=args.overwrite)
    n_good = int((ds.metadata.get("quality") == "good").sum()) if "quality" in ds.metadata else len(ds.micrographs)
    write_run_yaml(out, "simulate", args, t0, n_micrographs=n, size_px=size, n_frames=frames, dataset=ds.name)
    print(f"{ds.name}: {len(ds.micrographs)} micrographs ({n_good} good) in {ds.root}; "
          f"particle diameter {ds.diameter_px:.1f} px")
    return 0
