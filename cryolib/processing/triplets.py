"""DRACO's (full, odd, even) tile triplets (DRACO 2024 §3 "Movie to micrograph triplets", §5 augmentation).

A movie's odd and even frames are motion-corrected and summed into two half-dose micrographs;
the sum of all frames is the full micrograph (the simulator writes ``movies/{full,odd,even}/``).
Every non-overlapping ``tile_px`` tile of a micrograph gives one triplet.

Units (one choice for all three images, so that each estimates the same signal):

1. Each half is multiplied by its dose ratio ``mean(full) / mean(half)`` of its micrograph
   (≈ 2, as full = odd + even in counts; exact for an odd frame count too), or by a fixed
   ``half_scale``. A half then has the full image's expected value, with twice its noise variance.
2. All three are standardised by ONE mean and std: those of the full images' tiled area
   (:func:`~cryolib.processing.tiles.tile_stats`), or the training values passed in.

Augmentation (§5): one of the 8 flips/90° rotations (:func:`dihedral`), the same for the three
images of a triplet, drawn from the global torch RNG in ``__getitem__``. With ``num_workers=0``
that is the main process's RNG, which the training loop checkpoints, so a resumed run draws the
same augmentations. The paper's random 1/16–1/4 crop resized to 256 px is not done: tiles are
taken at the micrograph's own sampling.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cryolib.core.errors import CryolibError
from cryolib.processing.tiles import tile_stats

if TYPE_CHECKING:
    from cryolib.io.datasets import Dataset as DatasetFolder

log = logging.getLogger(__name__)

__all__ = ["KEYS", "TripletDataset", "FullTileView", "dihedral", "half_dose_scale"]

KEYS = ("full", "odd", "even")


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 symmetries of the square on the last two axes: rotate by ``k % 4``·90°, then
    flip left-right when ``k >= 4`` (k in 0..7; 0 is the identity)."""
    if not 0 <= k < 8:
        raise CryolibError(f"dihedral index must be in 0..7, got {k}")
    out = np.rot90(image, k % 4, axes=(-2, -1))
    return out[..., ::-1] if k >= 4 else out


def half_dose_scale(full: np.ndarray, half: np.ndarray, where: str = "micrograph") -> float:
    """mean(full) / mean(half): the factor that brings a half-dose sum to the full dose (≈ 2)."""
    m_full, m_half = float(np.mean(full, dtype=np.float64)), float(np.mean(half, dtype=np.float64))
    if not (m_full > 0 and m_half > 0):
        raise CryolibError(f"{where}: the dose ratio needs positive means (counts), got full {m_full:.4g} and "
                           f"half {m_half:.4g}; pass half_scale=<number> for already-normalised halves")
    return m_full / m_half


def _check_triplet(i: int, images: tuple[np.ndarray, ...], tile_px: int) -> tuple[np.ndarray, ...]:
    out = tuple(np.asarray(im) for im in images)
    if out[0].ndim != 2 or any(im.shape != out[0].shape for im in out):
        raise CryolibError(f"triplet {i}: full/odd/even shapes {[im.shape for im in out]} must be one 2-D (H, W)")
    if min(out[0].shape) < tile_px:
        raise CryolibError(f"triplet {i}: {out[0].shape[0]}x{out[0].shape[1]} px is smaller than one {tile_px} px tile")
    for key, im in zip(KEYS, out):
        if not np.isfinite(im).all():
            raise CryolibError(f"triplet {i}: the {key} image contains NaN or inf")
    return out


