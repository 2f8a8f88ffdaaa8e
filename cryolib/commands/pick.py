"""``cryolib pick``: pick particles with Cryo-EMMAE, a LoG blob picker, Topaz or the ViTDet detector
(Cryo-EMMAE §3.3, §4.1; DRACO §5).

Examples::

    cryolib pick --input mics/ --diameter-px 130 --reference-coords mic_0001.csv --out picks/
    cryolib pick --method cryoemmae --input mics/ --diameter-px 130 --out picks/
    cryolib pick --method cryoemmae --checkpoint runs/mae/mae.pt --reference-coords mic_0001.csv \\
        --input 'mics/*.mrc' --diameter-px 130 --out picks/ --format csv

``--method`` is any registered picker (:func:`cryolib.pick.picker_names`: cryoemmae, blob, topaz, detector);
the default is the detector (:data:`DEFAULT_METHOD`), which needs detectron2 (installed by ``./run_all.sh``).
``--checkpoint`` (cryoemmae) is a picker file (:func:`cryolib.pick.cryoemmae.save_picker`; default:
the installed one) or a ``cryolib pretrain`` checkpoint, which is then fitted on the inputs and
needs ``--reference-coords``. ``--checkpoint`` (detector) is a detector checkpoint (default: the installed
general detector, ``cryolib/assets/detector_default.pt``). ``--reference-coords``, the particles of ONE
micrograph, is accepted by every method: Cryo-EMMAE names its particle cluster from it; the detector is
first adapted to it (seeded by ``--seed``); blob, Topaz and the detector calibrate their score threshold on
it (best F1, overlap60) unless ``--threshold`` is given.
Writes ``<out>/<stem>.<format>`` per micrograph (x, y in its px, with a score) and ``run.yaml``
(with the threshold used). Everything is checked and picked before the first file is written.
Notebooks call the same :func:`cryolib.pick.pick_micrographs`.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import pandas as pd

from cryolib.core.errors import CryolibError

log = logging.getLogger(__name__)

FORMATS = ("star", "csv", "box")
#: The default picker: the method with the best mean F1 on micrographs no training saw (issue 14's check,
#: ``benchmarks/picking_generalisation.py``, results/default/tables/picking_generalisation.md: the detector
#: adapted to one annotated micrograph led on the mean over three unseen analogs and two real CryoPPP sets).
DEFAULT_METHOD = "detector"


def _defaults_text() -> str:
    from cryolib.pick.registry import PICKERS

    return ", ".join(f"{name} {'all' if cls.default_threshold is None else f'{cls.default_threshold:g}'}"
                     for name, cls in sorted(PICKERS.items()))


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cryolib pick``."""
    from cryolib.pick import picker_names

    parser.add_argument("--method", default=DEFAULT_METHOD, choices=picker_names(),
                        help=f"picker (default {DEFAULT_METHOD}: the one that generalised best, see the module "
                             "docstring)")
    parser.add_argument("--input", required=True, metavar="MICS", help="micrograph folder, glob or file")
    parser.add_argument("--diameter-px", type=float, required=True, help="particle diameter in input px")
    parser.add_argument("--checkpoint", default=None, metavar="CKPT",
                        help="cryoemmae: picker file or `cryolib pretrain` checkpoint; detector: detector checkpoint "
                             "(default: the installed one)")
    parser.add_argument("--reference-coords", default=None, metavar="CSV",
                        help="the particles of ONE micrograph (x, y px): cryoemmae names its particle cluster "
                             "from them, the detector adapts to them; blob, topaz and detector calibrate their "
                             "threshold on them")
    parser.add_argument("--reference-micrograph", default=None, metavar="MRC",
                        help="the micrograph of --reference-coords (default: the input with the same stem)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="keep picks with score >= T. Without it, --reference-coords calibrates the threshold "
                             "(best F1 on the reference micrograph); without both, the method's operating point: "
                             f"{_defaults_text()}")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed (cryoemmae: fitting a pretraining checkpoint; topaz: normalisation; "
                             "detector: adaptation)")
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
    from cryolib.core.provenance import write_run_yaml
    from cryolib.io.micrographs import list_micrographs, write_coordinates
    from cryolib.pick import pick_micrographs

    t0 = time.time()
    if not (math.isfinite(args.diameter_px) and args.diameter_px > 0):
        raise CryolibError(f"--diameter-px must be a finite number of px > 0, got {args.diameter_px}")
    if args.threshold is not None and math.isnan(args.threshold):
        raise CryolibError("--threshold is NaN; pass a number, or leave it out for the default")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CryolibError(f"--out {out} is a file; pass a folder for the coordinate files")
    paths = list_micrographs(args.input)
    reference = resolve_reference(args.reference_coords, args.reference_micrograph, paths)
    picks = pick_micrographs(args.method, paths, args.diameter_px, checkpoint=args.checkpoint,
                             reference=reference, threshold=args.threshold, seed=args.seed)
    threshold = next(iter(picks.values())).attrs.get("threshold", args.threshold)
    for stem, df in picks.items():  # everything picked: now write, each file atomically
        target = out / f"{stem}.{args.format}"
        write_coordinates(target, df, args.format, default_diameter=args.diameter_px)
        print(_summary(stem, df, target))
    n_picks = int(sum(len(df) for df in picks.values()))
    write_run_yaml(out, "pick", args, t0, n_micrographs=len(picks), n_picks=n_picks, threshold=threshold)
    log.info("%s: %d micrographs, %d picks (threshold %s) in %.1f s", args.method, len(picks), n_picks,
             threshold, time.time() - t0)
    return 0
