"""``cryolib evaluate-picks``: score picked coordinates against ground truth (Cryo-EMMAE §4.1).

Example::

    cryolib evaluate-picks --pred picks/ --truth data/default/sim-10291/ground_truth/particle_coordinates \\
        --out eval/

Prints per-micrograph and pooled P/R/F1/IoU with the matching rule. With ``--out DIR`` it also
writes ``DIR/evaluation.json`` (the full report) and ``DIR/run.yaml``; the input folders are never
written to. Notebooks call :func:`cryolib.evaluate.pick_files.evaluate_pick_dirs`.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from cryolib.core.atomic import atomic_write_text
from cryolib.core.errors import CryolibError
from cryolib.core.jsonable import to_jsonable

log = logging.getLogger(__name__)

REPORT_NAME = "evaluation.json"


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cryolib evaluate-picks``."""
    from cryolib.evaluate.metrics import RULES

    parser.add_argument("--pred", required=True, metavar="DIR",
                        help="folder of predicted coordinate files (csv, star, box, txt)")
    parser.add_argument("--truth", required=True, metavar="DIR",
                        help="folder of ground-truth coordinate files (CryoPPP csv)")
    parser.add_argument("--diameter-px", type=float, default=None,
                        help="box side in px (default: the truth's Diameter column, per micrograph)")
    parser.add_argument("--rule", choices=RULES, default="overlap60",
                        help="matching rule: overlap60 (paper), iou60 (stricter), repo-nearest (Cryo-EMMAE code)")
    parser.add_argument("--threshold", type=float, default=None, help="keep picks with score >= T")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help=f"output folder: {REPORT_NAME} and run.yaml (default: print the table only)")


def main(args: argparse.Namespace) -> int:
    """Run ``cryolib evaluate-picks``; returns the exit code."""
    from cryolib.core.provenance import write_run_yaml
    from cryolib.evaluate.pick_files import evaluate_pick_dirs, format_report

    t0 = time.time()
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise CryolibError(f"--out {out} is a file; pass a folder (it gets {REPORT_NAME} and run.yaml)")
    report = evaluate_pick_dirs(args.pred, args.truth, args.diameter_px, args.rule, args.threshold)
    print(format_report(report))
    if out is not None:
        path = atomic_write_text(out / REPORT_NAME, json.dumps(to_jsonable(report), indent=2) + "\n")
        pooled = report["pooled"]
        write_run_yaml(out, "evaluate-picks", args, t0, n_micrographs=len(report["per_micrograph"]),
                       f1=pooled["f1"], precision=pooled["precision"], recall=pooled["recall"])
        log.info("wrote %s", path)
    return 0
