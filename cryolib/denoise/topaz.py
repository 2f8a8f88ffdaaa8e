"""Topaz-Denoise (topaz-em 0.3.20) as a peer denoiser: its shipped pretrained 2-D networks.

``denoise_topaz`` runs the body of ``topaz denoise`` in-process. The shipped models load
through Topaz's own loader, with a fallback for its packaging bug (methods.md, Topaz section).
Registered as the denoiser ``topaz`` (:class:`TopazDenoiser`: ``unet_L2_v0.2.2``, Topaz's default
``--arch unet``), the peer of DRACO Table 2.
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
from pathlib import Path

import numpy as np

from cryolib.core.errors import CryolibError
from cryolib.denoise.registry import Denoiser, register_denoiser

__all__ = ["DENOISERS", "denoise_topaz", "TopazDenoiser"]

log = logging.getLogger(__name__)

# Topaz-Denoise 2-D models shipped in the wheel: topaz's alias -> file stem in topaz/pretrained/denoise/.
DENOISERS = {"unet": "unet_L2_v0.2.2", "unet-small": "unet_small_L1_v0.2.2",
             "fcnn": "fcnn_L1_v0.2.2", "affine": "affine_L1_v0.2.2"}


def _denoiser_alias(model: str) -> str:
    """Topaz's alias for a denoiser given as alias (``"unet"``) or file stem (``"unet_L2_v0.2.2"``)."""
    stem = model.removesuffix(".sav")
    for alias, file_stem in DENOISERS.items():
        if stem in (alias, file_stem):
            return alias
    raise CryolibError(f"unknown Topaz-Denoise model {model!r}; choose one of "
                       f"{', '.join(f'{a} ({s})' for a, s in DENOISERS.items())}")


@functools.lru_cache(maxsize=4)
def _load_denoiser(alias: str):
    """Topaz-Denoise pretrained network by alias, eval mode, on CPU.

    Topaz's loader tries importlib.resources on the *module* ``topaz.denoising.models`` (fails:
    "not a package"), then ``pkg_resources`` (works with setuptools < 81, as pinned). If that
    fails too ("Could not load resource ..."), build the net as topaz does and load the wheel's file.
    """
    import torch
    import topaz
    from topaz.denoising import models as dn_models

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            return dn_models.load_model(alias).eval()
    except RuntimeError as err:  # the packaging bug in methods.md
        log.warning("topaz's denoiser loader failed (%s); loading %s from the wheel directly", err, alias)
    file_name = DENOISERS[alias] + ".sav"
    path = Path(topaz.__file__).parent / "pretrained" / "denoise" / file_name
    if not path.is_file():
        raise CryolibError(f"Topaz-Denoise model file {path} is missing from the installed topaz-em")
    net = _denoiser_architecture(file_name)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=False))
    return net.eval()


def _denoiser_architecture(file_name: str):
    """The architecture topaz 0.3.20 pairs with each shipped 2-D denoiser file."""
    from topaz.denoising.models import DenoiseNet2, UDenoiseNet, UDenoiseNetSmall
    from topaz.filters import AffineDenoise

    return {"unet_L2_v0.2.2.sav": lambda: UDenoiseNet(base_width=11, top_width=5),
            "unet_small_L1_v0.2.2.sav": lambda: UDenoiseNetSmall(width=11, top_width=5),
            "fcnn_L1_v0.2.2.sav": lambda: DenoiseNet2(64, width=11),
            "affine_L1_v0.2.2.sav": lambda: AffineDenoise(max_size=31)}[file_name]()


def denoise_topaz(image: np.ndarray, model: str = "unet", patch_size: int = 1024, padding: int = 500,
                  device: int = -1) -> np.ndarray:
    """Topaz-Denoise a float (H, W) micrograph with a shipped pretrained model (``topaz denoise`` defaults).

    ``patch_size``/``padding`` (px) tile large images as ``topaz denoise -s/-p``; the output
    keeps the input's mean and standard deviation scale, shape and float32 dtype.
    """
    alias = _denoiser_alias(model)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2 or image.size == 0 or not np.isfinite(image).all():
        raise CryolibError(f"denoise_topaz needs a finite 2-D image, got shape {image.shape}")
    import torch
    from topaz.denoise import Denoise, denoise_image

    use_cuda = device >= 0 and torch.cuda.is_available()
    net = _load_denoiser(alias)
    denoiser = Denoise(torch.nn.Sequential(net), use_cuda=use_cuda)  # Denoise() only accepts exact nn types
    t0 = time.perf_counter()
    with torch.no_grad():
        out = denoise_image(image, [denoiser], lowpass=1, cutoff=0, deconvolve=False,
                            patch_size=patch_size, padding=padding, normalize=False, use_cuda=use_cuda)
    log.info("topaz denoise (%s): %s px in %.2f s", DENOISERS[alias], image.shape, time.perf_counter() - t0)
    return np.asarray(out, dtype=np.float32)


@register_denoiser
class TopazDenoiser(Denoiser):
    """Topaz-Denoise's shipped ``unet_L2_v0.2.2`` (``topaz denoise`` defaults; CUDA when available)."""

    name = "topaz"
    description = "Topaz-Denoise's shipped unet_L2_v0.2.2"
    options = ("model", "patch_size", "padding", "device")

    def prepare(self, checkpoint=None, model: str = "unet", **options) -> str:
        super().prepare(checkpoint)
        return _denoiser_alias(model)

    def denoise(self, image: np.ndarray, pixel_size_A: float, state: str, *, model: str = "unet",
                patch_size: int = 1024, padding: int = 500, device: str = "auto") -> np.ndarray:
        import torch

        gpu = 0 if device in ("auto", "cuda") and torch.cuda.is_available() else -1
        return denoise_topaz(image, state, patch_size=patch_size, padding=padding, device=gpu)
