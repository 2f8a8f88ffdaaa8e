"""Time :func:`cryolib.simulate.micrograph.simulate_micrograph` end to end and per stage.

Usage::

    python benchmarks/simulate.py --size 1024 --frames 40 --particles 150 --pixel-size 4 \\
        --repeats 2 --out results/benchmarks/simulate.json

Writes the machine (CPU count, torch threads), the settings and the median seconds per
stage (specimen, projection, optics, exposure, motion correction, total) as JSON, and
prints a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

from cryolib.core.atomic import atomic_write_text
from cryolib.core.reproducibility import child_rng
from cryolib.simulate.micrograph import AcquisitionConfig, SampleConfig, simulate_micrograph
from cryolib.simulate.structures import make_structure

STAGES = ("specimen", "projection", "optics", "exposure", "motion_correction")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1024, help="micrograph side (px)")
    p.add_argument("--frames", type=int, default=40, help="movie frames")
    p.add_argument("--particles", type=int, default=150, help="particles in the field")
    p.add_argument("--pixel-size", type=float, default=4.0, help="Å/px")
    p.add_argument("--diameter", type=float, default=200.0, help="particle diameter (Å)")
    p.add_argument("--family", default="globular", help="structure family")
    p.add_argument("--repeats", type=int, default=2, help="timed runs (the median is reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (imports, caches)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/benchmarks/simulate.json")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark; return the JSON-able report."""
    structure = make_structure(args.family, args.diameter, child_rng(args.seed, "benchmark-structure"))
    acq = AcquisitionConfig(size_px=args.size, pixel_size_A=args.pixel_size, n_frames=args.frames)
    per_1024 = max(0, round(args.particles * 1024**2 / args.size**2))
    sample = SampleConfig(particles_per_1024=(per_1024, per_1024), contaminants_per_1024=0.0)
    runs = []
    for i in range(args.warmup + args.repeats):
        t0 = time.perf_counter()
        sim = simulate_micrograph(structure, acq, sample, child_rng(args.seed, "benchmark", i))
        total = time.perf_counter() - t0
        if i >= args.warmup:
            runs.append({"total": total, **{k: float(sim.meta["timing_s"].get(k, np.nan)) for k in STAGES}, "n_particles": sim.meta["n_particles"]})
    median = {k: statistics.median(r[k] for r in runs) for k in ("total", *STAGES)}
    return {
        "benchmark": "simulate_micrograph",
        "settings": {k: getattr(args, k) for k in ("size", "frames", "particles", "pixel_size", "diameter", "family", "repeats", "warmup", "seed")},
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "median_s": median,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    report = run(args)
    atomic_write_text(args.out, json.dumps(report, indent=1))
    m = report["median_s"]
    stages = ", ".join(f"{k} {m[k]:.2f}" for k in STAGES)
    print(  # the script's one-line summary (the library itself only logs)
        f"simulate_micrograph {args.size}² px, {args.frames} frames, {args.particles} particles: "
        f"median {m['total']:.2f} s ({stages}) on {report['machine']['cpu_count']} CPUs / "
        f"{report['machine']['torch_threads']} torch threads -> {args.out}"
    )
    return report


if __name__ == "__main__":
    main()
