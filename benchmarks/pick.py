"""Picking speed and memory: the whole ``cryolib pick`` process per method, paired, against Topaz.

Usage::

    python benchmarks/pick.py --sizes 1024 4096 --n 3 --repeats 2 [--checkpoint PICKER_FILE]

Micrographs: ``--n`` simulated sim-10291 micrographs per size (:func:`cryolib.simulate.dataset.build_dataset`,
``--frames`` frames, cached under ``--work``). Methods: Cryo-EMMAE (the shipped picker, or
``--checkpoint``), Topaz's pretrained ``resnet16_u64``, the LoG blob picker and the ViTDet detector
(the shipped general detector; with the reference it is first adapted to that micrograph).

* Whole process: ``cryolib pick --method M --input MICS --reference-coords REF.csv`` as a child
  process, timed from spawn to exit (imports, checkpoint load, the reference step: Cryo-EMMAE names
  its particle cluster, blob and Topaz calibrate their threshold on the reference micrograph,
  picking, writing). Peak RSS is the child's own (``os.wait4``). Within each repeat the methods run
  in turn (order rotated per repeat), so each ratio to Topaz is taken per repeat (paired), then
  the median over repeats.
* In-process, picker pre-fitted (the earlier figure): each method in a fresh child process on
  the same micrographs, timing only :func:`cryolib.pick.pick_micrographs` after the picker file is loaded.
  The detector's adaptation to the reference micrograph (stage 2) is timed on its own (``adapt_s``)
  before its picking.
* MAE pretraining throughput (tiles/s) on the CPU, and on a GPU when one is present.

Writes ``results/<profile>/benchmarks/pick.json`` and ``pick.md``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

METHODS = ("cryoemmae", "topaz", "blob", "detector")


# --------------------------------------------------------------------------- whole process
def cryolib_executable() -> Path:
    """The ``cryolib`` console script of this interpreter's environment (.venv/bin/cryolib)."""
    exe = Path(sys.executable).with_name("cryolib")
    if not exe.is_file():
        raise SystemExit(f"{exe} not found; install the package (pip install -e .) in this environment")
    return exe


def run_cli(method: str, mics: Path, diameter_px: float, reference: Path, out: Path,
            checkpoint: Path | None) -> dict:
    """One ``cryolib pick`` child process -> wall time (s), peak RSS (MB) and its run.yaml numbers."""
    cmd = [str(cryolib_executable()), "pick", "--method", method, "--input", str(mics), "--diameter-px",
           f"{diameter_px:.4f}", "--reference-coords", str(reference), "--out", str(out), "--format", "csv"]
    if method == "cryoemmae" and checkpoint is not None:
        cmd += ["--checkpoint", str(checkpoint)]
    log_path = out.with_suffix(".log")
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-10:])
        raise SystemExit(f"`{' '.join(cmd)}` failed with exit code {proc.returncode}:\n{tail}")
    run = yaml.safe_load((out / "run.yaml").read_text())
    return {"method": method, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024.0,
            "picks": run["n_picks"], "threshold": run.get("threshold"), "micrographs": run["n_micrographs"]}


def whole_process(methods: list[str], mics: Path, n: int, diameter_px: float, reference: Path, work: Path,
                  checkpoint: Path | None, repeats: int) -> list[dict]:
    """Each method ``repeats`` times, in turn (rotated), and per method the paired summary against Topaz."""
    runs: list[dict] = []
    for r in range(repeats):
        order = methods[r % len(methods):] + methods[: r % len(methods)]
        for method in order:
            res = run_cli(method, mics, diameter_px, reference, work / f"{method}_{r}", checkpoint)
            runs.append({**res, "repeat": r})
            print(f"  {method:9s} repeat {r}: {res['wall_s']:.1f} s, {res['peak_rss_mb']:.0f} MB, "
                  f"{res['picks']} picks", flush=True)
    summary = []
    by = {m: sorted((x for x in runs if x["method"] == m), key=lambda x: x["repeat"]) for m in methods}
    for m in methods:
        wall = statistics.median(x["wall_s"] for x in by[m])
        row = {"method": m, "micrographs": n, "repeats": repeats, "wall_s": wall, "micrographs_per_s": n / wall,
               "peak_rss_mb": max(x["peak_rss_mb"] for x in by[m]), "picks": by[m][0]["picks"],
               "threshold": by[m][0]["threshold"], "wall_s_runs": [x["wall_s"] for x in by[m]]}
        if "topaz" in by:
            row["speed_vs_topaz"] = statistics.median(t["wall_s"] / x["wall_s"] for t, x in zip(by["topaz"], by[m]))
            row["memory_vs_topaz"] = row["peak_rss_mb"] / max(x["peak_rss_mb"] for x in by["topaz"])
        summary.append(row)
    return summary


