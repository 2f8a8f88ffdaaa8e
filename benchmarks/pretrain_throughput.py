"""DRACO pretraining throughput: tiles/s of the one training loop and the fraction of peak FLOP/s it reaches.

Usage::

    python benchmarks/pretrain_throughput.py --profile default            # the profile's DRACO-B/L stand-ins, CPU
    python benchmarks/pretrain_throughput.py --profile full --steps 60    # ViT-B/L at 256 px, bf16 AMP on a GPU

Each row trains one model size with :func:`cryolib.training.loop.train` (the same AMP, optimiser and batching as
notebook 04) on synthetic Poisson triplets (:func:`cryolib.training.throughput.synthetic_triplets`) and reports
tiles/s, the counted FLOPs of a training step per tile, the achieved TFLOP/s, the model-FLOP utilisation (MFU)
against the GPU's dense bf16 peak (none on a CPU), and the fraction of the rate a large matrix product reaches on
the same device and dtype. Two lines derived from the paper (§5: the warm-up's 270,000 micrographs x 16 crops x 200
epochs in 6 h, and DRACO's 400 epochs in 16 h, on 64 A800s) give the per-GPU rate and MFU the paper's timings
imply for ViT-B/L at 256 px, counted with the same FLOP counter; the paper names neither the size its timings
are for nor whether the DRACO stage iterates over the 270,000 micrographs or its 50,000 movies (the derived line
takes the 270,000, as notebook 04's table does).

Writes ``results/<profile>/benchmarks/pretrain_throughput.csv``, ``.md`` and ``.json`` (with the per-window
rates; ``--results`` overrides the root, ``--name`` the file stem).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
A800_BF16_TFLOPS = 312.0  # the paper's GPU, dense bf16 (vendor datasheet)


#: The columns of the table (CSV and Markdown), measured rows and paper-derived rows alike.
COLUMNS = ("source", "stage", "model", "parameters_M", "tile_px", "batch_size", "device", "compute_dtype",
           "tiles_per_s", "gflop_per_tile", "achieved_tflops", "peak_bf16_tflops", "mfu", "matmul_tflops",
           "fraction_of_matmul")


def paper_rows(tile_px: int = 256) -> list[dict]:
    """Per-A800 crops/s and the MFU they imply for DRACO-B/L at ``tile_px`` (module docstring), as table rows."""
    import torch

    from cryolib.models.objectives import get_objective
    from cryolib.models.vit import get_config
    from cryolib.studies.draco_pretraining import PAPER
    from cryolib.training.throughput import step_flops

    gpus = int(PAPER["gpus"].split()[0])
    rows = []
    for stage in ("warmup", "draco"):
        crops_per_gpu = PAPER["crops_per_epoch"] * PAPER[stage]["epochs"] / (PAPER[stage]["hours"] * 3600) / gpus
        for size in ("draco-b", "draco-l"):
            cfg = get_config(size, img_size=tile_px)
            tiles = torch.zeros(1, 1, tile_px, tile_px)
            objective = get_objective("draco" if stage == "draco" else "mae", cfg)
            batch = {"full": tiles, "odd": tiles, "even": tiles} if stage == "draco" else tiles
            gflop = step_flops(objective, batch) / 1e9
            tflops = gflop * crops_per_gpu / 1e3
            n_params = sum(p.numel() for p in objective.build_model().parameters())
            rows.append({"source": "paper §5 (derived)", "stage": "DRACO" if stage == "draco" else "MAE warm-up",
                         "model": size, "parameters_M": n_params / 1e6, "tile_px": tile_px, "batch_size": PAPER["batch"] // gpus,
                         "device": "A800 (one of 64)", "compute_dtype": "bfloat16 (assumed)",
                         "tiles_per_s": crops_per_gpu, "gflop_per_tile": gflop, "achieved_tflops": tflops,
                         "peak_bf16_tflops": A800_BF16_TFLOPS, "mfu": tflops / A800_BF16_TFLOPS})
    return rows


def to_markdown(table, info: dict) -> str:
    head = ["# DRACO pretraining throughput (the one training loop, synthetic triplets)", "",
            f"Machine: {info['platform']}, {info['cpus']} CPUs, torch {info['torch']} ({info['torch_threads']} "
            f"threads), GPU: {info['gpu']}. FLOPs counted by torch.utils.flop_counter (matrix products, "
            "convolutions, attention; forward + backward) per tile of a training step; MFU = achieved / dense bf16 "
            "peak; matmul = the rate of a large square matrix product on the same device and dtype. Paper rows: "
            "the per-GPU rate that §5's timings imply (benchmarks/pretrain_throughput.py says what is assumed).", "", ""]
    shown = table.astype(object).where(table.notna(), None)  # blanks print as "—"
    return "\n".join(head) + shown.to_markdown(index=False, floatfmt=".3f", missingval="—") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", help="the profile whose DRACO-B/L sizes, tile and batch run")
    parser.add_argument("--models", nargs="+", default=None, help="model sizes (default: the profile's B and L)")
    parser.add_argument("--tile-px", type=int, default=None, help="tile side (px; default: the profile's)")
    parser.add_argument("--batch-size", type=int, default=None, help="per step (default: the profile's)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per model (the first fifth is warm-up)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--num-workers", type=int, default=0, help="data-loader processes (0: as notebook 04)")
    parser.add_argument("--name", default="pretrain_throughput", help="results file stem")
    parser.add_argument("--results", type=Path, default=None, help="results root (default: $CRYOLIB_RESULTS or results/)")
    parser.add_argument("--no-paper", action="store_true", help="skip the paper-derived lines")
    args = parser.parse_args(argv)
    import pandas as pd
    import torch

    from cryolib.core.atomic import atomic_write_text
    from cryolib.core.errors import CryolibError
    from cryolib.core.profiles import get_profile
    from cryolib.core.provenance import machine_info
    from cryolib.core.results import results_dir
    from cryolib.training.distributed import amp_dtype
    from cryolib.training.throughput import matmul_tflops, resolve_device, throughput_row

    try:
        sizes = get_profile(args.profile).draco
        models = args.models or [sizes.model_b, sizes.model_l]
        tile, batch = args.tile_px or sizes.tile_px, args.batch_size or sizes.batch_size
        device = resolve_device(args.device)
        ceiling = matmul_tflops(device, amp_dtype("auto", device) or torch.float32)
        rows = []
        for model in models:
            row = throughput_row(model, tile, batch, args.steps, device=device.type, matmul_ceiling=ceiling,
                                 num_workers=args.num_workers)
            rows.append({"source": "measured (this machine)", "stage": "DRACO", **row})
            print(f"{model}: {row['tiles_per_s']:.1f} tiles/s, {row['achieved_tflops']:.3f} TFLOP/s, "
                  f"{row['fraction_of_matmul']:.2f} of the matmul rate", flush=True)
        paper = [] if args.no_paper else paper_rows()
    except CryolibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    info = machine_info()
    out = results_dir(args.profile, args.results) / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    report = {"machine": info, "profile": args.profile, "steps": args.steps, "num_workers": args.num_workers,
              "rows": rows, "paper_derived": paper}
    table = pd.DataFrame(rows + paper).reindex(columns=list(COLUMNS))
    atomic_write_text(out / f"{args.name}.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / f"{args.name}.csv", table.to_csv(index=False))
    text = to_markdown(table, info)
    atomic_write_text(out / f"{args.name}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
