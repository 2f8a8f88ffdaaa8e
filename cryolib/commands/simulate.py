"""``cryolib simulate``: write one simulated dataset analog in the CryoPPP layout.

Example::

    cryolib simulate --dataset sim-10081 --n-micrographs 10 --size 1024 --seed 0 --out data/my/sim-10081
"""

from __future__ import annotations

import argparse
import logging

from cryolib.core.errors import CryolibError

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="registry name (sim-10081) or EMPIAR id (10081); see cryolib/io/datasets.yaml")
    parser.add_argument("--n-micrographs", type=int, required=True, help="number of micrographs to simulate")
    parser.add_argument("--size", type=int, default=1024, help="micrograph side (px; default 1024)")
    parser.add_argument("--frames", type=int, default=40, help="movie frames per micrograph (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument("--out", required=True, help="output folder (created; resumed if it holds the same dataset)")
    parser.add_argument("--keep-frames", action="store_true", help="also write the raw movie frames (TIFF, counts)")
    parser.add_argument("--overwrite", action="store_true", help="replace a folder made with other settings")


def main(args: argparse.Namespace) -> int:
    from cryolib.io.datasets import get_spec
    from cryolib.simulate.dataset import build_dataset

    get_spec(args.dataset)  # fail fast on an unknown name, before any work
    if args.n_micrographs < 1:
        raise CryolibError(f"--n-micrographs must be at least 1, got {args.n_micrographs}")
    if args.size < 64:
        raise CryolibError(f"--size must be at least 64 px, got {args.size}")
    if args.frames < 2:
        raise CryolibError(f"--frames must be at least 2 (odd and even halves), got {args.frames}")
    ds = build_dataset(
        args.dataset,
        args.n_micrographs,
        args.out,
        size_px=args.size,
        n_frames=args.frames,
        seed=args.seed,
        keep_frames=args.keep_frames,
        overwrite=args.overwrite,
    )
    n_good = int((ds.metadata.get("quality") == "good").sum()) if "quality" in ds.metadata else len(ds.micrographs)
    print(f"{ds.name}: {len(ds.micrographs)} micrographs ({n_good} good) in {ds.root}; particle diameter {ds.diameter_px:.1f} px")
    return 0