# --------------------------------------------------------------------------- in-process, picker pre-fitted
def _pick_child(method: str, paths: list[str], diameter_px: float, checkpoint: str | None, reference: str,
                queue) -> None:
    """Run one method on ``paths`` in this (child) process; report timings and peak RSS. The detector is
    first adapted to the reference micrograph (``paths[0]``, particles in ``reference``), timed apart."""
    from cryolib.io.coordinates import read_coordinates
    from cryolib.pick.cryoemmae import DEFAULT_CHECKPOINT, load_picker

    torch.set_num_threads(int(os.environ.get("CRYOLIB_BENCH_THREADS", "2")))
    t0 = time.perf_counter()
    picker = load_picker(checkpoint or DEFAULT_CHECKPOINT) if method == "cryoemmae" else None
    t_load = time.perf_counter() - t0
    t_adapt = None
    if method == "detector":
        from cryolib.pick.detector import shipped_detector
        from cryolib.pick.detector_training import adapt_detector

        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            adapted = adapt_detector(shipped_detector(), (Path(paths[0]), read_coordinates(reference)), diameter_px,
                                     tmp, progress=False)
            t_adapt = time.perf_counter() - t0
            _time_picking(method, paths, diameter_px, adapted, t_load, t_adapt, queue)
        return
    _time_picking(method, paths, diameter_px, picker, t_load, t_adapt, queue)


def _time_picking(method: str, paths: list[str], diameter_px: float, picker, t_load: float, t_adapt: float | None,
                  queue) -> None:
    from cryolib.pick import pick_micrographs

    t1 = time.perf_counter()
    picks = pick_micrographs(method, [Path(p) for p in paths], diameter_px, checkpoint=picker, progress=False)
    t_pick = time.perf_counter() - t1
    queue.put({"method": method, "load_s": t_load, "adapt_s": t_adapt, "pick_s": t_pick, "micrographs": len(paths),
               "micrographs_per_s": len(paths) / t_pick, "picks": int(sum(len(v) for v in picks.values())),
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0})


def in_process(methods: list[str], paths: list[Path], diameter_px: float, checkpoint: Path | None,
               reference: Path) -> list[dict]:
    """Each method once in a fresh spawned process; ratios to Topaz's (picking only: the detector's
    adaptation is reported apart, as ``adapt_s``)."""
    ctx = mp.get_context("spawn")
    rows = []
    for method in methods:
        queue = ctx.Queue()
        proc = ctx.Process(target=_pick_child, args=(method, [str(p) for p in paths], diameter_px,
                                                      str(checkpoint) if checkpoint else None, str(reference), queue))
        proc.start()
        rows.append(queue.get())
        proc.join()
    topaz = next((r for r in rows if r["method"] == "topaz"), None)
    for r in rows:
        if topaz:
            r["speed_vs_topaz"] = r["micrographs_per_s"] / topaz["micrographs_per_s"]
            r["memory_vs_topaz"] = r["peak_rss_mb"] / topaz["peak_rss_mb"]
    return rows


def pretrain_throughput(model: str, device: str, steps: int = 20, batch: int = 64) -> dict:
    """Tiles per second of MAE pretraining steps (forward, backward, AdamW) on random tiles."""
    from cryolib.models.objectives import cryoemmae_objective

    objective = cryoemmae_objective(model)
    net = objective.build_model().to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(batch, 1, 64, 64, device=device)
    for i in range(steps + 3):
        if i == 3:
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        loss, _ = objective.loss(net, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return {"model": model, "device": device, "batch": batch, "tiles_per_s": steps * batch / (time.perf_counter() - t0)}


# --------------------------------------------------------------------------- report
def _ratio(r: dict, key: str) -> str:
    return f"{r[key]:.2f}" if key in r else "-"


def markdown(report: dict) -> str:
    """The three tables of pick.md."""
    cfg = report["config"]
    lines = [f"Simulated sim-10291 micrographs ({cfg['n']} per size {cfg['sizes']}, {cfg['frames']} frames), particle diameter "
             f"{report['diameter_px']:.1f} px; {report['machine']['cpus']} CPUs, GPU {report['machine']['gpu']}, "
             f"1-min load average {report['machine']['load_average_1min']} (start, after each size): "
             "compare methods within one run only.", "",
             f"Whole `cryolib pick` process (reference fit included: --reference-coords on one micrograph), "
             f"median of {cfg['repeats']} paired repeat(s):", "",
             "| size (px) | method | micrographs/s | × Topaz speed | peak RSS (MB) | × Topaz memory | picks | threshold |",
             "|---|---|---|---|---|---|---|---|"]
    for size, rows in report["whole_process"].items():
        lines += [f"| {size}² | {r['method']} | {r['micrographs_per_s']:.3f} | {_ratio(r, 'speed_vs_topaz')} | "
                  f"{r['peak_rss_mb']:.0f} | {_ratio(r, 'memory_vs_topaz')} | {r['picks']} | "
                  f"{'all' if r['threshold'] is None else format(r['threshold'], '.3g')} |" for r in rows]
    lines += ["", "In-process, picker pre-fitted (picking only, after loading the picker file; default thresholds; "
              "the detector's adaptation to the reference micrograph is timed apart):", "",
              "| size (px) | method | micrographs/s | × Topaz speed | peak RSS (MB) | × Topaz memory | load (s) | "
              "adaptation (s) |", "|---|---|---|---|---|---|---|---|"]
    for size, rows in report["in_process"].items():
        lines += [f"| {size}² | {r['method']} | {r['micrographs_per_s']:.3f} | {_ratio(r, 'speed_vs_topaz')} | "
                  f"{r['peak_rss_mb']:.0f} | {_ratio(r, 'memory_vs_topaz')} | {r['load_s']:.2f} | "
                  f"{'-' if r.get('adapt_s') is None else format(r['adapt_s'], '.1f')} |" for r in rows]
    if report["pretraining"]:
        lines += ["", "| MAE pretraining | device | tiles/s |", "|---|---|---|"]
        lines += [f"| {t['model']} | {t['device']} | {t['tiles_per_s']:.1f} |" for t in report["pretraining"]]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's flags (sizes, counts, repeats, methods, ...)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="default", help="results/<profile>/benchmarks/ (and the pretraining model)")
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096], help="micrograph sides (px)")
    p.add_argument("--n", type=int, nargs="+", default=[3], help="micrographs per size (one value, or one per size)")
    p.add_argument("--repeats", type=int, default=2, help="paired repeats of the whole-process runs")
    p.add_argument("--frames", type=int, default=4, help="movie frames per simulated micrograph")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--checkpoint", default=None, help="Cryo-EMMAE picker file (default: the shipped one)")
    p.add_argument("--work", default=None, help="folder for the simulated micrographs and picks (default: a temp dir)")
    p.add_argument("--no-in-process", action="store_true", help="skip the in-process figure")
    p.add_argument("--pretrain-steps", type=int, default=20, help="0 skips the pretraining throughput")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if len(args.n) not in (1, len(args.sizes)) or min(args.n) < 1:
        p.error(f"--n takes one count >= 1, or one per size ({len(args.sizes)})")
    return args


