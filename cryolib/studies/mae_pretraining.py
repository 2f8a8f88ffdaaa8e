"""Notebook 02's study: pretrain the Cryo-EMMAE MAEs, summarise the runs, show masked reconstructions.

One MAE per Cryo-EMMAE training analog (as the paper does) plus one joint model on all four
(``all4``), which ``cryolib pick`` ships. Checkpoints go to ``<runs>/mae_<name>/``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch

from cryolib.core.errors import CryolibError
from cryolib.io.datasets import Dataset
from cryolib.models.reconstruction import masked_reconstruction
from cryolib.pick.cryoemmae import _config_from, preprocess_for_training, pretrain_mae
from cryolib.processing.tiles import image_to_tiles, standardize
from cryolib.training.checkpoint import load_model


def reconstruction_examples(checkpoint, micrograph_path, diameter_px: float, n_tiles: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Masked reconstructions of ``n_tiles`` tiles of one micrograph by a Cryo-EMMAE pretraining checkpoint.

    The micrograph is preprocessed with the checkpoint's picker config and standardised with its
    training mean/std, exactly as in pretraining; tiles are taken from the middle row of the tile grid.
    The mask ratio is the checkpoint objective's (0.5 for Cryo-EMMAE).
    """
    model, ckpt = load_model(checkpoint)
    stats = ckpt.get("data_stats") or {}
    config = _config_from(stats.get("picker_config"))
    image = preprocess_for_training([micrograph_path], diameter_px, config, progress=False)[0]
    tiles, (rows, cols) = image_to_tiles(image, config.tile_px)
    start = (rows // 2) * cols + max(0, cols // 2 - n_tiles // 2)
    start = max(0, min(start, len(tiles) - n_tiles))  # small micrographs: fewer tiles than asked
    chosen = torch.as_tensor(standardize(tiles[start : start + n_tiles], stats["mean"], stats["std"]), dtype=torch.float32)
    mask_ratio = float((ckpt.get("objective_config") or {}).get("mask_ratio", 0.5))
    return masked_reconstruction(model, chosen, mask_ratio, seed)


JOINT = "all4"  # the joint model's name: trained on every training analog


def pretrain_models(data: Mapping[str, Dataset], runs: str | Path, profile: str, seed: int = 0,
                    resume: bool = True) -> dict[str, Path]:
    """Pretrain one MAE per analog of ``data`` on its training split (validated on its val split) and
    one joint model on all of them (:data:`JOINT`); returns {name: checkpoint}. Resumes by default."""
    runs = Path(runs)
    checkpoints = {name: pretrain_mae(ds.split("train"), ds.diameter_px, runs / f"mae_{name}", profile=profile,
                                      val_paths=ds.split("val"), seed=seed, resume=resume)
                   for name, ds in data.items()}
    joint_paths = [p for ds in data.values() for p in ds.split("train")]
    joint_diam = {p: ds.diameter_px for ds in data.values() for p in ds.split("train")}
    checkpoints[JOINT] = pretrain_mae(joint_paths, joint_diam, runs / f"mae_{JOINT}", profile=profile, seed=seed,
                                      resume=resume)
    return checkpoints


def training_logs(checkpoints: Mapping[str, str | Path]) -> dict[str, pd.DataFrame]:
    """{name: train_log.csv} of each checkpoint's run folder (columns step, epoch, loss, ...)."""
    logs = {}
    for name, ckpt in checkpoints.items():
        path = Path(ckpt).parent / "train_log.csv"
        if not path.is_file():
            raise CryolibError(f"{path} is missing; was {ckpt} written by cryolib.pick.cryoemmae.pretrain_mae?")
        logs[name] = pd.read_csv(path)
    return logs


def run_summary(checkpoint: str | Path) -> dict:
    """One run's summary: steps, first-step loss, mean loss of the first and of the last epoch,
    last validation loss (NaN without a val split) and median throughput (tiles/s)."""
    run = Path(checkpoint).parent
    log = training_logs({"run": checkpoint})["run"]
    val_path = run / "val_log.csv"
    val = pd.read_csv(val_path) if val_path.is_file() else None
    return {"steps": int(log["step"].max()), "first_step_loss": float(log["loss"].iloc[0]),
            "first_epoch_loss": float(log.loc[log["epoch"] == log["epoch"].min(), "loss"].mean()),
            "final_train_loss": float(log.loc[log["epoch"] == log["epoch"].max(), "loss"].mean()),
            "final_val_loss": float(val["val_loss"].iloc[-1]) if val is not None and len(val) else math.nan,
            "tiles_per_s": float(log["images_per_s"].median()) if "images_per_s" in log else math.nan}


def run_summaries(checkpoints: Mapping[str, str | Path]) -> pd.DataFrame:
    """:func:`run_summary` of every model, one row each (column ``model``)."""
    return pd.DataFrame([{"model": name, **run_summary(ckpt)} for name, ckpt in checkpoints.items()])


def pretraining_metrics(summary: pd.DataFrame) -> dict:
    """Notebook 02's ``metrics.json`` section: per model the losses and steps of :func:`run_summaries`."""
    keys = ("first_step_loss", "final_train_loss", "final_val_loss", "steps")
    return {str(row["model"]): {k: row[k].item() if hasattr(row[k], "item") else row[k] for k in keys}
            for _, row in summary.iterrows()}


def reconstruction_grid(data: Mapping[str, Dataset], checkpoints: Mapping[str, str | Path], n_tiles: int = 3,
                        seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """{analog: :func:`reconstruction_examples` of its first validation micrograph (training, if no val)}."""
    return {name: reconstruction_examples(checkpoints[name], (ds.split("val") or ds.split("train"))[0],
                                          ds.diameter_px, n_tiles=n_tiles, seed=seed)
            for name, ds in data.items()}
