"""Topaz's input side, shared by picking and training: the scale factor, image checks and
``topaz preprocess`` (Fourier downsampling + GMM normalisation) run in-process.

See :mod:`cryolib.pick.topaz` for the scale convention.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Iterator, Mapping, Sequence, Union

import numpy as np
from tqdm import tqdm

from cryolib.core.errors import CryolibError
from cryolib.io.micrographs import micrograph_stem, read_micrograph, write_mrc

log = logging.getLogger(__name__)

Images = Union[Mapping[str, np.ndarray], Sequence[Union[str, os.PathLike]]]


def topaz_scale_factor(diameter_px: float, target_radius_px: float = 8.0) -> int:
    """Integer downsampling factor that brings the particle radius closest to ``target_radius_px``.

    Closest in log scale, so 20 px radius -> factor 3 (6.7 px) rather than 2 (10 px); never < 1
    (small particles are not upsampled). ``diameter_px`` is in input pixels.
    """
    _check_diameter(diameter_px)
    if not target_radius_px > 0:
        raise CryolibError(f"target_radius_px={target_radius_px} must be > 0 (pixels)")
    ratio = diameter_px / 2.0 / target_radius_px
    candidates = {max(1, math.floor(ratio)), max(1, math.ceil(ratio))}
    return min(sorted(candidates), key=lambda f: abs(math.log(ratio / f)))


def _check_diameter(diameter_px: float) -> None:
    if not (isinstance(diameter_px, (int, float, np.number)) and np.isfinite(diameter_px) and diameter_px > 0):
        raise CryolibError(f"diameter_px={diameter_px!r} must be a finite number > 0 (particle diameter in pixels)")


def _load_images(images: Images) -> dict[str, np.ndarray]:
    """Name -> float32 (H, W) image, from a dict of arrays or a list of micrograph paths."""
    if isinstance(images, Mapping):
        loaded = {str(k): np.asarray(v, dtype=np.float32) for k, v in images.items()}
    elif isinstance(images, (str, os.PathLike)):
        raise CryolibError(f"images={images!r} is a single path; pass a list of paths or a dict of arrays")
    else:
        paths = [Path(p) for p in images]
        stems = [micrograph_stem(p) for p in paths]
        if len(set(stems)) != len(stems):
            raise CryolibError(f"micrograph names are not unique: {stems}; Topaz matches files by name")
        loaded = {stem: read_micrograph(p)[0] for stem, p in zip(stems, paths)}
    if not loaded:
        raise CryolibError("no micrographs given; pass at least one image (dict of arrays or list of paths)")
    for name, image in loaded.items():
        if image.ndim != 2 or min(image.shape) < 16 or not np.isfinite(image).all():
            raise CryolibError(f"micrograph {name!r}: need a finite 2-D image of at least 16x16 px, "
                               f"got shape {image.shape}")
        if os.sep in name or name in ("", ".", ".."):
            raise CryolibError(f"micrograph name {name!r} cannot be used as a file name")
    return loaded


def _topaz_preprocess(image: np.ndarray, factor: int, seed: int) -> np.ndarray:
    """``topaz preprocess -s factor`` on one image: Fourier crop, then 2-component GMM normalisation."""
    from topaz.stats import normalize
    from topaz.utils.image import downsample

    x = downsample(image.astype(np.float32), factor) if factor > 1 else image.astype(np.float32)
    state = np.random.get_state()  # normalize() subsamples pixels with the global NumPy RNG
    np.random.seed(seed % 2**32)
    try:
        x, _ = normalize(x, alpha=900, beta=1, num_iters=100, sample=10, method="gmm")
    finally:
        np.random.set_state(state)
    return x.astype(np.float32)


def prepare_micrographs(images: Images, diameter_px: float, workdir: str | os.PathLike,
                        seed: int = 0) -> tuple[Path, int]:
    """Downsample + normalise micrographs as ``topaz preprocess`` and write ``workdir/<name>.mrc``.

    Returns the folder and the integer downsampling factor (:func:`topaz_scale_factor`).
    """
    factor = topaz_scale_factor(diameter_px)
    loaded = _load_images(images)
    out = Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for name, image in tqdm(loaded.items(), desc="topaz preprocess", disable=len(loaded) < 8):
        write_mrc(out / f"{name}.mrc", _topaz_preprocess(image, factor, seed), 0.0)
    log.info("topaz preprocess: %d micrograph(s), factor %d, %.2f s", len(loaded), factor,
             time.perf_counter() - t0)
    return out, factor


@contextlib.contextmanager
def _workdir(workdir: str | os.PathLike | None) -> Iterator[Path]:
    """The caller's folder (kept), or a temporary one removed on exit."""
    if workdir is not None:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix="cryolib-topaz-") as tmp:
            yield Path(tmp)
