"""Pretrain any registered tile objective on synthetic blob images: a smoke run of the one loop.

``cryolib pretrain --synthetic N`` calls :func:`pretrain_synthetic`; the DDP test runs it in two
gloo processes (``torchrun`` sets the same environment). No micrographs, no preprocessing: the
images are :func:`cryolib.processing.tiles.synthetic_blob_images`, cut into tiles of the model's
input size (each image is 2 x 2 tiles).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryolib.core.errors import CryolibError
from cryolib.core.profiles import get_profile
from cryolib.models.objectives import get_objective
from cryolib.processing.tiles import TileDataset, synthetic_blob_images
from cryolib.training.loop import TrainConfig, TrainResult, train

log = logging.getLogger(__name__)

__all__ = ["pretrain_synthetic"]


def pretrain_synthetic(objective: str, n_images: int, out_dir: str | os.PathLike | None, *,
                       profile: str = "smoke", model: str | None = None, epochs: int | None = None,
                       batch_size: int | None = None, max_steps: int | None = None, seed: int = 0,
                       device: str | None = None, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train objective ``objective`` on ``n_images`` synthetic blob images (4 tiles each).

    Sizes (model, epochs, batch size, warm-up, device) come from ``profile``; the keyword arguments
    override them. The batch size is capped at the number of tiles per process.
    """
    if n_images < 1:
        raise CryolibError(f"the number of synthetic images must be at least 1, got {n_images}")
    sizes = get_profile(profile)
    p = sizes.pretrain
    obj = get_objective(objective, model or p.model)
    tile_px = int(obj.describe()["model_config"]["img_size"])
    data = TileDataset(synthetic_blob_images(n_images, 2 * tile_px, seed=seed), tile_px=tile_px)
    n_epochs = p.epochs if epochs is None else int(epochs)
    per_process = len(data) // int(os.environ.get("WORLD_SIZE", "1"))
    batch = min(p.batch_size if batch_size is None else int(batch_size), max(per_process, 1))
    config = TrainConfig(epochs=n_epochs, batch_size=batch, warmup_epochs=min(p.warmup_epochs, n_epochs / 2),
                         seed=seed, out_dir=None if out_dir is None else Path(out_dir), resume=resume,
                         device=device or sizes.device, max_steps=max_steps, log_every_steps=1)
    log.info("pretraining %s on %d synthetic images (%d tiles of %d px), batch %d, %d epoch(s)",
             obj.name, n_images, len(data), tile_px, batch, n_epochs)
    return train(obj, data, config, progress=progress)
