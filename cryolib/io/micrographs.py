"""Cryo-EM file I/O: MRC/TIFF micrographs and movies, and finding micrographs on disk.

Conventions: images are float32 arrays shaped ``(H, W)`` (rows = y, cols = x),
movies ``(F, H, W)``; pixel sizes are in Å (0.0 means unknown); coordinates are
particle centres ``(x, y)`` in pixels from the top-left corner, as in CryoPPP,
and diameters are in pixels. Every reader validates its input and raises
:class:`~cryolib.core.errors.CryolibError` naming the file; every writer is atomic.

CSV/STAR/BOX/Topaz coordinate files are read and written by :mod:`cryolib.io.coordinates`;
``COORDINATE_COLUMNS``, ``COORDINATE_SUFFIXES``, :func:`read_coordinates` and
:func:`write_coordinates` are re-exported here.
"""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path
from typing import Sequence

import mrcfile
import numpy as np
import tifffile

from cryolib.core.files import existing_file as _existing_file
from cryolib.core.atomic import atomic_path
from cryolib.io.coordinates import (  # noqa: F401  (re-exported; COORDINATE_SUFFIXES is not in __all__)
    COORDINATE_COLUMNS,
    COORDINATE_SUFFIXES,
    read_coordinates,
    write_coordinates,
)
from cryolib.core.errors import CryolibError

__all__ = ["COORDINATE_COLUMNS", "read_mrc", "read_micrograph", "write_mrc", "read_movie", "write_movie",
           "read_coordinates", "write_coordinates", "list_micrographs", "micrograph_stem"]

log = logging.getLogger(__name__)

MRC_SUFFIXES = (".mrc", ".mrcs", ".map")
TIFF_SUFFIXES = (".tif", ".tiff")
MICROGRAPH_SUFFIXES = (".mrc", ".tif", ".tiff")  # what list_micrographs collects
_COUNT_DTYPES = (np.int8, np.uint8, np.int16, np.uint16)  # stored as-is; everything else -> float32
_PARSE_ERRORS = (ValueError, OSError, EOFError)


# --------------------------------------------------------------------------- images
def _check_pixels(data: np.ndarray, path: Path) -> None:
    """Reject 0-size arrays and NaN/Inf pixels."""
    if data.size == 0:
        raise CryolibError(f"{path} is empty (shape {data.shape}); the file holds no pixels")
    if not np.isfinite(data).all():
        n_bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        raise CryolibError(f"{path} contains {n_bad} NaN/Inf pixels; re-export or repair the file")


