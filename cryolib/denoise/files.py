"""Denoise micrograph files into a folder: what ``cryolib denoise`` and the benchmarks run.

Every input is read and checked, the pixel sizes settled and the method prepared (its
checkpoint loaded) before the first file is written; each output is written atomically as
``<out_dir>/<input name>`` (``<stem>.mrc`` for TIFF inputs) with the input's shape, stored
dtype (integers rounded and clipped; float16 is stored as float32, the MRC writer's float type)
and pixel size.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence, Union

import mrcfile
import numpy as np
from tqdm.auto import tqdm

from cryolib.core.errors import CryolibError
from cryolib.denoise.registry import check_options, check_pixel_size, get_denoiser, restore_dtype
from cryolib.io.micrographs import list_micrographs, read_micrograph, write_mrc

__all__ = ["stored_dtype", "output_path", "denoise_files"]

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


def stored_dtype(path: PathLike) -> np.dtype:
    """The pixel type a micrograph file stores (MRC header mode; TIFF page type); float32 if unknown."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".mrc", ".mrcs", ".map"):
            with mrcfile.open(path, mode="r", header_only=True, permissive=True) as mrc:
                return np.dtype(mrcfile.utils.data_dtype_from_header(mrc.header))
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return np.dtype(tif.pages[0].dtype)
    except Exception:  # unreadable headers are reported by read_micrograph with the file's name
        return np.dtype(np.float32)


def output_path(path: PathLike, out_dir: PathLike) -> Path:
    """``<out_dir>/<name>``: the input's file name for .mrc inputs, ``<stem>.mrc`` otherwise."""
    path = Path(path)
    name = path.name if path.suffix.lower() == ".mrc" else f"{path.stem}.mrc"
    return Path(out_dir) / name


def _check_out_dir(out_dir: PathLike) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CryolibError(f"--out {out} is a file; pass a folder for the denoised micrographs")
    return out


def _plan(paths: list[Path], out: Path, pixel_size_A: float | None, method: str,
          needs_pixel: bool) -> list[tuple[Path, Path, float, np.dtype]]:
    """(input, output, pixel size Å, stored dtype) per input, every input read and checked."""
    plan, seen = [], {}
    for path in tqdm(paths, desc="check inputs", disable=None, leave=False):
        target = output_path(path, out)
        if target in seen:
            raise CryolibError(f"{seen[target]} and {path} would both be written to {target}; rename one")
        if target.resolve() == path.resolve():
            raise CryolibError(f"writing {target} would overwrite the input {path}; choose another --out folder")
        seen[target] = path
        _, header_pixel = read_micrograph(path)  # validates: readable, 2-D, finite
        pixel = pixel_size_A if pixel_size_A is not None else header_pixel
        pixel = check_pixel_size(pixel, method, needs_pixel)
        plan.append((path, target, pixel, stored_dtype(path)))
    return plan


def denoise_files(method: str, paths: PathLike | Sequence[PathLike], out_dir: PathLike, checkpoint: Any = None,
                  pixel_size_A: float | None = None, progress: bool = True, **options: Any) -> dict[str, Path]:
    """Denoise micrograph files with ``method`` into ``out_dir`` -> {input stem: output path}.

    ``paths``: a folder, glob, file or list of them. ``pixel_size_A`` (Å/px) overrides the headers
    (needed by ``lowpass`` when a header lacks it). ``options`` go to the method.
    """
    t0 = time.time()
    denoiser = get_denoiser(method)
    check_options(denoiser, options)
    if pixel_size_A is not None and not (np.isfinite(pixel_size_A) and pixel_size_A > 0):
        raise CryolibError(f"--pixel-size-A must be a finite number of Å/px > 0, got {pixel_size_A}")
    out = _check_out_dir(out_dir)
    plan = _plan(list_micrographs(paths), out, pixel_size_A, method, denoiser.needs_pixel_size)
    state = denoiser.prepare(checkpoint, **options)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for path, target, pixel, dtype in tqdm(plan, desc=f"denoise ({method})", disable=not progress or None):
        image = read_micrograph(path)[0]
        result = denoiser.denoise(image, pixel, state, **options)
        write_mrc(target, restore_dtype(result, dtype), pixel)
        written[path.stem] = target
    log.info("%s: denoised %d micrographs into %s in %.1f s", method, len(written), out, time.time() - t0)
    return written
