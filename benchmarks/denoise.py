"""Denoising speed and memory: DRACO against Topaz-Denoise, each the whole ``cryolib denoise`` process, paired.

Usage::

    python benchmarks/denoise.py --sizes 1024 4096 --n 2 --repeats 2 [--checkpoint DRACO_CKPT]

Micrographs: ``--n`` synthetic micrographs per size (Poisson counts of a smooth random field,
1.0 Å/px; speed does not depend on content), written once under ``--work``. Methods: ``draco``
(the shipped model, or ``--checkpoint``), ``topaz`` (Topaz-Denoise's shipped ``unet_L2_v0.2.2``) and,
when asked for, ``draco-shifts2`` (``--shifts 2``: 4 passes).
Each run is one child process ``cryolib denoise --method M --input MICS --out DIR``, timed from
spawn to exit (imports, model load, denoising, writing); peak RSS is the child's own (``os.wait4``).
Within each repeat the methods run in turn (order rotated per repeat), so each ratio to Topaz is
taken per repeat (paired), then the median over repeats. CUDA is used when the machine has it.

Writes ``results/<profile>/benchmarks/<name>.json`` and ``<name>.md`` (``--name`` default ``denoise``;
``--results`` overrides the root). The shift ensemble's numbers: ``--sizes 1024 --methods draco topaz
draco-shifts2 --name denoise_shifts``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
#: Benchmark method -> the `cryolib denoise` flags it runs with.
FLAGS = {"draco": ["--method", "draco"], "topaz": ["--method", "topaz"],
         "draco-shifts2": ["--method", "draco", "--shifts", "2"]}
METHODS = tuple(FLAGS)
#: The child: `cryolib denoise` through cryolib.cli.main (registers the command if cli.py lacks it).
CHILD = ("import sys; from cryolib import cli; "
         "cli.COMMANDS.setdefault('denoise', ('cryolib.commands.denoise', 'denoise micrographs')); "
         "sys.exit(cli.main(sys.argv[1:]))")


def make_micrographs(folder: Path, size: int, n: int, seed: int = 0) -> Path:
    """``n`` synthetic size×size micrographs (float32 counts) in ``folder`` (kept between runs)."""
    from scipy import ndimage

    from cryolib.io.micrographs import write_mrc

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        path = folder / f"mic_{size}_{i:02d}.mrc"
        if not path.is_file():
            field = ndimage.gaussian_filter(rng.normal(size=(size, size)), 8.0)
            dose = 20.0 * (1.0 + 0.5 * field / (np.abs(field).max() + 1e-12))
            write_mrc(path, rng.poisson(dose).astype(np.float32), 1.0)
    return folder


def run_cli(method: str, mics: Path, out: Path, checkpoint: Path | None) -> dict:
    """One ``cryolib denoise`` child -> wall time (s) and peak RSS (MB)."""
    cmd = [sys.executable, "-c", CHILD, "denoise", *FLAGS[method], "--input", str(mics), "--out", str(out)]
    if method.startswith("draco") and checkpoint is not None:
        cmd += ["--checkpoint", str(checkpoint)]
    log_path = out.with_suffix(".log")
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-10:])
        raise SystemExit(f"`{' '.join(cmd)}` failed with exit code {code}:\n{tail}")
    return {"method": method, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024.0}


def paired(methods: list[str], mics: Path, n: int, size: int, work: Path, checkpoint: Path | None,
           repeats: int) -> list[dict]:
    """Each method ``repeats`` times in turn (rotated); per method the median and the paired ratios to Topaz."""
    runs = []
    for r in range(repeats):
        order = methods[r % len(methods):] + methods[: r % len(methods)]
        for method in order:
            res = {**run_cli(method, mics, work / f"{method}_{size}_{r}", checkpoint), "repeat": r}
            runs.append(res)
            print(f"  {size} px {method:6s} repeat {r}: {res['wall_s']:.1f} s, {res['peak_rss_mb']:.0f} MB", flush=True)
    by = {m: sorted((x for x in runs if x["method"] == m), key=lambda x: x["repeat"]) for m in methods}
    rows = []
    for m in methods:
        wall = statistics.median(x["wall_s"] for x in by[m])
        row = {"size_px": size, "method": m, "micrographs": n, "repeats": repeats, "wall_s": wall,
               "micrographs_per_s": n / wall, "peak_rss_mb": max(x["peak_rss_mb"] for x in by[m]),
               "wall_s_runs": [x["wall_s"] for x in by[m]]}
        if "topaz" in by:
            row["speed_vs_topaz"] = statistics.median(t["wall_s"] / x["wall_s"] for t, x in zip(by["topaz"], by[m]))
            row["memory_vs_topaz"] = row["peak_rss_mb"] / max(x["peak_rss_mb"] for x in by["topaz"])
        rows.append(row)
    return rows


def to_markdown(rows: list[dict], info: dict) -> str:
    lines = ["# Denoising speed and memory: DRACO vs Topaz-Denoise (whole `cryolib denoise` process)", "",
             f"Machine: {info['platform']}, {info['cpus']} CPUs, GPU: {info['gpu']}. "
             "Median over repeats; ratios paired per repeat (>1: faster / more memory than Topaz).", "",
             "| size (px) | method | micrographs/s | wall (s) | peak RSS (MB) | speed vs Topaz | memory vs Topaz |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size_px']} | {r['method']} | {r['micrographs_per_s']:.3f} | {r['wall_s']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} | {r.get('speed_vs_topaz', float('nan')):.2f} | "
                     f"{r.get('memory_vs_topaz', float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096], help="micrograph sides (px)")
    parser.add_argument("--n", type=int, default=2, help="micrographs per size")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=["draco", "topaz"], choices=METHODS,
                        help="draco-shifts2: DRACO with --shifts 2 (4 passes)")
    parser.add_argument("--name", default="denoise", help="results file stem (benchmarks/<name>.json, .md)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="DRACO checkpoint (default: the shipped one)")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench_denoise", help="scratch folder")
    parser.add_argument("--profile", default="default", help="results/<profile>/benchmarks/")
    parser.add_argument("--results", type=Path, default=None, help="results root (default: $CRYOLIB_RESULTS or results/)")
    args = parser.parse_args(argv)
    from cryolib.core.atomic import atomic_write_text
    from cryolib.core.provenance import machine_info
    from cryolib.core.results import results_dir

    rows = []
    for size in args.sizes:
        mics = make_micrographs(args.work / f"mics_{size}", size, args.n)
        rows += paired(list(args.methods), mics, args.n, size, args.work, args.checkpoint, args.repeats)
    info = machine_info()
    out = results_dir(args.profile, args.results) / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    report = {"machine": info, "sizes_px": args.sizes, "n": args.n, "repeats": args.repeats,
              "checkpoint": str(args.checkpoint) if args.checkpoint else "shipped", "rows": rows}
    atomic_write_text(out / f"{args.name}.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / f"{args.name}.md", to_markdown(rows, info))
    print(to_markdown(rows, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
