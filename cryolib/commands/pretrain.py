"""``cryolib pretrain``: pretrain an encoder on micrographs (Cryo-EMMAE §3.2, §4.1).

Examples::

    cryolib pretrain --objective cryoemmae --data data/default/sim-10291 --out runs/mine/cryoemmae --profile default
    cryolib pretrain --objective mae --synthetic 8 --out runs/smoke --profile smoke --max-steps 3
    cryolib pretrain --objective draco --data data/smoke/sim-10291 --out runs/mine/draco --profile smoke

``--objective`` is a name in the objective registry (:func:`cryolib.models.objectives.objective_names`):
``cryoemmae`` (Cryo-EMMAE's recipe, the study's default) or ``mae`` (He et al.'s). ``--data`` takes
dataset folders (CryoPPP layout: the train split trains, the val split validates, the particle
diameter comes from the dataset) or plain micrograph folders (all micrographs train; ``--diameter-px``
is then required); ``--synthetic N`` trains on N synthetic blob images instead (a smoke run; the DDP
entry point under ``torchrun``). ``--objective draco`` trains on the (full, odd, even) triplets of the
dataset folders' ``movies/`` (:class:`cryolib.processing.triplets.TripletDataset`) with the profile's
DRACO sizes (:class:`cryolib.core.profiles.DracoSizes`): from ``--init-from MAE_CKPT`` (a plain-MAE
warm-up of the same size), else after the profile's MAE warm-up into ``DIR/warmup/`` (DRACO §5).
``--out DIR`` gets ``checkpoint.pt`` (what ``--resume`` continues),
``train_log.csv`` (``val_log.csv`` with a val split) and ``run.yaml``. Notebooks call
:func:`cryolib.pick.cryoemmae.pretrain_mae` and :func:`cryolib.studies.draco_pretraining.train_draco`.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from cryolib.core.errors import CryolibError
from cryolib.training.loop import CHECKPOINT_NAME

log = logging.getLogger(__name__)

#: Objectives that train on preprocessed micrograph tiles through pretrain_mae (Cryo-EMMAE §3.1-3.2).
MICROGRAPH_OBJECTIVES = ("cryoemmae", "mae")
PROFILE_CHOICES = ("smoke", "default", "full")


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cryolib pretrain``."""
    from cryolib.models.objectives import objective_names

    parser.add_argument("--objective", default="cryoemmae", choices=objective_names(),
                        help="pretraining objective (default cryoemmae: Cryo-EMMAE's recipe; mae: He et al.'s)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", nargs="+", metavar="DIR",
                        help="dataset folders (CryoPPP layout; train split) or plain micrograph folders")
    source.add_argument("--synthetic", type=int, metavar="N", help="train on N synthetic blob images (smoke run)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help=f"output folder: {CHECKPOINT_NAME}, train_log.csv, run.yaml")
    parser.add_argument("--profile", default="default", choices=PROFILE_CHOICES,
                        help="sizes from cryolib.core.profiles (default: default)")
    parser.add_argument("--model", default=None, help="model size (default: the profile's)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the profile's)")
    parser.add_argument("--init-from", default=None, metavar="MAE_CKPT",
                        help="--objective draco only: start from this plain-MAE checkpoint of the same size "
                             "(default: run the profile's MAE warm-up into OUT/warmup/)")
    parser.add_argument("--mask-ratio", type=float, default=None,
                        help="--objective draco only: mask ratio per half in [0.5, 1) (default: the profile's, 0.75)")
    parser.add_argument("--diameter-px", type=float, default=None,
                        help="particle diameter (px) of plain folders, and of dataset folders that lack one")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--resume", action="store_true", help=f"continue --out's {CHECKPOINT_NAME}")
    parser.add_argument("--batch-size", type=int, default=None, help="--synthetic only: batch per process")
    parser.add_argument("--max-steps", type=int, default=None, help="--synthetic only: stop after this many steps")
    parser.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"),
                        help="--synthetic only: device (default: the profile's)")


