"""The Cryo-EMMAE picker file: what :func:`save_picker` writes and :func:`load_picker` reads back.

One small file per fitted picker: the encoder weights (float32 or float16; the decoder is
dropped), the picker state (k-means centres, particle cluster, config, training mean/std), the
model config, a format version, provenance (cryolib and torch versions, git commit, time) and
a model card. Written atomically; every read failure becomes a :class:`CryolibError` that
names the file and the fix.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np
import torch

import cryolib
from cryolib.training.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from cryolib.core.errors import CryolibError
from cryolib.models.vit import MaskedAutoencoder, ViTConfig
from cryolib.pick.cryoemmae_picker import CryoEMMAEPicker
from cryolib.core.results import git_commit

__all__ = ["PICKER_FORMAT", "save_picker", "load_picker", "read_picker_file", "picker_from_file"]

log = logging.getLogger(__name__)

PICKER_FORMAT = "cryolib-cryoemmae-picker/1"
PathLike = Union[str, os.PathLike]


def save_picker(path: PathLike, picker: CryoEMMAEPicker, model_name: str | None = None,
                extra_card: Mapping[str, Any] | None = None, dtype: str = "float32") -> Path:
    """Write a picker file atomically: encoder weights only (``dtype`` float32 or float16), the picker
    state (k-means centres, particle cluster, config, mean/std), the model config, the format
    version and provenance; ``extra_card`` (JSON-able) is stored as the model card."""
    model = picker.model
    if not isinstance(model, MaskedAutoencoder):
        raise CryolibError(f"save_picker needs a MaskedAutoencoder encoder, got {type(model).__name__}")
    if dtype not in ("float32", "float16"):
        raise CryolibError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    name = model_name or model.cfg.name
    if name != model.cfg.name:
        raise CryolibError(f"model_name {name!r} does not match the picker's model config {model.cfg.name!r}")
    state = picker.state_dict()
    state["centres"] = torch.from_numpy(np.asarray(state["centres"], np.float32))
    encoder = {f"encoder.{k}": v.detach().cpu().to(getattr(torch, dtype)).clone()
               for k, v in model.encoder.state_dict().items()}
    provenance = {"cryolib_version": cryolib.__version__, "torch_version": str(torch.__version__),
                  "git_commit": git_commit(), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    obj = {"format": PICKER_FORMAT, "model_name": name, "model_config": model.cfg.as_dict(), "encoder": encoder,
           "encoder_dtype": dtype, "picker": state, "provenance": provenance,
           "card": json.loads(json.dumps(dict(extra_card or {}), default=str))}  # plain types only
    save_checkpoint(path, obj)
    log.info("wrote picker file %s (%s, %d encoder tensors, %s)", path, name, len(encoder), dtype)
    return Path(path)


def read_picker_file(path: Path, allow_pretraining: bool = False) -> dict:
    """torch.load with every failure turned into a CryolibError that names the file and the fix.

    ``allow_pretraining`` also accepts a :mod:`cryolib.training.loop` checkpoint (returned as loaded)."""
    fix = "pass a picker file written by cryolib.pick.picker_file.save_picker"
    if not path.is_file():
        raise CryolibError(f"{path} not found; {fix}" + (" or a `cryolib pretrain` checkpoint" if allow_pretraining
                                                         else ""))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CryolibError(f"{path} could not be read ({type(err).__name__}); it is truncated or not a cryolib "
                           f"picker file or checkpoint; {fix}") from err
    fmt = obj.get("format") if isinstance(obj, dict) else None
    if fmt == CHECKPOINT_FORMAT:
        if allow_pretraining:
            return obj
        raise CryolibError(f"{path} is a pretraining checkpoint, not a picker file; fit a picker on it "
                           "(fit_picker, or cryolib pick --reference-coords) or " + fix)
    if fmt != PICKER_FORMAT:
        raise CryolibError(f"{path} is not a {PICKER_FORMAT} file (format {fmt!r}); {fix}")
    return obj


def load_picker(path: PathLike) -> CryoEMMAEPicker:
    """Rebuild a fitted :class:`CryoEMMAEPicker` from :func:`save_picker`'s file (encoder in fp32, eval mode)."""
    path = Path(path)
    return picker_from_file(read_picker_file(path), path)


def picker_from_file(obj: dict, path: Path) -> CryoEMMAEPicker:
    """The picker in a loaded picker file: encoder keys checked strictly (the decoder is absent by design)."""
    try:
        with torch.random.fork_rng(devices=[]):  # building the model must not move the caller's RNG
            model = MaskedAutoencoder(ViTConfig(**obj["model_config"]))
        with torch.no_grad():
            missing, unexpected = model.load_state_dict({k: v.float() for k, v in obj["encoder"].items()},
                                                        strict=False)
        bad = [k for k in missing if not k.startswith("decoder.")]
        if bad or unexpected:
            raise CryolibError(f"encoder keys missing {bad[:5]}, unexpected {list(unexpected)[:5]}")
        state = dict(obj["picker"])
        state["centres"] = np.asarray(state["centres"].float().numpy())
        picker = CryoEMMAEPicker.from_state(model.eval(), state)
    except (KeyError, TypeError, RuntimeError, AttributeError, CryolibError) as err:
        raise CryolibError(f"picker file {path} does not fit this cryolib ({type(err).__name__}: "
                           f"{str(err)[:300]}); re-create it with save_picker") from err
    log.info("loaded picker %s (model %s, particle cluster %d)", path, obj["model_name"], picker.particle_cluster)
    return picker
