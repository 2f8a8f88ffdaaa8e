"""``cryolib pick``: pick particles with Cryo-EMMAE, a LoG blob picker or Topaz (Cryo-EMMAE §3.3, §4.1).

Examples::

    cryolib pick --method cryoemmae --input mics/ --diameter-px 130 --out picks/
    cryolib pick --method cryoemmae --checkpoint runs/mae/mae.pt --reference-coords mic_0001.csv \\
        --input 'mics/*.mrc' --diameter-px 130 --out picks/ --format csv

``--checkpoint`` is a picker file (:func:`cryolib.pick.cryoemmae.save_picker`; default: the installed
one) or a ``cryolib pretrain`` checkpoint, which is then fitted on the inputs and needs
``--reference-coords``: the particles of ONE micrograph, which names the particle cluster.
Writes ``<out>/<stem>.<format>`` per micrograph (x, y in its px, with a score) and ``run.yaml``.
Everything is checked and picked before the first file is written. Notebooks call
:func:`cryolib.pick.cryoemmae.pick_micrographs`.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import pandas as pd
import yaml

from cryolib.core.atomic import atomic_write_text
from cryolib.core.errors import CryolibError

log = logging.getLogger(__name__)

FORMATS = ("star", "csv", "box")


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cryolib pick``."""
    from cryolib.pick.blob import DEFAULT_THRESHOLD

    parser.add_argument("--method", default="cryoemmae", choices=("cryoemmae", "blob", "topaz"),
                        help="picker (default cryoemmae)")
    parser.add_argument("--input", required=True, metavar="MICS", help="micrograph folder, glob or file")
    parser.add_argument("--diameter-px", type=float, required=True, help="particle diameter in input px")
    parser.add_argument("--checkpoint", default=None, metavar="CKPT",
                        help="cryoemmae: picker file or `cryolib pretrain` checkpoint (default: the installed one)")
    parser.add_argument("--reference-coords", default=None, metavar="CSV",
                        help="cryoemmae: the particles of ONE micrograph (x, y px), naming the particle cluster")
    parser.add_argument("--reference-micrograph", default=None, metavar="MRC",
                        help="the micrograph of --reference-coords (default: the input with the same stem)")
    parser.add_argument("--threshold", type=float, default=None,
                        help=f"keep picks with score >= T (default: cryoemmae all, blob {DEFAULT_THRESHOLD:g}, topaz all)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (one file per micrograph)")
    parser.add_argument("--format", default="star", choices=FORMATS, help="coordinate format (default star)")


def resolve_reference(coords_path: str | None, micrograph: str | None,
                      inputs: list[Path]) -> tuple[Path, pd.DataFrame] | None:
    """(reference micrograph, its coordinates) from the CLI flags; None without --reference-coords.

    The micrograph defaults to the input whose stem matches the coordinate file's.
    """
    from cryolib.io.micrographs import micrograph_stem, read_coordinates, read_micrograph

    if coords_path is None:
        if micrograph is not None:
            raise CryolibError("--reference-micrograph needs --reference-coords (the particles on it)")
        return None
    stem = micrograph_stem(coords_path)
    if micrograph is not None:
        ref = Path(micrograph)
    else:
        matches = [p for p in inputs if micrograph_stem(p) == stem]
        if not matches:
            raise CryolibError(f"--reference-coords {coords_path}: no input micrograph is named {stem!r}; "
                               "pass --reference-micrograph MRC (the micrograph these particles are on)")
        ref = matches[0]
    shape = read_micrograph(ref)[0].shape
    coords = read_coordinates(coords_path, image_shape=shape)
    if len(coords) == 0:
        raise CryolibError(f"--reference-coords {coords_path} holds no particles; annotate at least one")
    return ref, coords


def _summary(stem: str, df: pd.DataFrame, path: Path) -> str:
    if len(df) == 0:
        return f"{stem}: 0 picks -> {path}"
    return (f"{stem}: {len(df)} picks (score {df['score'].min():.3g} to {df['score'].max():.3g}) -> {path}")


def main(args: argparse.Namespace) -> int:
    """Run ``cryolib pick``; returns the exit code."""
    from cryolib.pick.cryoemmae import pick_micrographs
    from cryolib.io.micrographs import list_micrographs, write_coordinates
    from cryolib.core.results import git_commit, package_versions

    t0 = time.time()
    if not (math.isfinite(args.diameter_px) and args.diameter_px > 0):
        raise CryolibError(f"--diameter-px must be a finite number of px > 0, got {args.diameter_px}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CryolibError(f"--out {out} is a file; pass a folder for the coordinate files")
    if args.method != "cryoemmae" and (args.checkpoint or args.reference_coords or args.reference_micrograph):
        raise CryolibError(f"--checkpoint and --reference-* apply to --method cryoemmae only, not {args.method}")
    paths = list_micrographs(args.input)
    reference = resolve_reference(args.reference_coords, args.reference_micrograph, paths)
    picks = pick_micrographs(args.method, paths, args.diameter_px, checkpoint=args.checkpoint,
                             reference=reference, threshold=args.threshold)
    for stem, df in picks.items():  # everything picked: now write, each file atomically
        target = out / f"{stem}.{args.format}"
        write_coordinates(target, df, args.format, default_diameter=args.diameter_px)
        print(_summary(stem, df, target))
    run = {"command": "pick", "parameters": {k: v for k, v in vars(args).items() if not k.startswith("_")},
           "n_micrographs": len(picks), "n_picks": int(sum(len(df) for df in picks.values())),
           "git_commit": git_commit(), "packages": package_versions(), "wall_time_s": round(time.time() - t0, 1)}
    atomic_write_text(out / "run.yaml", yaml.safe_dump(run, sort_keys=False))
    log.info("%d micrographs, %d picks in %.1f s", len(picks), run["n_picks"], run["wall_time_s"])
    return 0