def main(argv: list[str] | None = None) -> int:
    from cryolib.core.atomic import atomic_write_text
    from cryolib.core.profiles import get_profile
    from cryolib.core.provenance import machine_info
    from cryolib.core.results import REPO_ROOT, results_dir
    from cryolib.simulate.dataset import build_dataset

    args = parse_args(argv)
    counts = dict(zip(args.sizes, args.n * len(args.sizes) if len(args.n) == 1 else args.n))  # size -> micrographs

    work = Path(args.work or Path(tempfile.gettempdir()) / "cryolib-bench-pick")
    ckpt = Path(args.checkpoint).resolve() if args.checkpoint else None
    shown = (os.path.relpath(ckpt, REPO_ROOT) if ckpt and ckpt.is_relative_to(REPO_ROOT) else str(ckpt or "shipped"))
    report = {
        "profile": args.profile, "dataset": "sim-10291 (simulated)", "diameter_px": None, "checkpoint": shown,
        "config": {k: v for k, v in vars(args).items() if k in ("sizes", "n", "repeats", "frames", "methods", "seed")},
        "whole_process": {}, "in_process": {}, "pretraining": [],
        "machine": machine_info(),
    }
    report["machine"]["load_average_1min"] = [report["machine"]["load_average_1min"]]  # start, then after each size
    out = results_dir(args.profile) / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)

    def write() -> str:  # after each size, so a long run keeps what it finished
        atomic_write_text(out / "pick.json", json.dumps(report, indent=2) + "\n")
        md = markdown(report)
        atomic_write_text(out / "pick.md", md)
        return md

    for size in args.sizes:
        print(f"{size}²: simulating {counts[size]} micrograph(s)", flush=True)
        ds = build_dataset("sim-10291", counts[size], work / f"sim-10291-{size}", size_px=size, n_frames=args.frames,
                           seed=args.seed, overwrite="if-stale", progress=False)
        report["diameter_px"] = ds.diameter_px
        reference = ds.root / "ground_truth" / "particle_coordinates" / f"{ds.stems[0]}.csv"
        runs = work / f"runs-{size}-{time.strftime('%Y%m%d-%H%M%S')}"
        runs.mkdir(parents=True)
        report["whole_process"][size] = whole_process(list(args.methods), ds.root / "micrographs",
                                                      len(ds.micrographs), ds.diameter_px, reference, runs, ckpt,
                                                      args.repeats)
        if not args.no_in_process:
            report["in_process"][size] = in_process(list(args.methods), list(ds.micrographs), ds.diameter_px, ckpt,
                                                    reference)
        report["machine"]["load_average_1min"].append(round(os.getloadavg()[0], 2))
        write()
    if args.pretrain_steps > 0:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        models = sorted({get_profile(args.profile).pretrain.model, "cryoemmae"})
        report["pretraining"] = [pretrain_throughput(m, d, args.pretrain_steps) for d in devices for m in models]
    print(write())
    return 0


if __name__ == "__main__":
    sys.exit(main())
