"""Single-particle maps from picks, with known poses: DRACO Table 1's resolution column and Table 3.

The papers judge picks (Table 1) and denoised particles (Table 3) by the resolution of the map they give.
A simulation knows every pose, so no refinement runs: :func:`reconstruct_from_picks`

1. caps the picks at ``max_particles`` (highest scores first: :func:`cryolib.reconstruct.poses.select_picks`);
2. gives each pick a pose (:func:`~cryolib.reconstruct.poses.assign_poses`: true positives their particle's
   pose and centre, false positives a random pose at their own position);
3. extracts normalised boxes (:func:`~cryolib.reconstruct.particles.extract_particles`) from the micrographs,
   or from ``images`` (denoised micrographs, Table 3), and phase-flips them with the micrograph's CTF;
4. inserts them into two random half-maps (:mod:`cryolib.reconstruct.insertion`);
5. reports the FSC of the half-maps under a soft spherical mask and the resolution at 0.143 (Å).

The resolution cannot go below Nyquist (2 × the binned pixel size: 6-12 Å for the analogs), and with a few
hundred particles it stays well above it: the paper's 2-4 Å come from refined real data sets at full pixel size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from cryolib.core.errors import CryolibError
from cryolib.core.reproducibility import child_rng
from cryolib.evaluate.fsc import FSC_THRESHOLD, fourier_shell_correlation, resolution_at, soft_sphere_mask
from cryolib.io.datasets import Dataset
from cryolib.io.micrographs import read_micrograph
from cryolib.io.volumes import write_map
from cryolib.reconstruct.insertion import half_split, reconstruct_half_maps
from cryolib.reconstruct.particles import OPTICS_COLUMNS, default_box_px, extract_particles, phase_flip
from cryolib.reconstruct.poses import EULER_COLUMNS, assign_poses, ground_truth_poses, select_picks
from cryolib.simulate.potential import euler_zyz_to_rotation

__all__ = ["MASK_MARGIN_PX", "MASK_EDGE_PX", "Reconstruction", "fsc_mask", "reconstruct_particles",
           "reconstruct_from_picks", "particle_stack"]

log = logging.getLogger(__name__)

MASK_MARGIN_PX = 2.0  # FSC mask radius = particle radius + this (px)
MASK_EDGE_PX = 4.0  # raised-cosine edge of the FSC mask (px)


@dataclass
class Reconstruction:
    """Two half-maps, their FSC and the resolution at 0.143, with the particle counts that made them."""

    half_maps: np.ndarray  # (2, B, B, B) float32, protein positive (arbitrary units)
    fsc: pd.DataFrame  # fourier_shell_correlation of the masked half-maps
    resolution_A: float
    n_particles: int
    n_true_positive: int
    n_false_positive: int
    pixel_size_A: float
    box_px: int

    @property
    def full_map(self) -> np.ndarray:
        """The mean of the half-maps ``(B, B, B)``."""
        return self.half_maps.mean(axis=0)

    def write(self, folder: str | Path, name: str) -> list[Path]:
        """``<name>_half1.mrc``, ``<name>_half2.mrc`` and ``<name>.mrc`` (the mean), with the voxel size."""
        folder = Path(folder)
        return [write_map(folder / f"{name}_half1.mrc", self.half_maps[0], self.pixel_size_A),
                write_map(folder / f"{name}_half2.mrc", self.half_maps[1], self.pixel_size_A),
                write_map(folder / f"{name}.mrc", self.full_map, self.pixel_size_A)]


def fsc_mask(box_px: int, diameter_px: float) -> np.ndarray:
    """Soft sphere for the FSC: radius = diameter / 2 + 2 px, 4 px raised-cosine edge, inside the box."""
    edge = min(MASK_EDGE_PX, max(box_px / 2 - 1 - diameter_px / 2, 0.0))
    radius = min(diameter_px / 2 + MASK_MARGIN_PX, box_px / 2 - 1 - edge)
    return soft_sphere_mask(box_px, radius, edge)


def reconstruct_particles(particles: np.ndarray, rotations: np.ndarray, pixel_size_A: float, diameter_px: float,
                          seed: int, n_true_positive: int | None = None, progress: bool = False) -> Reconstruction:
    """Half-maps, FSC and resolution from prepared boxes ``(N, B, B)`` (phase-flipped, protein positive)
    and their rotations ``(N, 3, 3)``; the halves are a random split seeded by ``seed``."""
    n = len(particles)
    if n < 2:
        raise CryolibError(f"a reconstruction needs at least 2 particles (one per half-map), got {n}")
    halves = half_split(n, child_rng(seed, "half_split"))
    maps = reconstruct_half_maps(particles, rotations, halves, progress=progress)
    mask = fsc_mask(maps.shape[-1], diameter_px)
    table = fourier_shell_correlation(maps[0] * mask, maps[1] * mask, pixel_size_A)
    tp = n if n_true_positive is None else int(n_true_positive)
    return Reconstruction(maps, table, resolution_at(table, FSC_THRESHOLD), n, tp, n - tp, float(pixel_size_A),
                          int(maps.shape[-1]))


def _optics_row(ds: Dataset, stem: str) -> pd.Series:
    meta = ds.metadata
    missing = [c for c in ("micrograph", *OPTICS_COLUMNS) if c not in meta.columns]
    if missing:
        raise CryolibError(f"{ds.root / 'metadata.csv'} lacks {missing}: the phase flip needs each micrograph's CTF")
    rows = meta[meta["micrograph"] == stem]
    if rows.empty:
        raise CryolibError(f"{ds.name}: micrograph {stem!r} is not in metadata.csv")
    return rows.iloc[0]


def _image(ds: Dataset, stem: str, images: Mapping[str, np.ndarray] | None) -> np.ndarray:
    if images is not None:
        if stem not in images:
            raise CryolibError(f"{ds.name}: no image given for micrograph {stem!r}")
        return np.asarray(images[stem], dtype=np.float32)
    paths = {p.stem: p for p in ds.micrographs}
    if stem not in paths:
        raise CryolibError(f"{ds.name}: picks name micrograph {stem!r}, which is not in {ds.root / 'micrographs'}")
    return read_micrograph(paths[stem])[0]


def particle_stack(ds: Dataset, picks: Mapping[str, pd.DataFrame], seed: int,
                   images: Mapping[str, np.ndarray] | None = None, box_px: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Phase-flipped boxes ``(N, B, B)``, rotations ``(N, 3, 3)`` and the pose table (with ``micrograph``)
    of every pick in ``picks`` (no cap), in micrograph then pick order."""
    if not ds.pixel_size_A > 0:
        raise CryolibError(f"{ds.name}: unknown pixel size; a reconstruction needs it in Å")
    b = default_box_px(ds.diameter_px) if box_px is None else int(box_px)
    boxes, tables = [], []
    for stem in sorted(picks):
        df = picks[stem]
        if len(df) == 0:
            continue
        poses = assign_poses(df, ground_truth_poses(ds, stem), ds.diameter_px, child_rng(seed, "false_poses", stem))
        image = _image(ds, stem, images)
        parts = extract_particles(image, poses[["x", "y"]].to_numpy(), b, ds.diameter_px)
        optics = pd.DataFrame([_optics_row(ds, stem)[list(OPTICS_COLUMNS)]] * len(parts)).reset_index(drop=True)
        boxes.append(phase_flip(parts, ds.pixel_size_A, optics))
        tables.append(poses.assign(micrograph=stem))
    if not boxes:
        raise CryolibError(f"{ds.name}: no picks to reconstruct from (every micrograph's pick table is empty)")
    table = pd.concat(tables, ignore_index=True)
    rot = euler_zyz_to_rotation(table[list(EULER_COLUMNS)].to_numpy(float))
    return np.concatenate(boxes), rot, table


def reconstruct_from_picks(ds: Dataset, picks: Mapping[str, pd.DataFrame], max_particles: int | None, seed: int,
                           images: Mapping[str, np.ndarray] | None = None, box_px: int | None = None,
                           progress: bool = False) -> Reconstruction:
    """The map from a method's picks (module docstring): at most ``max_particles`` (``None``: all), poses
    from the ground truth, boxes of ``box_px`` (default :func:`~cryolib.reconstruct.particles.default_box_px`)
    from ``images[stem]`` when given (e.g. denoised micrographs) else ``micrographs/<stem>.mrc``."""
    if not isinstance(picks, Mapping) or not picks:
        raise CryolibError(f"{ds.name}: give picks as {{micrograph stem: DataFrame(x, y, score)}}, got none")
    kept = select_picks(picks, max_particles, seed)
    parts, rot, table = particle_stack(ds, kept, seed, images, box_px)
    tp = int(table["true_positive"].sum())
    rec = reconstruct_particles(parts, rot, ds.pixel_size_A, ds.diameter_px, seed, tp, progress)
    log.info("%s: %d particles (%d TP), %.1f Å", ds.name, rec.n_particles, tp, rec.resolution_A)
    return rec
