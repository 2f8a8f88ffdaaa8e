"""Micrograph tiles: the samples of Cryo-EMMAE's MAE and the layout of its embedding image.

Cryo-EMMAE (``reference/cryoemmae.md`` §3): every non-overlapping 64×64 tile of a preprocessed
micrograph is one sample, standardised by the global pixel mean and std of the training tiles;
the same mean/std are reused at inference. At inference (§4) each tile is encoded on its own and
the token grids are laid back side by side into one embedding image.

Edges: a micrograph whose sides are not multiples of ``tile_px`` is *cropped* to the largest
multiple (the right and bottom remainders are dropped; Cryo-EMMAE's 1024² images tile exactly).
:func:`image_to_tiles` can instead *pad* the right and bottom edges with the image mean, so
that every pixel is covered; :func:`tiles_to_grid` then returns the padded grid.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cryolib.core.errors import CryolibError

log = logging.getLogger(__name__)

__all__ = ["TileDataset", "tile_stats", "image_to_tiles", "tiles_to_grid", "standardize", "synthetic_blob_images"]


def _check_image(image: np.ndarray, tile_px: int, index: int | None = None) -> np.ndarray:
    image = np.asarray(image)
    where = "image" if index is None else f"image {index}"
    if image.ndim != 2:
        raise CryolibError(f"{where} has shape {image.shape}; expected a 2-D (H, W) micrograph")
    if min(image.shape) < tile_px:
        raise CryolibError(f"{where} of {image.shape[0]}x{image.shape[1]} px is smaller than one {tile_px} px tile")
    if not np.isfinite(image).all():
        raise CryolibError(f"{where} contains NaN or inf; preprocess it first")
    return image


def _tile_grid(shape: tuple[int, int], tile_px: int) -> tuple[int, int]:
    """(rows, cols) of whole tiles that fit (crop mode)."""
    return shape[0] // tile_px, shape[1] // tile_px


def tile_stats(images: Sequence[np.ndarray], tile_px: int = 64) -> tuple[float, float]:
    """Global pixel mean and std over the tiled area (crop mode) of ``images`` (cryoemmae.md §3)."""
    total, total_sq, count = 0.0, 0.0, 0
    for i, image in enumerate(images):
        image = _check_image(image, tile_px, i)
        rows, cols = _tile_grid(image.shape, tile_px)
        area = image[: rows * tile_px, : cols * tile_px].astype(np.float64)
        total += float(area.sum())
        total_sq += float((area**2).sum())
        count += area.size
    if count == 0:
        raise CryolibError("tile_stats needs at least one image")
    mean = total / count
    std = max(total_sq / count - mean**2, 0.0) ** 0.5
    if std == 0.0:
        raise CryolibError("the training tiles are constant (std 0); check the preprocessing")
    return mean, std


def standardize(x: np.ndarray | torch.Tensor, mean: float, std: float) -> np.ndarray | torch.Tensor:
    """(x − mean) / std with the training-set statistics."""
    return (x - mean) / std


class TileDataset(Dataset):
    """Non-overlapping ``tile_px`` tiles of preprocessed micrographs, standardised; items [1, t, t].

    ``images``: 2-D float arrays (H, W), already preprocessed. ``max_tiles_per_image`` > 0 keeps a
    random subset of that many tiles per image (drawn with ``rng``). ``mean``/``std`` default to
    :func:`tile_stats` of ``images`` (pass the training values for validation/test sets).
    Tiles are cut lazily, so the dataset holds only the images and a tile index.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        tile_px: int = 64,
        max_tiles_per_image: int = 0,
        mean: float | None = None,
        std: float | None = None,
        rng: np.random.Generator | None = None,
    ):
        if tile_px <= 0:
            raise CryolibError(f"tile_px must be positive, got {tile_px}")
        if len(images) == 0:
            raise CryolibError("TileDataset needs at least one image")
        self.tile_px = int(tile_px)
        self.images = [np.ascontiguousarray(_check_image(im, tile_px, i), dtype=np.float32)
                       for i, im in enumerate(images)]
        if (mean is None) != (std is None):
            raise CryolibError("pass both mean and std (the training statistics) or neither")
        if mean is None:
            mean, std = tile_stats(self.images, tile_px)
        if not std > 0:
            raise CryolibError(f"std must be positive, got {std}")
        self.mean, self.std = float(mean), float(std)
        rng = rng if rng is not None else np.random.default_rng(0)
        self.index = self._build_index(int(max_tiles_per_image), rng)  # [n_tiles, 3]: image, row, col
        log.debug("TileDataset: %d images -> %d tiles of %d px", len(self.images), len(self.index), tile_px)

    def _build_index(self, max_tiles: int, rng: np.random.Generator) -> np.ndarray:
        rows_out = []
        for i, image in enumerate(self.images):
            rows, cols = _tile_grid(image.shape, self.tile_px)
            cells = np.stack(np.divmod(np.arange(rows * cols), cols), axis=1)  # [rows·cols, 2] (row, col)
            if 0 < max_tiles < len(cells):
                cells = cells[np.sort(rng.choice(len(cells), size=max_tiles, replace=False))]
            rows_out.append(np.column_stack([np.full(len(cells), i), cells]))
        return np.concatenate(rows_out).astype(np.int64)

    @property
    def stats(self) -> dict:
        """The standardisation to reuse at inference: ``{"mean", "std", "tile_px"}``."""
        return {"mean": self.mean, "std": self.std, "tile_px": self.tile_px}

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> torch.Tensor:
        k, r, c = self.index[i]
        t = self.tile_px
        tile = self.images[k][r * t : (r + 1) * t, c * t : (c + 1) * t]
        return torch.from_numpy(standardize(tile, self.mean, self.std)).unsqueeze(0)  # [1, t, t]


