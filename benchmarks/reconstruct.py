"""Reconstruction speed: seconds to go from N particle boxes to two half-maps, their FSC and the resolution.

Usage::

    python benchmarks/reconstruct.py --n 500 1000 2000 --box 64 [--profile default]

Particles: N boxes of white noise, B × B px, with uniformly random poses and one CTF per 50 particles
(speed does not depend on content). Each N is timed once, in one process, in two stages: the CTF phase flip
(:func:`cryolib.reconstruct.particles.phase_flip`) and the reconstruction
(:func:`cryolib.reconstruct.single_particle.reconstruct_particles`: Fourier-slice insertion into two half-maps
at pad factor 2, FSC, resolution). How the time grows with N is the slope of log(time) against log(N)
(least squares; 1 = linear). A warm-up run at the smallest N comes first and is not reported.

Writes ``results/<profile>/benchmarks/reconstruct.json`` and ``reconstruct.md`` (``--results`` overrides the root).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd


def particles(n: int, box: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """``n`` noise boxes, random rotations and an optics table (defocus 1-2.5 µm, one value per 50)."""
    from cryolib.simulate.potential import random_rotations

    rng = np.random.default_rng(seed)
    defocus = np.repeat(rng.uniform(1.0, 2.5, n // 50 + 1), 50)[:n]
    optics = pd.DataFrame({"defocus_u_um": defocus + 0.02, "defocus_v_um": defocus - 0.02,
                           "astigmatism_angle_deg": 30.0, "voltage_kV": 300.0, "cs_mm": 2.7, "amplitude_contrast": 0.07})
    return rng.normal(size=(n, box, box)).astype(np.float32), random_rotations(n, rng), optics


def time_one(n: int, box: int, pixel_size_A: float) -> dict:
    from cryolib.reconstruct.particles import phase_flip
    from cryolib.reconstruct.single_particle import reconstruct_particles

    boxes, rot, optics = particles(n, box)
    t0 = time.perf_counter()
    flipped = phase_flip(boxes, pixel_size_A, optics)
    t1 = time.perf_counter()
    rec = reconstruct_particles(flipped, rot, pixel_size_A, diameter_px=box / 1.5, seed=0)
    t2 = time.perf_counter()
    total = t2 - t0
    return {"n_particles": n, "box_px": box, "phase_flip_s": t1 - t0, "reconstruct_s": t2 - t1, "total_s": total,
            "particles_per_s": n / total, "resolution_A": rec.resolution_A}


def growth_exponent(rows: list[dict]) -> float:
    """Least-squares slope of log(total seconds) against log(N)."""
    n = np.log([r["n_particles"] for r in rows])
    t = np.log([r["total_s"] for r in rows])
    return float(np.polyfit(n, t, 1)[0])


def to_markdown(rows: list[dict], exponent: float, info: dict) -> str:
    lines = ["# Reconstruction speed: N particles to two half-maps, FSC and resolution (CPU)", "",
             f"Machine: {info['platform']}, {info['cpus']} CPUs, {info['torch_threads']} torch threads, "
             f"1-min load average {info['load_average_1min']:.1f} at the start. One run per N; "
             "noise particles (the resolution in the JSON is therefore meaningless).", "",
             "| N | box (px) | phase flip (s) | insertion + FSC (s) | total (s) | particles/s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n_particles']} | {r['box_px']} | {r['phase_flip_s']:.2f} | {r['reconstruct_s']:.2f} | "
                     f"{r['total_s']:.2f} | {r['particles_per_s']:.0f} |")
    lines += ["", f"Time grows as N^{exponent:.2f} (least-squares slope of log time on log N; 1 = linear)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[500, 1000, 2000], help="particle counts (at least 3)")
    parser.add_argument("--box", type=int, default=64, help="box side (px, even)")
    parser.add_argument("--pixel-size", type=float, default=4.0, help="Å/px")
    parser.add_argument("--profile", default="default", help="results/<profile>/benchmarks/")
    parser.add_argument("--results", default=None, help="results root (default: $CRYOLIB_RESULTS or results/)")
    args = parser.parse_args(argv)
    if len(set(args.n)) < 3:
        parser.error("give at least three different --n to fit the growth with N")
    from cryolib.core.atomic import atomic_write_text
    from cryolib.core.provenance import machine_info
    from cryolib.core.results import results_dir

    info = machine_info()
    time_one(min(args.n), args.box, args.pixel_size)  # warm-up: imports, FFT plans
    rows = []
    for n in sorted(args.n):
        rows.append(time_one(n, args.box, args.pixel_size))
        print(f"  N={n}: {rows[-1]['total_s']:.2f} s ({rows[-1]['particles_per_s']:.0f} particles/s)", flush=True)
    exponent = growth_exponent(rows)
    out = results_dir(args.profile, args.results) / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    report = {"machine": info, "box_px": args.box, "pixel_size_A": args.pixel_size, "rows": rows,
              "growth_exponent": exponent}
    atomic_write_text(out / "reconstruct.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "reconstruct.md", to_markdown(rows, exponent, info))
    print(to_markdown(rows, exponent, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
