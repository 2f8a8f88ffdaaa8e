"""Data of the ViTDet particle detector: the working scale, boxes, and a dataset of augmented random crops.

* Working scale: each micrograph is resized (area averaging, :func:`cryolib.processing.preprocess.resize`)
  so that the particle diameter is :data:`WORKING_DIAMETER_PX` px (32: two patch-16 tokens per particle,
  8 px on the stride-4 level p2); its slow background (a Gaussian blur of σ = :data:`BACKGROUND_SIGMA_D`
  diameters: illumination gradients, thick ice) is subtracted; then it is normalised robustly per
  micrograph, (x − median) / (1.4826·MAD),
  clipped to ±:data:`CLIP_SIGMA` (not ImageNet's statistics: DRACO's config sets pixel_mean/std for
  normalised micrographs).
* Boxes: squares of the working diameter centred on the particles (the metric's boxes, overlap60).
* :class:`DetectionCrops`: ``crop_px`` square crops at the working scale with one of the 8 dihedral
  symmetries, as dicts of tensors that the one training loop batches and counts: ``image`` [1, S, S],
  ``boxes`` [M, 4] (x0, y0, x1, y1 px in detectron2's continuous coordinates, pixel i spans [i, i+1];
  zero-padded to M = :data:`MAX_BOXES`), ``classes`` [M]
  (0 particle, −1 ignored) and ``n_boxes`` (valid rows). Crop ``i`` depends only on (seed, i), so the
  loop's seeded order and exact resume hold. Particles whose centre lies outside the crop but whose box
  reaches into it are ignored (class −1), not background.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import pandas as pd
import torch

from cryolib.core.errors import CryolibError
from cryolib.processing import preprocess as pp

__all__ = ["WORKING_DIAMETER_PX", "CLIP_SIGMA", "MAX_BOXES", "IGNORE", "WorkingImage", "working_image",
           "to_working", "from_working", "DetectionCrops", "dihedral_points"]

WORKING_DIAMETER_PX = 32.0  # particle diameter at the detector's working scale (px)
BACKGROUND_SIGMA_D = 2.0  # the background (Gaussian of this many diameters) is subtracted first
CLIP_SIGMA = 8.0  # normalised values are clipped to ±CLIP_SIGMA robust stds (hot pixels, carbon edges)
MAX_BOXES = 384  # boxes per crop after padding (a 256 px crop holds at most ~80 particles of 32 px)
IGNORE = -1  # class of a box that is neither particle nor background in the losses


@dataclass
class WorkingImage:
    """One micrograph at the working scale: normalised image [H, W] and the resize factors (out px per in px)."""

    image: np.ndarray
    scale_xy: tuple[float, float]
    diameter_px: float  # the input diameter (px)


def working_image(image: np.ndarray, diameter_px: float, working_diameter_px: float = WORKING_DIAMETER_PX,
                  name: str = "micrograph") -> WorkingImage:
    """Resize ``image`` so the particle diameter is ``working_diameter_px`` px, subtract its background and
    normalise it robustly (see the module docstring)."""
    d = pp.check_diameter(diameter_px)
    img = pp.check_image(np.asarray(image, np.float32), name)
    small, scale_xy = pp.resize(img, working_diameter_px / d)
    small = small - cv2.GaussianBlur(small, (0, 0), BACKGROUND_SIGMA_D * working_diameter_px)  # slow background
    med = float(np.median(small))
    mad = 1.4826 * float(np.median(np.abs(small - med)))
    if not mad > 0:
        mad = float(small.std()) or 1.0
    out = np.clip((small - med) / mad, -CLIP_SIGMA, CLIP_SIGMA).astype(np.float32)
    return WorkingImage(out, scale_xy, d)


def to_working(coords: pd.DataFrame, work: WorkingImage) -> np.ndarray:
    """Particle centres x, y (input px) -> [N, 2] working px."""
    if len(coords) == 0:
        return np.zeros((0, 2), np.float32)
    x, y = pp.map_coords(coords["x"].to_numpy(np.float64), coords["y"].to_numpy(np.float64), work.scale_xy)
    return np.stack([x, y], 1).astype(np.float32)


def from_working(xy: np.ndarray, scores: np.ndarray, work: WorkingImage) -> pd.DataFrame:
    """Working-px centres [N, 2] and scores -> DataFrame[x, y, diameter, score] in input px, best first."""
    x, y = pp.map_coords(xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64), work.scale_xy, inverse=True)
    df = pd.DataFrame({"x": x, "y": y, "diameter": work.diameter_px, "score": scores.astype(np.float64)})
    return df.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def dihedral_points(xy: np.ndarray, k: int, side: int) -> np.ndarray:
    """Centres [N, 2] (x, y px) under :func:`cryolib.processing.triplets.dihedral` ``k`` of a ``side`` px square."""
    x, y = xy[:, 0].copy(), xy[:, 1].copy()
    for _ in range(k % 4):  # np.rot90 (axes -2, -1): pixel (r, c) -> (S-1-c, r)
        x, y = y, side - 1 - x
    if k >= 4:
        x = side - 1 - x
    return np.stack([x, y], 1)


def _dihedral_image(img: np.ndarray, k: int) -> np.ndarray:
    out = np.rot90(img, k % 4, axes=(-2, -1))
    return np.ascontiguousarray(out[..., ::-1] if k >= 4 else out)


class DetectionCrops:
    """``n_crops`` augmented crops from working-scale micrographs and their particle centres (see module).

    ``images``: normalised working images; ``centres``: [N_i, 2] working px per image; ``ignored``:
    optional [K_i, 2] centres per image whose boxes are ignored in the losses (incomplete labels).
    A crop is centred near a random labelled particle with probability ``p_particle`` (few labels
    still give positives), else placed uniformly. ``diameter_px``: box side at the working scale.
    """

    def __init__(self, images: Sequence[np.ndarray], centres: Sequence[np.ndarray], n_crops: int, crop_px: int = 256,
                 seed: int = 0, ignored: Sequence[np.ndarray] | None = None, p_particle: float = 0.5,
                 diameter_px: float = WORKING_DIAMETER_PX, stats: dict | None = None):
        if len(images) == 0 or len(images) != len(centres):
            raise CryolibError(f"DetectionCrops needs one centre array per image, got {len(images)} images and "
                               f"{len(centres)} centre arrays")
        self.images = [np.asarray(im, np.float32) for im in images]
        self.centres = [np.asarray(c, np.float32).reshape(-1, 2) for c in centres]
        self.ignored = [np.asarray(c, np.float32).reshape(-1, 2) for c in (ignored or [np.zeros((0, 2))] * len(images))]
        self.n_crops, self.crop_px, self.seed = int(n_crops), int(crop_px), int(seed)
        self.p_particle, self.diameter_px = float(p_particle), float(diameter_px)
        self._stats = dict(stats or {})

    def __len__(self) -> int:
        return self.n_crops

    @property
    def stats(self) -> dict:
        """Stored in the checkpoint as ``data_stats``: the working scale and the crop settings."""
        return {"working_diameter_px": self.diameter_px, "crop_px": self.crop_px, "normalisation": "median/MAD",
                "n_images": len(self.images), "n_particles": int(sum(len(c) for c in self.centres)), **self._stats}

    def _origin(self, rng: np.random.Generator, i_img: int) -> tuple[int, int]:
        h, w = self.images[i_img].shape
        s = self.crop_px
        c = self.centres[i_img]
        if len(c) and rng.random() < self.p_particle:
            x, y = c[rng.integers(len(c))] + rng.uniform(-s / 2 + self.diameter_px, s / 2 - self.diameter_px, 2)
            x0, y0 = int(round(x - s / 2)), int(round(y - s / 2))
        else:
            x0, y0 = int(rng.integers(0, max(w - s, 0) + 1)), int(rng.integers(0, max(h - s, 0) + 1))
        return int(np.clip(x0, 0, max(w - s, 0))), int(np.clip(y0, 0, max(h - s, 0)))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(index)])
        i_img = int(rng.integers(len(self.images)))
        x0, y0 = self._origin(rng, i_img)
        s, r = self.crop_px, self.diameter_px / 2
        crop = np.zeros((s, s), np.float32)  # micrographs smaller than a crop are padded with the median (0)
        part = self.images[i_img][y0:y0 + s, x0:x0 + s]
        crop[:part.shape[0], :part.shape[1]] = part
        k = int(rng.integers(8))
        boxes, classes = [], []
        for pts, cls in ((self.centres[i_img], 0), (self.ignored[i_img], IGNORE)):
            local = pts - np.array([x0, y0], np.float32)
            inside = (local >= -0.5).all(1) & (local < s - 0.5).all(1)
            near = (local > -r).all(1) & (local < s - 1 + r).all(1) & ~inside  # box reaches in, centre outside
            for sel, c in ((inside, cls), (near, IGNORE)):
                if sel.any():
                    boxes.append(dihedral_points(local[sel], k, s))
                    classes.append(np.full(int(sel.sum()), c, np.int64))
        xy = np.concatenate(boxes) if boxes else np.zeros((0, 2), np.float32)
        cls = np.concatenate(classes) if classes else np.zeros(0, np.int64)
        n = min(len(xy), MAX_BOXES)
        out_boxes = np.zeros((MAX_BOXES, 4), np.float32)
        c = xy[:n] + 0.5  # pixel-centre convention -> detectron2's continuous coordinates (pixel i spans [i, i+1])
        out_boxes[:n] = np.clip(np.concatenate([c - r, c + r], 1), 0, s)
        out_cls = np.zeros(MAX_BOXES, np.int64)
        out_cls[:n] = cls[:n]
        return {"image": torch.from_numpy(_dihedral_image(crop, k)[None].copy()), "boxes": torch.from_numpy(out_boxes),
                "classes": torch.from_numpy(out_cls), "n_boxes": torch.tensor(n, dtype=torch.int64)}