def image_to_tiles(image: np.ndarray, tile_px: int = 64, mode: str = "crop") -> tuple[np.ndarray, tuple[int, int]]:
    """Cut one micrograph into row-major tiles: -> (tiles [n, 1, t, t] float32, grid (rows, cols)).

    ``mode="crop"`` drops the right/bottom remainder; ``mode="pad"`` pads them with the image mean.
    No standardisation here: apply :func:`standardize` with the training statistics.
    """
    image = _check_image(image, tile_px).astype(np.float32, copy=False)
    if mode == "pad":
        rows, cols = -(-image.shape[0] // tile_px), -(-image.shape[1] // tile_px)
        pad = ((0, rows * tile_px - image.shape[0]), (0, cols * tile_px - image.shape[1]))
        image = np.pad(image, pad, constant_values=float(image.mean()))
    elif mode == "crop":
        rows, cols = _tile_grid(image.shape, tile_px)
        image = image[: rows * tile_px, : cols * tile_px]
    else:
        raise CryolibError(f"unknown tiling mode {mode!r}; choose 'crop' or 'pad'")
    tiles = image.reshape(rows, tile_px, cols, tile_px).swapaxes(1, 2)  # [rows, cols, t, t]
    return np.ascontiguousarray(tiles.reshape(rows * cols, 1, tile_px, tile_px)), (rows, cols)


def tiles_to_grid(per_tile: np.ndarray | torch.Tensor, grid: tuple[int, int]) -> np.ndarray | torch.Tensor:
    """Lay per-tile maps back on the micrograph: [rows·cols, h, w, ...] -> [rows·h, cols·w, ...].

    Used with :meth:`MaskedAutoencoder.embed` ([n, h, w, D] per tile) to build the whole
    micrograph's embedding image [rows·h, cols·w, D]; also works for [n, 1, t, t] pixel tiles
    after dropping the channel axis.
    """
    rows, cols = grid
    if per_tile.shape[0] != rows * cols:
        raise CryolibError(f"got {per_tile.shape[0]} tiles for a {rows}x{cols} grid")
    h, w, rest = per_tile.shape[1], per_tile.shape[2], tuple(per_tile.shape[3:])
    x = per_tile.reshape(rows, cols, h, w, *rest).swapaxes(1, 2)  # [rows, h, cols, w, ...]
    return x.reshape(rows * h, cols * w, *rest)


def synthetic_blob_images(n_images: int, size_px: int = 128, seed: int = 0, n_blobs: int = 12,
                          sigma_px: float = 3.0, noise: float = 0.3) -> list[np.ndarray]:
    """Gaussian blobs on white noise: a structured toy set for tests and smoke runs (not physics)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size_px, 0:size_px].astype(np.float32)
    images = []
    for _ in range(n_images):
        img = np.zeros((size_px, size_px), np.float32)
        for cy, cx in rng.uniform(0, size_px, size=(n_blobs, 2)):
            img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma_px**2))
        images.append((img + noise * rng.standard_normal(img.shape)).astype(np.float32))
    return images
