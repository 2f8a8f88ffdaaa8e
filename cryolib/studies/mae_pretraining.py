"""Notebook 02's study: what the Cryo-EMMAE MAE learns (masked reconstructions, run summaries)."""

from __future__ import annotations

import numpy as np
import torch

from cryolib.models.reconstruction import masked_reconstruction
from cryolib.pick.cryoemmae import _config_from, preprocess_for_training
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
