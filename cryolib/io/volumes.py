"""3-D maps as MRC files with their voxel size, so ChimeraX (``open map.mrc``) shows them at the right scale.

Volumes are float32 ``(D, D, D)`` arrays indexed ``[z, y, x]`` (as torch-fourier-slice and
:mod:`cryolib.simulate.potential`); MRC stores them in that order (mode 2, ``mapc/mapr/maps`` = x/y/z).
The voxel size (Å) goes into the header's ``cella`` (``voxel_size``); the origin is 0. Writes are atomic.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import mrcfile
import numpy as np

from cryolib.core.atomic import atomic_path
from cryolib.core.errors import CryolibError
from cryolib.core.files import existing_file

__all__ = ["MAP_SUFFIXES", "write_map", "read_map"]

log = logging.getLogger(__name__)

MAP_SUFFIXES = (".mrc", ".map")


def _check_volume(volume: np.ndarray, pixel_size_A: float, path: Path) -> np.ndarray:
    if path.suffix.lower() not in MAP_SUFFIXES:
        raise CryolibError(f"cannot write {path}: a map needs one of the extensions {', '.join(MAP_SUFFIXES)}")
    data = np.asarray(volume)
    if data.ndim != 3 or data.size == 0:
        raise CryolibError(f"cannot write {path}: a map is a non-empty (D, H, W) volume, got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.number) or not np.isfinite(data).all():
        raise CryolibError(f"cannot write {path}: the volume holds NaN/Inf or non-numeric voxels")
    if not (np.isfinite(pixel_size_A) and pixel_size_A > 0):
        raise CryolibError(f"cannot write {path}: pixel_size_A={pixel_size_A!r} must be the voxel size in Å (> 0)")
    return np.ascontiguousarray(data, dtype=np.float32)


def write_map(path: str | os.PathLike, volume: np.ndarray, pixel_size_A: float) -> Path:
    """Atomically write a ``(D, H, W)`` volume (any units; float32 on disk) to ``.mrc``/``.map`` with its
    voxel size in Å. Parent folders are created; a parent that is a file raises :class:`CryolibError`."""
    path = Path(path)
    data = _check_volume(volume, pixel_size_A, path)
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise CryolibError(f"cannot write {path}: {blocker} is a file, not a folder; choose another output path")
    try:
        with atomic_path(path) as tmp:
            with mrcfile.new(tmp, overwrite=True) as mrc:
                mrc.set_data(data)
                mrc.set_volume()
                mrc.voxel_size = float(pixel_size_A)
    except OSError as err:
        raise CryolibError(f"cannot write {path}: {err.strerror or err}") from err
    log.debug("wrote map %s: shape %s, %.4g Å/voxel", path, data.shape, pixel_size_A)
    return path


def read_map(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a 3-D MRC map: float32 ``(D, H, W)`` and the voxel size in Å (0.0 when the header has none)."""
    path = existing_file(path)
    try:
        with mrcfile.open(path, mode="r", permissive=False) as mrc:
            data = np.asarray(mrc.data, dtype=np.float32).copy()
            voxel = float(mrc.voxel_size.x)
    except (ValueError, OSError, EOFError) as err:
        raise CryolibError(f"{path} is not a readable MRC map ({err})") from err
    if data.ndim != 3:
        raise CryolibError(f"{path} holds shape {data.shape}, not a 3-D map")
    return data, voxel
