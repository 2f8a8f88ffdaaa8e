"""Picking speed and memory, Cryo-EMMAE against Topaz's pretrained extractor, in one run.

Usage::

    python benchmarks/pick.py --profile default --dataset sim-10291 --n 4 \\
        [--checkpoint results/default/checkpoints/cryoemmae_default.pt]

On the same micrographs, each method runs in its own child process (so its peak resident
memory is its own): Cryo-EMMAE inference with a picker checkpoint, Topaz ``resnet16_u64``
extraction at its own scale, and the LoG blob picker. Reports micrographs per second, the
model-loading time, peak RSS, and the ratios to Topaz. Also measures MAE pretraining
throughput (tiles/s) on the CPU, and on a GPU when one is present. Writes
``results/<profile>/benchmarks/pick.json`` and ``pick.md``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _pick_child(method: str, paths: list[str], diameter_px: float, checkpoint: str | None, queue) -> None:
    """Run one method on ``paths`` in this (child) process; report timings and peak RSS."""
    from cryolib.pick.cryoemmae import load_picker, pick_micrographs

    torch.set_num_threads(int(os.environ.get("CRYOLIB_BENCH_THREADS", "2")))
    t0 = time.perf_counter()
    picker = load_picker(checkpoint) if method == "cryoemmae" else None
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    picks = pick_micrographs(method, [Path(p) for p in paths], diameter_px, checkpoint=picker, progress=False)
    t_pick = time.perf_counter() - t1
    queue.put({"method": method, "load_s": t_load, "pick_s": t_pick, "micrographs": len(paths),
               "micrographs_per_s": len(paths) / t_pick, "picks": int(sum(len(v) for v in picks.values())),
               "peak_rss_mb": _peak_rss_mb()})


def time_method(method: str, paths: list[Path], diameter_px: float, checkpoint: Path | None) -> dict:
    """Run ``method`` in a fresh process and return its report."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_pick_child, args=(method, [str(p) for p in paths], diameter_px, str(checkpoint) if checkpoint else None, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


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


def main(argv: list[str] | None = None) -> int:
    from cryolib.core.atomic import atomic_write_text
    from cryolib.io.datasets import dataset_dir, load_dataset
    from cryolib.evaluate.scoring import good_micrographs
    from cryolib.io.micrographs import read_micrograph
    from cryolib.core.profiles import get_profile
    from cryolib.core.results import REPO_ROOT, results_dir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="default")
    p.add_argument("--dataset", default="sim-10291", help="a dataset analog already built by notebook 01")
    p.add_argument("--data-root", default=None)
    p.add_argument("--n", type=int, default=4, help="micrographs to pick")
    p.add_argument("--checkpoint", default=None, help="Cryo-EMMAE picker file (default: results/<profile>/checkpoints/cryoemmae_default.pt)")
    p.add_argument("--pretrain-steps", type=int, default=20)
    args = p.parse_args(argv)

    prof = get_profile(args.profile)
    ds = load_dataset(dataset_dir(args.dataset, args.profile, args.data_root))
    paths = good_micrographs(ds, list(ds.micrographs))[: args.n]
    ckpt = Path(args.checkpoint) if args.checkpoint else results_dir(args.profile) / "checkpoints" / "cryoemmae_default.pt"
    picking = [time_method(m, paths, ds.diameter_px, ckpt if m == "cryoemmae" else None) for m in ("cryoemmae", "topaz", "blob")]
    topaz = next(r for r in picking if r["method"] == "topaz")
    for r in picking:
        r["speed_vs_topaz"] = r["micrographs_per_s"] / topaz["micrographs_per_s"]
        r["memory_vs_topaz"] = r["peak_rss_mb"] / topaz["peak_rss_mb"]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    models = {prof.pretrain.model, "cryoemmae"}
    throughput = [pretrain_throughput(m, d, args.pretrain_steps) for d in devices for m in sorted(models)]
    report = {
        "profile": args.profile, "dataset": ds.name, "micrograph_px": list(read_micrograph(paths[0])[0].shape),
        "diameter_px": ds.diameter_px, "checkpoint": os.path.relpath(ckpt, REPO_ROOT) if ckpt.is_relative_to(REPO_ROOT) else str(ckpt), "picking": picking, "pretraining": throughput,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
    }
    out = results_dir(args.profile) / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "pick.json", json.dumps(report, indent=2) + "\n")
    lines = ["| method | micrographs/s | × Topaz speed | peak RSS (MB) | × Topaz memory | load (s) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['micrographs_per_s']:.3f} | {r['speed_vs_topaz']:.2f} | {r['peak_rss_mb']:.0f} | {r['memory_vs_topaz']:.2f} | {r['load_s']:.2f} |" for r in picking]
    lines += ["", "| MAE pretraining | device | tiles/s |", "|---|---|---|"]
    lines += [f"| {t['model']} | {t['device']} | {t['tiles_per_s']:.1f} |" for t in throughput]
    atomic_write_text(out / "pick.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