def read_mrc(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read an MRC file: float32 data (2-D image or 3-D stack) and pixel size in Å.

    The pixel size is the header's ``voxel_size.x``; a header value of 0 means the
    writer did not record it, and 0.0 (unknown) is returned. Truncated or corrupt
    files raise :class:`CryolibError`.
    """
    path = _existing_file(path)
    try:
        with mrcfile.open(path, mode="r", permissive=False) as mrc:
            data = np.asarray(mrc.data, dtype=np.float32).copy()
            pixel_size_A = float(mrc.voxel_size.x)
    except _PARSE_ERRORS as err:
        raise CryolibError(f"{path} is not a readable MRC file ({err}); it may be truncated or corrupt") from err
    log.debug("read %s: shape %s, %.4g Å/px", path, data.shape, pixel_size_A)
    return data, pixel_size_A


def _read_tiff(path: Path) -> tuple[np.ndarray, float]:
    """Read a TIFF as float32; the pixel size comes from our own metadata, else 0.0."""
    try:
        with tifffile.TiffFile(path) as tif:
            data = np.asarray(tif.asarray(), dtype=np.float32)
            metadata = tif.shaped_metadata or ({},)
    except _PARSE_ERRORS as err:
        raise CryolibError(f"{path} is not a readable TIFF file ({err}); it may be truncated or corrupt") from err
    return data, float(metadata[0].get("pixel_size_A", 0.0))


def _read_image_file(path: str | os.PathLike) -> tuple[np.ndarray, float, Path]:
    path = _existing_file(path)
    suffix = path.suffix.lower()
    if suffix in MRC_SUFFIXES:
        return (*read_mrc(path), path)
    if suffix in TIFF_SUFFIXES:
        return (*_read_tiff(path), path)
    raise CryolibError(f"{path} has an unsupported extension; use one of {', '.join(MRC_SUFFIXES + TIFF_SUFFIXES)}")


def read_micrograph(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read one micrograph (.mrc/.mrcs/.tif/.tiff) as a float32 ``(H, W)`` image and its pixel size in Å.

    A stack with a single frame is squeezed; TIFF pixel sizes are 0.0 (unknown)
    unless the file was written by :func:`write_movie`.
    """
    data, pixel_size_A, path = _read_image_file(path)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim == 3:
        raise CryolibError(f"{path} is a 3-D stack of {data.shape[0]} frames; pass a single micrograph "
                           "or use read_movie")
    if data.ndim != 2:
        raise CryolibError(f"{path} has {data.ndim} dimensions (shape {data.shape}); expected a 2-D micrograph")
    _check_pixels(data, path)
    return data, pixel_size_A


def read_movie(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a movie (.tif/.tiff/.mrc/.mrcs) as float32 frames ``(F, H, W)`` and its pixel size in Å."""
    data, pixel_size_A, path = _read_image_file(path)
    if data.ndim != 3:
        hint = "; use read_micrograph for a single image" if data.ndim == 2 else ""
        raise CryolibError(f"{path} has shape {data.shape}, not a (frames, H, W) movie{hint}")
    _check_pixels(data, path)
    return data, pixel_size_A


def _for_writing(data: np.ndarray, pixel_size_A: float, path: Path, suffixes: tuple[str, ...],
                 ndims: tuple[int, ...]) -> np.ndarray:
    """Validate suffix, shape and pixel size; keep integer count dtypes, store the rest as float32."""
    if path.suffix.lower() not in suffixes:
        raise CryolibError(f"cannot write {path}: unsupported extension; use one of {', '.join(suffixes)}")
    data = np.asarray(data)
    if data.ndim not in ndims or data.size == 0:
        raise CryolibError(f"cannot write {path}: expected a non-empty {' or '.join(map(str, ndims))}-D array, "
                           f"got shape {data.shape}")
    if not np.isfinite(pixel_size_A) or pixel_size_A < 0:
        raise CryolibError(f"cannot write {path}: pixel_size_A={pixel_size_A} must be >= 0 (0 = unknown)")
    return np.ascontiguousarray(data, dtype=None if data.dtype in _COUNT_DTYPES else np.float32)


def write_mrc(path: str | os.PathLike, data: np.ndarray, pixel_size_A: float) -> Path:
    """Atomically write a 2-D image or 3-D stack to MRC with its pixel size in Å.

    float data is stored as float32; int8/uint8/int16/uint16 counts are kept.
    A 3-D array written to ``.mrcs`` is marked as an image stack, to ``.mrc`` as a volume.
    """
    path = Path(path)
    array = _for_writing(data, pixel_size_A, path, MRC_SUFFIXES, (2, 3))
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(array)
            if array.ndim == 3 and path.suffix.lower() == ".mrcs":
                mrc.set_image_stack()
            mrc.voxel_size = float(pixel_size_A)
    log.debug("wrote %s: shape %s, %.4g Å/px", path, array.shape, pixel_size_A)
    return path


def write_movie(path: str | os.PathLike, frames: np.ndarray, pixel_size_A: float) -> Path:
    """Atomically write ``(F, H, W)`` frames to .tif/.tiff (zlib) or .mrc/.mrcs; pixel size in Å.

    TIFF keeps the pixel size in tifffile's JSON description, which :func:`read_movie` reads back.
    """
    path = Path(path)
    array = _for_writing(frames, pixel_size_A, path, TIFF_SUFFIXES + MRC_SUFFIXES, (3,))
    if path.suffix.lower() in MRC_SUFFIXES:
        return write_mrc(path, array, pixel_size_A)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, photometric="minisblack", compression="zlib",
                         metadata={"pixel_size_A": float(pixel_size_A)})
    log.debug("wrote %s: %d frames of %s, %s", path, array.shape[0], array.shape[1:], array.dtype)
    return path


# --------------------------------------------------------------------------- listing
def _expand_one(spec: str | os.PathLike) -> list[Path]:
    text = os.path.expanduser(str(spec))
    path = Path(text)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MICROGRAPH_SUFFIXES)
    if path.is_file():
        if path.suffix.lower() not in MRC_SUFFIXES + TIFF_SUFFIXES:
            raise CryolibError(f"{path} is not a micrograph; use .mrc, .mrcs, .tif or .tiff files")
        return [path]
    if glob.has_magic(text):
        return sorted(Path(p) for p in glob.glob(text, recursive=True)
                      if Path(p).is_file() and Path(p).suffix.lower() in MICROGRAPH_SUFFIXES)
    raise CryolibError(f"no micrographs found at {path}: the path does not exist")


def list_micrographs(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Micrograph paths from a directory (*.mrc, *.tif, *.tiff, sorted), a glob, a file, or a list of those."""
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    paths: list[Path] = []
    seen: set[Path] = set()
    for item in specs:
        for path in _expand_one(item):
            if path not in seen:
                seen.add(path)
                paths.append(path)
    if not paths:
        shown = ", ".join(str(s) for s in specs) or "an empty list"
        raise CryolibError(f"no micrographs found in/at {shown}; expected .mrc, .tif or .tiff files")
    return paths


def micrograph_stem(path: str | os.PathLike) -> str:
    """The name that matches coordinate files to a micrograph: the file name without its last extension."""
    return Path(path).stem
