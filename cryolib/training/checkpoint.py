"""Training checkpoints: write, read, check against an objective, and rebuild the model.

A checkpoint is one ``torch.save`` dict tagged ``"format": CHECKPOINT_FORMAT``; the training
loop in :mod:`cryolib.training.loop` fills it (model, optimiser, scaler, step, RNG states, configs,
data standardisation, history) and re-exports these names. Writes are atomic (temporary file
+ rename); reads use ``weights_only=True`` and name the file on any error. :func:`_rng_state`
and :func:`_set_rng_state` keep every RNG's state as tensors and plain types, so a resumed run
draws the same numbers.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from cryolib.core.atomic import atomic_path
from cryolib.core.errors import CryolibError
from cryolib.core.files import load_torch_file
from cryolib.models.objectives import Objective, get_objective, objective_names
from cryolib.models.vit import ViTConfig

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "check_compatible", "load_model"]

CHECKPOINT_FORMAT = "cryolib-checkpoint/1"


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: never half-written."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a cryolib checkpoint (tensors and plain types only: ``weights_only=True``)."""
    path = Path(path)
    ckpt = load_torch_file(path, "checkpoint", "train first or fix the path", "cryolib checkpoint", map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CryolibError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    return ckpt


def check_compatible(ckpt: dict, objective: Objective, path: str | os.PathLike = "checkpoint") -> None:
    """Raise :class:`CryolibError` unless ``ckpt`` was written by the same objective and model config."""
    want = objective.describe()
    if ckpt["objective"] != objective.name:
        raise CryolibError(f"{path} was trained with objective {ckpt['objective']!r}, not {objective.name!r}; "
                           "use the matching objective or a fresh out_dir")
    have_cfg, want_cfg = ckpt["model_config"], want["model_config"]
    if have_cfg != want_cfg:
        diff = {k: (have_cfg.get(k), want_cfg.get(k)) for k in sorted(set(have_cfg) | set(want_cfg))
                if have_cfg.get(k) != want_cfg.get(k)}
        raise CryolibError(f"{path} holds model {have_cfg.get('name')!r}, which differs from "
                           f"{want_cfg.get('name')!r} in (checkpoint, requested): {diff}; "
                           "use the matching model or a fresh out_dir")


def load_model(path: str | os.PathLike, objective: Objective | None = None,
               map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the trained model from a checkpoint -> (model in eval mode, checkpoint dict).

    Without ``objective`` the registered one named in the checkpoint is used with its model config.
    ``ckpt["data_stats"]`` holds the standardisation to reuse at inference.
    """
    ckpt = load_checkpoint(path, map_location)
    if objective is None:
        if ckpt["objective"] not in objective_names():
            raise CryolibError(f"{path}: objective {ckpt['objective']!r} is not registered "
                               f"({', '.join(objective_names())})")
        objective = get_objective(ckpt["objective"], ViTConfig(**ckpt["model_config"]))
    check_compatible(ckpt, objective, path)
    model = objective.build_model()
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def _rng_state(device: torch.device) -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
