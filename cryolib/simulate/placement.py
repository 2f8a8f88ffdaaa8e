"""Particle positions in the field of view: non-overlapping, optionally aggregated placement (x, y px)."""

from __future__ import annotations

import logging

import numpy as np

from cryolib.core.errors import CryolibError

__all__ = ["place_particles"]

log = logging.getLogger(__name__)


def check_shape(shape: tuple[int, int]) -> None:
    """Raise :class:`CryolibError` unless ``shape`` is (H, W) with H, W ≥ 1."""
    if len(shape) != 2 or min(shape) < 1:
        raise CryolibError(f"shape must be (H, W) with H, W ≥ 1, got {shape}")


class _SpacingGrid:
    """Points on a grid of cells of side ``dmin``: O(1) test for a neighbour closer than ``dmin``."""

    def __init__(self, dmin: float) -> None:
        self.dmin = dmin
        self.points: list[np.ndarray] = []
        self.cells: dict[tuple[int, int], list[int]] = {}

    def _cell(self, p: np.ndarray) -> tuple[int, int]:
        return int(p[0] // self.dmin), int(p[1] // self.dmin)

    def fits(self, p: np.ndarray) -> bool:
        gx, gy = self._cell(p)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for j in self.cells.get((gx + dx, gy + dy), ()):
                    q = self.points[j]
                    if (q[0] - p[0]) ** 2 + (q[1] - p[1]) ** 2 < self.dmin**2:
                        return False
        return True

    def add(self, p: np.ndarray) -> None:
        self.cells.setdefault(self._cell(p), []).append(len(self.points))
        self.points.append(p)


def place_particles(
    shape: tuple[int, int],
    n: int,
    diameter_px: float,
    rng: np.random.Generator,
    aggregation: float = 0.0,
    min_separation: float = 0.8,
    forbidden_mask: np.ndarray | None = None,
    margin_px: float = 0.0,
    max_attempts_per_particle: int = 60,
) -> np.ndarray:
    """Up to ``n`` particle centres ``(n_placed, 2)`` as (x, y) px, no two closer than ``min_separation·d``.

    Sequential random placement with a cell grid for neighbour look-ups. With probability
    ``aggregation`` a candidate is proposed next to an already placed particle (at 1–1.5× the
    minimum distance), which grows clumps and chains (a cluster process); otherwise uniformly.
    Candidates whose centre falls in ``forbidden_mask`` (carbon, contaminants; dilate it by the
    radius beforehand to keep whole particles off it) are rejected. Centres lie at least
    ``margin_px`` inside the border (0: anywhere in the image, so edge particles are cut).
    Stops early (with a log message) when the field is too crowded.
    """
    check_shape(shape)
    if diameter_px <= 0 or min_separation < 0 or margin_px < 0 or not 0.0 <= aggregation <= 1.0:
        raise CryolibError(
            "place_particles: need diameter_px > 0, min_separation ≥ 0, margin_px ≥ 0 and aggregation in [0, 1]; "
            f"got {diameter_px}, {min_separation}, {margin_px}, {aggregation}"
        )
    if forbidden_mask is not None and forbidden_mask.shape != tuple(shape):
        raise CryolibError(f"forbidden_mask shape {forbidden_mask.shape} != field shape {tuple(shape)}")
    h, w = shape
    lo = np.array([margin_px, margin_px], dtype=np.float64)
    hi = np.array([w - 1 - margin_px, h - 1 - margin_px], dtype=np.float64)
    if n <= 0 or np.any(hi < lo):
        return np.zeros((0, 2), dtype=np.float64)
    dmin = max(min_separation * diameter_px, 1e-6)
    grid = _SpacingGrid(dmin)
    placed = grid.points
    budget = max_attempts_per_particle * n
    batch_u = rng.uniform(lo, hi, size=(budget, 2))
    batch_r = rng.random((budget, 4))
    for i in range(budget):
        if len(placed) >= n:
            break
        cand = batch_u[i]
        if placed and batch_r[i, 0] < aggregation:  # a child next to a random placed particle
            ang, dist = 2 * np.pi * batch_r[i, 2], dmin * (1.0 + 0.5 * batch_r[i, 3])
            cand = placed[int(batch_r[i, 1] * len(placed))] + dist * np.array([np.cos(ang), np.sin(ang)])
            if np.any(cand < lo) or np.any(cand > hi):
                continue
        if forbidden_mask is not None and forbidden_mask[int(round(cand[1])), int(round(cand[0]))]:
            continue
        if grid.fits(cand):
            grid.add(cand)
    if len(placed) < n:
        log.info("placed %d of %d particles (field too crowded or too much forbidden area)", len(placed), n)
    return np.array(placed, dtype=np.float64).reshape(-1, 2)
