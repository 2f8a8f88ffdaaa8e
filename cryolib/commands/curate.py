"""``cryolib curate``: accept or reject micrographs with a linear head on a frozen DRACO encoder (DRACO §5.3).

Examples::

    cryolib curate --input mics/ --diameter-px 40 --out curated/
    cryolib curate --input 'mics/*.mrc' --checkpoint my_head.pt --threshold 0.7 --out curated/

``--checkpoint`` is a curation head file (:func:`cryolib.curate.head.save_curation_head`; default: the
shipped ``cryolib/assets/draco_curation.pt``, which uses the shipped DRACO backbone, draco_default.pt, and
counts particles with the shipped detector, so it needs ``--diameter-px``). Writes
``<out>/quality.csv`` (micrograph, label accept/reject, score = P(accept)),
``<out>/selected_micrographs.star`` (``_rlnMicrographName`` of the accepted micrographs) and
``run.yaml`` (with ``out_of_range``: the micrographs outside the head's training range, whose scores
mean little, and the image statistic that put each there). Every input is read and scored before the
first file is written (one micrograph in memory at a time). The shipped head takes every feature
relative to the inputs of one call (a session; :mod:`cryolib.curate.features`), so curate one session
(one dose and pixel size, at least 8 micrographs) per call. A head that counts particles (``features["particles"]``,
:mod:`cryolib.studies.curation_particles`) needs ``--diameter-px``. Notebooks call the same
:func:`cryolib.curate.select.curate_micrographs`.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

from cryolib.core.errors import CryolibError

log = logging.getLogger(__name__)

QUALITY_CSV = "quality.csv"
SELECTION_STAR = "selected_micrographs.star"


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cryolib curate``."""
    parser.add_argument("--input", required=True, metavar="MICS", help="micrograph folder, glob or file")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--checkpoint", default=None, metavar="CKPT",
                        help="curation head file (default: the shipped cryolib/assets/draco_curation.pt)")
    parser.add_argument("--threshold", type=float, default=None, metavar="P",
                        help="accept when P(accept) >= P (default: the head's own, 0.5 unless it says otherwise)")
    parser.add_argument("--diameter-px", type=float, default=None, metavar="D",
                        help="particle diameter (px), for a head that counts particles: the shipped one does")


def main(args: argparse.Namespace) -> int:
    """Run ``cryolib curate``; returns the exit code."""
    from cryolib.core.provenance import write_run_yaml
    from cryolib.curate.head import load_curation_head
    from cryolib.curate.select import curate_micrographs, write_quality_csv, write_selection_star
    from cryolib.io.micrographs import list_micrographs

    t0 = time.time()
    if args.threshold is not None and not (math.isfinite(args.threshold) and 0.0 <= args.threshold <= 1.0):
        raise CryolibError(f"--threshold must be a probability in [0, 1], got {args.threshold}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CryolibError(f"--out {out} is a file; pass a folder for quality.csv and the STAR selection")
    paths = list_micrographs(args.input)
    bad = [str(p) for p in paths if any(c.isspace() for c in str(p))]
    if bad:
        raise CryolibError(f"micrograph paths with whitespace cannot go into a STAR file: {bad[0]}; rename them")
    if args.diameter_px is not None and not (math.isfinite(args.diameter_px) and args.diameter_px > 0):
        raise CryolibError(f"--diameter-px must be a positive number of px, got {args.diameter_px}")
    head = load_curation_head(args.checkpoint)
    coverage_of = None
    if head.needs_coverage and args.diameter_px is not None:
        from cryolib.studies.curation_particles import counter_for

        coverage_of = counter_for(head.features["particles"], args.diameter_px)
    elif args.diameter_px is not None:
        log.info("curation head %s counts no particles: --diameter-px is not used", head.name)
    table = curate_micrographs(paths, head, args.threshold, coverage_of)  # everything read and scored: now write
    accepted = table.loc[table["label"] == "accept", "micrograph"].tolist()
    out.mkdir(parents=True, exist_ok=True)
    write_quality_csv(out / QUALITY_CSV, table)
    write_selection_star(out / SELECTION_STAR, accepted)
    threshold = table.attrs["threshold"]
    outside = table[table["out_of_range"] != ""]
    write_run_yaml(out, "curate", args, t0, head=head.name, encoder=head.encoder, threshold=threshold,
                   n_micrographs=len(table), n_accepted=len(accepted),
                   out_of_range=dict(zip(outside["micrograph"], outside["out_of_range"])))
    warning = f"; {len(outside)} outside the head's training range (run.yaml)" if len(outside) else ""
    print(f"{len(accepted)}/{len(table)} micrographs accepted (threshold {threshold:g}){warning} "
          f"-> {out / SELECTION_STAR}")
    return 0