def _check_args(args: argparse.Namespace) -> Path:
    """Validate the flags before any work; returns the output folder."""
    if args.epochs is not None and args.epochs < 1:
        raise CryolibError(f"--epochs must be at least 1, got {args.epochs}")
    for flag in ("batch_size", "max_steps", "synthetic"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise CryolibError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    if args.data is not None:
        given = [f"--{f.replace('_', '-')}" for f in ("batch_size", "max_steps", "device") if getattr(args, f)]
        if given:
            raise CryolibError(f"{', '.join(given)} apply to --synthetic only; with --data the profile sets them")
    _check_draco_args(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CryolibError(f"--out {out} is a file; pass a folder (it gets {CHECKPOINT_NAME}, logs and run.yaml)")
    if args.resume and not (out / CHECKPOINT_NAME).is_file():
        raise CryolibError(f"--resume: {out / CHECKPOINT_NAME} does not exist; drop --resume to start afresh")
    return out


def _check_draco_args(args: argparse.Namespace) -> None:
    """The DRACO-only flags and what DRACO needs (triplet folders, a MAE checkpoint that fits the size)."""
    if args.objective != "draco":
        given = [f"--{f.replace('_', '-')}" for f in ("init_from", "mask_ratio") if getattr(args, f) is not None]
        if given:
            raise CryolibError(f"{', '.join(given)} apply to --objective draco only")
        return
    if args.data is None:
        raise CryolibError("--objective draco trains on (full, odd, even) triplets: pass --data dataset folders "
                           "with movies/{full,odd,even}/ instead of --synthetic")
    if args.mask_ratio is not None and not 0.5 <= args.mask_ratio < 1.0:
        raise CryolibError(f"--mask-ratio must be in [0.5, 1) (DRACO §4), got {args.mask_ratio}")
    from cryolib.core.profiles import get_profile
    from cryolib.models.draco import DracoModel, init_from_mae
    from cryolib.models.vit import get_config

    cfg = get_config(args.model or get_profile(args.profile).draco.model_b)
    if cfg.cls_token:
        raise CryolibError(f"--model {cfg.name} has a cls token; DRACO needs a draco-* size")
    if args.init_from is not None:
        init_from_mae(DracoModel(cfg), args.init_from)  # raises when missing, unreadable or of another size


def _pretrain_triplets(args: argparse.Namespace, out: Path) -> tuple[Path, dict]:
    """Train DRACO on the --data folders' triplets; returns (checkpoint, run.yaml extras)."""
    import dataclasses

    from cryolib.core.profiles import get_profile
    from cryolib.io.datasets import load_dataset
    from cryolib.models.vit import get_config
    from cryolib.studies.draco_pretraining import pretraining_triplets, train_draco

    for folder in args.data:
        if not Path(folder).is_dir():
            raise CryolibError(f"--data {folder} is not a folder")
    prof = get_profile(args.profile)
    model = args.model or prof.draco.model_b
    sizes = dataclasses.replace(prof.draco, tile_px=get_config(model).img_size)
    # DRACO needs no particle diameter: a placeholder keeps load_dataset from asking for one.
    datasets = [load_dataset(d, diameter_px=args.diameter_px or 1.0) for d in args.data]
    train_set, val_set = pretraining_triplets(datasets, sizes, seed=args.seed)
    ckpt = train_draco(train_set, val_set, sizes, model, out, init_from=args.init_from, warmup_dir=out / "warmup",
                       epochs=args.epochs, mask_ratio=args.mask_ratio, seed=args.seed, device=prof.device,
                       resume=args.resume)
    return ckpt, {"n_train_tiles": len(train_set), "n_val_tiles": 0 if val_set is None else len(val_set),
                  "init_from": str(args.init_from or out / "warmup" / CHECKPOINT_NAME)}


def _pretrain_micrographs(args: argparse.Namespace, out: Path) -> tuple[Path, dict]:
    """Train ``args.objective`` on the --data micrographs; returns (checkpoint, run.yaml extras)."""
    from cryolib.io.training_data import collect_training_data
    from cryolib.pick.cryoemmae import pretrain_mae

    if args.objective not in MICROGRAPH_OBJECTIVES:
        raise CryolibError(f"--objective {args.objective} cannot train on micrograph folders yet (only "
                           f"{', '.join(MICROGRAPH_OBJECTIVES)}); use --synthetic for a smoke run")
    options = {}
    options["objective"] = args.objective
    train_paths, val_paths, diameters = collect_training_data(args.data, args.diameter_px)
    ckpt = pretrain_mae(train_paths, diameters, out, profile=args.profile, model=args.model, epochs=args.epochs,
                        seed=args.seed, resume=args.resume, val_paths=val_paths or None, **options)
    return Path(ckpt), {"n_train": len(train_paths), "n_val": len(val_paths)}


def _pretrain_synthetic(args: argparse.Namespace, out: Path) -> tuple[Path, dict]:
    """Train ``args.objective`` on --synthetic blob images; returns (checkpoint, run.yaml extras)."""
    from cryolib.training.synthetic import pretrain_synthetic

    result = pretrain_synthetic(args.objective, args.synthetic, out, profile=args.profile, model=args.model,
                                epochs=args.epochs, batch_size=args.batch_size, max_steps=args.max_steps,
                                seed=args.seed, device=args.device, resume=args.resume)
    return Path(result.checkpoint), {"n_synthetic_images": args.synthetic}


def main(args: argparse.Namespace) -> int:
    """Run ``cryolib pretrain``; returns the exit code."""
    from cryolib.core.profiles import get_profile
    from cryolib.core.provenance import write_run_yaml
    from cryolib.training.checkpoint import load_checkpoint
    from cryolib.training.throughput import resolve_device, run_utilisation

    t0 = time.time()
    out = _check_args(args)
    run = (_pretrain_synthetic if args.synthetic is not None
           else _pretrain_triplets if args.objective == "draco" else _pretrain_micrographs)
    ckpt_path, extra = run(args, out)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun only rank 0 writes files
    ckpt = load_checkpoint(ckpt_path)
    device = resolve_device(args.device or get_profile(args.profile).device)  # where the loop ran
    usage = run_utilisation(ckpt_path, device, int(os.environ.get("WORLD_SIZE", "1")))
    write_run_yaml(out, "pretrain", args, t0, objective=ckpt["objective"], model=ckpt["model_config"]["name"],
                   step=ckpt["step"], checkpoint=str(ckpt_path), throughput=usage, **extra)
    mfu = f", MFU {usage['mfu']:.1%}" if usage["mfu"] is not None else ""
    print(f"pretrained {ckpt['objective']} ({ckpt['model_config']['name']}) for {ckpt['step']} steps at "
          f"{usage['tiles_per_s']:.0f} tiles/s ({usage['achieved_tflops']:.3f} TFLOP/s{mfu}) -> {ckpt_path} "
          f"(logs in {out / 'train_log.csv'})")
    return 0