class TripletDataset(Dataset):
    """Non-overlapping ``tile_px`` tiles of (full, odd, even) micrographs; items ``{"full", "odd", "even"}``
    of float32 tensors [1, t, t] in standardised full-dose units (module docstring).

    ``full``, ``odd``, ``even``: sequences of 2-D arrays, one per micrograph, in counts (or
    anything with ``half_scale`` given). ``half_scale``: None = per-micrograph dose ratio, else
    a fixed factor for both halves. ``mean``/``std``: the training values (default: from
    ``full``). ``max_tiles_per_image`` > 0 keeps a random subset per micrograph (drawn with ``rng``).
    ``augment``: random flips/rotations, identical for the three (turn off for validation).
    """

    def __init__(self, full: Sequence[np.ndarray], odd: Sequence[np.ndarray], even: Sequence[np.ndarray],
                 tile_px: int = 256, max_tiles_per_image: int = 0, mean: float | None = None,
                 std: float | None = None, half_scale: float | None = None, augment: bool = True,
                 rng: np.random.Generator | None = None):
        if tile_px <= 0:
            raise CryolibError(f"tile_px must be positive, got {tile_px}")
        if not len(full) == len(odd) == len(even) or len(full) == 0:
            raise CryolibError(f"need the same positive number of full/odd/even micrographs, got "
                               f"{len(full)}/{len(odd)}/{len(even)}")
        if half_scale is not None and not (np.isfinite(half_scale) and half_scale > 0):
            raise CryolibError(f"half_scale must be a positive number or None, got {half_scale}")
        if (mean is None) != (std is None):
            raise CryolibError("pass both mean and std (the training statistics) or neither")
        self.tile_px, self.augment = int(tile_px), bool(augment)
        triplets = [_check_triplet(i, t, self.tile_px) for i, t in enumerate(zip(full, odd, even))]
        if mean is None:
            mean, std = tile_stats([t[0] for t in triplets], self.tile_px)
        if not std > 0:
            raise CryolibError(f"std must be positive, got {std}")
        self.mean, self.std, self.half_scale = float(mean), float(std), half_scale
        self.scales = np.array([[half_scale or half_dose_scale(f, h, f"triplet {i} {key}")
                                 for key, h in (("odd", o), ("even", e))]
                                for i, (f, o, e) in enumerate(triplets)])  # [n_micrographs, 2]
        self.images = [self._standardise(t, s) for t, s in zip(triplets, self.scales)]  # each [3, H, W]
        self.index = self._build_index(int(max_tiles_per_image), rng if rng is not None else np.random.default_rng(0))
        log.debug("TripletDataset: %d micrographs -> %d triplets of %d px", len(self.images), len(self.index), tile_px)

    def _standardise(self, triplet: tuple[np.ndarray, ...], scales: np.ndarray) -> np.ndarray:
        full, odd, even = (im.astype(np.float64) for im in triplet)
        stack = np.stack([full, scales[0] * odd, scales[1] * even])  # full-dose units
        return np.ascontiguousarray((stack - self.mean) / self.std, dtype=np.float32)  # [3, H, W]

    def _build_index(self, max_tiles: int, rng: np.random.Generator) -> np.ndarray:
        rows_out, t = [], self.tile_px
        for i, image in enumerate(self.images):
            rows, cols = image.shape[1] // t, image.shape[2] // t
            cells = np.stack(np.divmod(np.arange(rows * cols), cols), axis=1)  # [rows·cols, 2] (row, col)
            if 0 < max_tiles < len(cells):
                cells = cells[np.sort(rng.choice(len(cells), size=max_tiles, replace=False))]
            rows_out.append(np.column_stack([np.full(len(cells), i), cells]))
        return np.concatenate(rows_out).astype(np.int64)  # [n_tiles, 3]: micrograph, row, col

    @classmethod
    def from_folder(cls, dataset: "DatasetFolder", split: str | None = "train", **kwargs) -> "TripletDataset":
        """Triplets of one split of a dataset folder (``cryolib.io.datasets.Dataset`` with
        ``movies/{full,odd,even}/<stem>.mrc``); ``split=None`` takes every micrograph."""
        from cryolib.io.micrographs import read_micrograph

        paths = dataset.micrographs if split is None else dataset.split(split)
        if not paths:
            raise CryolibError(f"{dataset.root}: no micrographs in split {split!r}")
        images = {key: [] for key in KEYS}
        for path in paths:
            for key in KEYS:
                file = Path(dataset.path_of(path.stem, key))
                if not file.is_file():
                    raise CryolibError(f"{file} is missing: DRACO needs movies/{{full,odd,even}}/ triplets "
                                       "(simulate the dataset with cryolib, or motion-correct odd/even halves)")
                images[key].append(read_micrograph(file)[0])
        return cls(images["full"], images["odd"], images["even"], **kwargs)

    @property
    def stats(self) -> dict:
        """The standardisation to reuse at inference (plain types; stored in checkpoints)."""
        return {"mean": self.mean, "std": self.std, "tile_px": self.tile_px,
                "half_scale": "dose-ratio" if self.half_scale is None else self.half_scale,
                "units": "full-dose, standardised by the full images' mean/std"}

    def __len__(self) -> int:
        return len(self.index)

    def tiles(self, i: int) -> np.ndarray:
        """The standardised triplet ``i`` before augmentation: [3, t, t] (full, odd, even)."""
        k, r, c = self.index[i]
        t = self.tile_px
        return self.images[k][:, r * t : (r + 1) * t, c * t : (c + 1) * t]

    def _draw(self) -> int:
        return int(torch.randint(0, 8, ())) if self.augment else 0

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        stack = dihedral(self.tiles(i), self._draw())  # one transform for all three
        stack = torch.from_numpy(np.ascontiguousarray(stack))
        return {key: stack[j : j + 1] for j, key in enumerate(KEYS)}  # each [1, t, t]

    def full_view(self) -> "FullTileView":
        """The full-image tiles alone (same tiles, stats and augmentation): the MAE warm-up's data."""
        return FullTileView(self)


class FullTileView(Dataset):
    """Items [1, t, t]: the ``full`` tile of each triplet of a :class:`TripletDataset` (DRACO §5 warm-up)."""

    def __init__(self, triplets: TripletDataset):
        self.triplets = triplets

    @property
    def stats(self) -> dict:
        return self.triplets.stats

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, i: int) -> torch.Tensor:
        full = dihedral(self.triplets.tiles(i)[0], self.triplets._draw())
        return torch.from_numpy(np.ascontiguousarray(full)).unsqueeze(0)
