"""Denoisers by name (``draco``, ``mae``, ``topaz``, ``lowpass``, ``gaussian``): one interface, one entry point.

A method is a :class:`Denoiser` subclass decorated with :func:`register_denoiser` in its own module
under ``cryolib/denoise/``; importing :mod:`cryolib.denoise` imports every module there
(:func:`load_denoisers`). Notebooks, studies, ``cryolib denoise`` and the benchmarks all call
:func:`denoise_micrograph` (one array) or :func:`denoise_files` (files in, MRC files out).

Every denoiser maps a finite 2-D image to an image of the same shape, dtype and units: float
inputs keep their dtype; integer inputs are rounded and clipped to their dtype's range.
"""

from __future__ import annotations

import abc
import importlib
import logging
import math
import os
import pkgutil
from pathlib import Path
from typing import Any, ClassVar, Union

import numpy as np

from cryolib.core.errors import CryolibError

__all__ = ["DENOISERS", "Denoiser", "register_denoiser", "denoiser_names", "get_denoiser", "load_denoisers",
           "denoise_micrograph", "check_image", "check_pixel_size", "check_options", "restore_dtype"]

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------- input checks
def check_image(image: Any, name: str = "image") -> np.ndarray:
    """A finite, non-empty 2-D real array (any int/float dtype) or a :class:`CryolibError` naming ``name``."""
    array = np.asarray(image)
    if array.ndim != 2 or array.size == 0:
        raise CryolibError(f"{name}: a denoiser needs a non-empty 2-D (H, W) image, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise CryolibError(f"{name}: pixels must be integers or floats, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise CryolibError(f"{name} contains NaN or inf pixels; repair the image first")
    return array


def check_pixel_size(pixel_size_A: float | None, method: str, required: bool) -> float:
    """The pixel size in Å (0.0 = unknown, allowed only when the method does not need it)."""
    try:
        value = 0.0 if pixel_size_A is None else float(pixel_size_A)
    except (TypeError, ValueError):
        raise CryolibError(f"pixel size must be a number of Å/px, got {pixel_size_A!r}") from None
    if not math.isfinite(value) or value < 0:
        raise CryolibError(f"pixel size must be a finite number of Å/px >= 0 (0 = unknown), got {pixel_size_A}")
    if required and value == 0:
        raise CryolibError(f"the {method} denoiser needs the pixel size (Å/px): the image header lacks it; "
                           "pass pixel_size_A (--pixel-size-A on the command line)")
    return value


def check_options(denoiser: "Denoiser", options: dict[str, Any]) -> None:
    """Raise for keyword options the denoiser does not take."""
    bad = sorted(set(options) - set(denoiser.options))
    if bad:
        raise CryolibError(f"the {denoiser.name} denoiser takes no option(s) {bad}; it takes "
                           f"{', '.join(denoiser.options) or 'none'}")


def restore_dtype(out: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``out`` (float) cast back to ``dtype``: floats as they are, integers rounded and clipped to their range."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(dtype)
    return np.asarray(out).astype(dtype, copy=False)


# --------------------------------------------------------------------------- the interface
class Denoiser(abc.ABC):
    """One denoising method. Subclasses set ``name`` (and the flags) and implement :meth:`denoise`;
    :meth:`prepare` loads what several images share (a network), once."""

    name: ClassVar[str] = ""
    #: One line for ``cryolib denoise --help`` and the tables.
    description: ClassVar[str] = ""
    #: Offered by ``cryolib denoise`` (False for methods that need ground truth).
    on_command_line: ClassVar[bool] = True
    #: Needs the pixel size (Å/px).
    needs_pixel_size: ClassVar[bool] = False
    #: Accepts a checkpoint (a trained network file).
    takes_checkpoint: ClassVar[bool] = False
    #: The keyword options :meth:`prepare` and :meth:`denoise` accept (others raise).
    options: ClassVar[tuple[str, ...]] = ()

    def prepare(self, checkpoint: Any = None, **options: Any) -> Any:
        """Check the method's own inputs and load what :meth:`denoise` needs (default: nothing)."""
        if checkpoint is not None and not self.takes_checkpoint:
            raise CryolibError(f"the {self.name} denoiser takes no checkpoint; leave --checkpoint out")
        return None

    @abc.abstractmethod
    def denoise(self, image: np.ndarray, pixel_size_A: float, state: Any, **options: Any) -> np.ndarray:
        """Denoise a float32 (H, W) image -> float32 (H, W) in the same units."""


# --------------------------------------------------------------------------- the registry
DENOISERS: dict[str, type[Denoiser]] = {}


def register_denoiser(cls: type[Denoiser]) -> type[Denoiser]:
    """Class decorator: register a :class:`Denoiser` subclass under its ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, Denoiser)):
        raise CryolibError(f"register_denoiser needs a Denoiser subclass, got {cls!r}")
    name = cls.name
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise CryolibError(f"denoiser {cls.__qualname__} needs a lower-case identifier as its name, got {name!r}")
    old = DENOISERS.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise CryolibError(f"two denoisers are named {name!r}: {old.__module__}.{old.__qualname__} and "
                           f"{cls.__module__}.{cls.__qualname__}; rename one")
    DENOISERS[name] = cls
    return cls


def load_denoisers() -> None:
    """Import every module of :mod:`cryolib.denoise`, so each registers its denoisers."""
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not info.name.startswith("_") and info.name != "registry":
            importlib.import_module(f"{__package__}.{info.name}")


def denoiser_names(command_line: bool = False) -> tuple[str, ...]:
    """The registered denoisers, sorted (only those ``cryolib denoise`` offers when ``command_line``)."""
    return tuple(sorted(n for n, c in DENOISERS.items() if c.on_command_line or not command_line))


def get_denoiser(name: str) -> Denoiser:
    """A fresh instance of the denoiser registered as ``name``."""
    if name not in DENOISERS:
        raise CryolibError(f"unknown denoising method {name!r}; choose one of {', '.join(denoiser_names())}")
    return DENOISERS[name]()


def denoise_micrograph(method: str, image: np.ndarray, pixel_size_A: float | None = None, *,
                       checkpoint: Any = None, **options: Any) -> np.ndarray:
    """Denoise one micrograph with the method registered as ``method``.

    ``image``: (H, W), any size, int or float dtype; ``pixel_size_A``: Å/px (None or 0 = unknown;
    ``lowpass`` needs it); ``checkpoint``: a network file or loaded model for ``draco``/``mae``
    (``draco`` default: the shipped one). Returns an array of the input's shape and dtype, in its units.
    """
    denoiser = get_denoiser(method)
    check_options(denoiser, options)
    array = check_image(image)
    pixel = check_pixel_size(pixel_size_A, method, denoiser.needs_pixel_size)
    state = denoiser.prepare(checkpoint, **options)
    out = denoiser.denoise(array.astype(np.float32), pixel, state, **options)
    return restore_dtype(out, array.dtype)
