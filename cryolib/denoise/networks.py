"""Zero-shot network denoisers: DRACO (``draco``) and the plain MAE (``mae``), all patches visible.

DRACO §5.2: "once pre-trained, our model can naturally serve as a generalizable denoiser by
directly predicting every patch of input noisy micrograph without any further fine-tuning".
Both run through :func:`cryolib.denoise.tiled.denoise_image_tiled` (normalise, overlapping
tiles of the model's ``img_size``, smooth blending, back to the input's units):

* ``draco``: :func:`cryolib.models.draco.denoise_tiles` on a :class:`~cryolib.models.draco.DracoModel`
  checkpoint (objective ``draco``). Default: the shipped model :data:`SHIPPED_DRACO`.
* ``mae``: a :class:`~cryolib.models.vit.MaskedAutoencoder` checkpoint (objective ``mae``, e.g. the
  DRACO warm-up stage) with mask ratio 0 (:func:`mae_denoise_tiles`). No default: pass one.

Option ``shifts`` (default 1, the paper's one pass): a shift ensemble of ``shifts`` x ``shifts`` passes
with the patch grid moved by patch/shifts px (:func:`shift_offsets`); it removes the patch-grid
blocks of an under-trained network at ``shifts``² times the cost.

``checkpoint`` is a cryolib checkpoint path or an already loaded model. Loaded files are cached
by (path, size, mtime), so a study denoising many micrographs reads each file once.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from cryolib.core.errors import CryolibError, is_whole_number
from cryolib.denoise.registry import Denoiser, register_denoiser
from cryolib.denoise.tiled import denoise_image_tiled
from cryolib.models.draco import DracoModel, denoise_tiles
from cryolib.models.vit import MaskedAutoencoder, patchify, unpatchify

__all__ = ["SHIPPED_DRACO", "shipped_draco_checkpoint", "load_denoising_model", "mae_denoise_tiles", "shift_offsets",
           "DracoDenoiser", "MaeDenoiser"]

log = logging.getLogger(__name__)

#: The shipped DRACO denoiser (written by notebook 04; its model card sits beside it as ``.md``): DRACO-B
#: trained for ``DracoSizes.shipped_epochs`` (1024 at the default profile). The backbone that curation and the
#: detector start from is ``assets/draco_default.pt``, notebook 04's 64-epoch DRACO-B (see its card).
SHIPPED_DRACO = Path(__file__).resolve().parent.parent / "assets" / "draco_denoiser.pt"
_KINDS = {"draco": DracoModel, "mae": MaskedAutoencoder}


def shipped_draco_checkpoint() -> Path:
    """The shipped DRACO checkpoint, or a :class:`CryolibError` that says how to get one."""
    if not SHIPPED_DRACO.is_file():
        raise CryolibError(f"the shipped DRACO denoiser {SHIPPED_DRACO} is not installed yet; run notebook "
                           "04_pretrain_draco at the default profile (it installs it), or pass a DRACO checkpoint "
                           "(--checkpoint runs/<profile>/draco/draco-b/checkpoint.pt)")
    return SHIPPED_DRACO


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, size: int, mtime_ns: int) -> tuple[nn.Module, dict]:
    from cryolib.training.checkpoint import load_model

    return load_model(path)


def load_denoising_model(checkpoint: Any, kind: str) -> tuple[nn.Module, dict]:
    """(model in eval mode, checkpoint dict) of ``kind`` ("draco" or "mae") from a path or a model.

    A path must hold a cryolib checkpoint of that objective's model class; anything else raises
    a :class:`CryolibError` that names the file.
    """
    want = _KINDS[kind]
    if isinstance(checkpoint, nn.Module):
        model, ckpt = checkpoint, {}
    else:
        path = Path(os.fspath(checkpoint))
        if not path.is_file():
            raise CryolibError(f"checkpoint {path} not found; train first or fix the path")
        stat = path.stat()
        model, ckpt = _load_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if not isinstance(model, want):
        other = next((k for k, cls in _KINDS.items() if isinstance(model, cls)), None)
        hint = f"; use the {other} method for it" if other else ""
        raise CryolibError(f"{checkpoint} holds a {type(model).__name__}, not the {want.__name__} the "
                           f"{kind} denoiser needs{hint}")
    return model.eval(), ckpt


def _stats_from(ckpt: dict, stats: str | tuple[float, float] | None, checkpoint: Any) -> tuple[float, float] | None:
    """None (each micrograph's own mean/std), the checkpoint's training (mean, std), or given values."""
    if stats in (None, "micrograph"):
        return None
    if stats == "checkpoint":
        data = ckpt.get("data_stats") or {}
        if "mean" not in data or "std" not in data:
            raise CryolibError(f"{checkpoint} stores no training mean/std (data_stats); use stats='micrograph'")
        return float(data["mean"]), float(data["std"])
    if isinstance(stats, (tuple, list)) and len(stats) == 2:
        return float(stats[0]), float(stats[1])
    raise CryolibError(f"stats must be 'micrograph', 'checkpoint' or (mean, std), got {stats!r}")


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise CryolibError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise CryolibError("device='cuda' but no CUDA device is available; use 'cpu' or 'auto'")
    return torch.device(device)


@torch.no_grad()
def mae_denoise_tiles(model: MaskedAutoencoder, tiles: torch.Tensor) -> torch.Tensor:
    """The MAE's reconstruction with mask ratio 0 (every patch visible): [N, 1, t, t] -> [N, 1, t, t].

    With ``norm_pix_loss`` the decoder predicts per-patch normalised pixels, so each predicted
    patch is mapped back with its input patch's mean and std (as the MAE paper visualises).
    """
    p = model.cfg.patch_size
    x = tiles.to(next(model.parameters()).device, torch.float32)
    pred = model.decoder(model.encoder(x))  # [N, L, p²C]: no ids_restore = nothing masked
    if model.cfg.norm_pix_loss:
        target = patchify(x, p)  # [N, L, p²C]
        pred = pred * (target.var(-1, keepdim=True) + 1e-6) ** 0.5 + target.mean(-1, keepdim=True)
    grid = (x.shape[-2] // p, x.shape[-1] // p)
    return unpatchify(pred, p, model.cfg.in_chans, grid).cpu()


def shift_offsets(patch_px: int, shifts: int = 1) -> list[int]:
    """Tiling origins (px) of a ``shifts``-way shift ensemble per axis: k·patch/shifts, k = 0..shifts−1.

    ``shifts=1`` is the paper's single pass (§5.2); ``shifts=2`` moves the patch grid by half a patch,
    4 passes in all (:func:`cryolib.denoise.tiled.denoise_shifted`).
    """
    if not is_whole_number(shifts) or not 1 <= shifts <= patch_px:
        raise CryolibError(f"shifts must be a whole number from 1 to the {patch_px} px patch, got {shifts!r}")
    return [int(round(k * patch_px / shifts)) for k in range(int(shifts))]


class _NetworkDenoiser(Denoiser):
    """Shared steps of the tile networks: load once, then tile, blend and restore."""

    takes_checkpoint = True
    options = ("stats", "overlap", "batch_size", "device", "clip", "shifts")
    kind = ""

    def default_checkpoint(self) -> Path:
        raise CryolibError(f"the {self.name} denoiser needs a checkpoint; pass checkpoint=... (--checkpoint)")

    def prepare(self, checkpoint: Any = None, device: str = "auto", **options: Any) -> dict:
        path = checkpoint if checkpoint is not None else self.default_checkpoint()
        model, ckpt = load_denoising_model(path, self.kind)
        shift_offsets(model.cfg.patch_size, options.get("shifts", 1))  # a bad value fails before any output
        model = model.to(_device(device))
        return {"model": model, "stats": _stats_from(ckpt, options.get("stats"), path)}

    def tile_fn(self, model: nn.Module, batch_size: int):
        raise NotImplementedError

    def denoise(self, image: np.ndarray, pixel_size_A: float, state: dict, *, stats: Any = None,
                overlap: float = 0.5, batch_size: int = 16, device: str = "auto", clip: bool = True,
                shifts: int = 1) -> np.ndarray:
        model = state["model"]
        return denoise_image_tiled(image, self.tile_fn(model, batch_size), model.cfg.img_size, stats=state["stats"],
                                   overlap=overlap, batch_size=batch_size, clip=clip,
                                   offsets=shift_offsets(model.cfg.patch_size, shifts))


@register_denoiser
class DracoDenoiser(_NetworkDenoiser):
    """DRACO zero-shot denoising (§5.2): every patch visible, no mask token, one pass."""

    name = "draco"
    description = "DRACO, all patches visible (default: the shipped model)"
    kind = "draco"

    def default_checkpoint(self) -> Path:
        return shipped_draco_checkpoint()

    def tile_fn(self, model: nn.Module, batch_size: int):
        return lambda tiles: denoise_tiles(model, tiles, 0.0, 1.0, batch_size)


@register_denoiser
class MaeDenoiser(_NetworkDenoiser):
    """The plain MAE's reconstruction with all patches visible (DRACO Table 2's "MAE" row)."""

    name = "mae"
    description = "plain MAE reconstruction, mask ratio 0 (needs --checkpoint)"
    kind = "mae"

    def tile_fn(self, model: nn.Module, batch_size: int):
        return lambda tiles: mae_denoise_tiles(model, tiles)
