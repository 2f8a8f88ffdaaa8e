"""Post-processing of the Cryo-EMMAE particle mask into picks (paper §3.3).

The token mask from :func:`cryolib.pick.cluster.sequential_clustering` is smoothed and resized
to the post-processing grid (:func:`smooth_and_resize`), thresholded so that it covers the
particle fraction of the training micrographs (:func:`choose_threshold`,
:func:`training_particle_fraction`), and its components become picks after the neighbour,
edge and size filters (:func:`postprocess`). :mod:`cryolib.pick.cluster` re-exports these.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage

from cryolib.processing import preprocess as pp
from cryolib.core.errors import CryolibError

log = logging.getLogger(__name__)

__all__ = ["smooth_and_resize", "choose_threshold", "postprocess", "training_particle_fraction"]


def smooth_and_resize(mask: np.ndarray, token_px: int, post_scale: float = 0.5) -> tuple[np.ndarray, tuple[float, float]]:
    """3 x 3 ones convolution (zero padding) / its max, then bilinear resize to the post-processing grid.

    The grid has ``post_scale`` px per working px (the paper's 512 px of a 1024 px image: 0.5, i.e.
    2 px per 4 px token). Returns the map in [0, 1] and (fx, fy): post px per token.
    """
    m = cv2.filter2D(np.asarray(mask, np.float32), -1, np.ones((3, 3), np.float32), borderType=cv2.BORDER_CONSTANT)
    if m.max() > 0:
        m /= m.max()
    h, w = m.shape
    out_h, out_w = max(1, round(h * token_px * post_scale)), max(1, round(w * token_px * post_scale))
    smap = np.clip(cv2.resize(m, (out_w, out_h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    return smap, (out_w / w, out_h / h)


def choose_threshold(smap: np.ndarray, particle_fraction: float = 0.04, n: int = 30) -> float:
    """Highest c of round(linspace(1, 0, n), 2) whose mask ``smap > c`` covers > ``particle_fraction``.

    Paper §3.3: particles cover ~4% of a training micrograph. If no c reaches it (a nearly empty
    map) the last, 0, is used; the repository returns no picks then.
    """
    for c in np.round(np.linspace(1.0, 0.0, n), 2):
        if (smap > c).mean() > particle_fraction:
            return float(c)
    return 0.0


def _neighbour_keep(yx: np.ndarray, areas: np.ndarray, min_dist: float) -> np.ndarray:
    """Repository rule: a centre survives only if its area is strictly the largest within ``min_dist``."""
    keep = np.ones(len(yx), bool)
    if len(yx) < 2:
        return keep
    d = np.hypot(*(yx[:, None, :] - yx[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    for i in range(len(yx)):
        near = d[i] < min_dist
        keep[i] = not near.any() or bool((areas[i] > areas[near]).all())
    return keep


def postprocess(mask: np.ndarray, diameter_px_working: float, token_px: int, post_scale: float = 0.5,
                particle_fraction: float = 0.04, size_filter_factor: float | None = 3.0, edge_frac: float = 1 / 1.5,
                neighbour_frac: float = 0.5, return_maps: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, dict]:
    """Particle mask [h, w] (tokens) -> picks DataFrame[x, y, score, area] in working px (paper §3.3).

    Smooth and resize (:func:`smooth_and_resize`), threshold (:func:`choose_threshold`), label
    4-connected components, centre = centroid weighted by the smoothed map. Filters, in the
    paper's order, at the post-processing scale (d_post = d * post_scale): (i) neighbours closer
    than ``neighbour_frac`` * d_post: the strictly largest component survives, a tie removes both
    (repository); (ii) centres within ``edge_frac`` * d_post of a border (repository d / 1.5);
    (iii) components larger than ``size_filter_factor`` * pi d_post^2 / 4 (paper; 3 keeps touching
    pairs but drops aggregates and carbon edges; ``None`` = off, as in the repository).
    score = min(r, 1/r), r = (sum of the smoothed map over the component) / (pi d_post^2 / 4):
    1 for a component of one particle's area, lower for specks and oversized blobs.
    ``area`` is in working px^2. ``return_maps`` adds {"smoothed", "threshold", "labels"}.
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise CryolibError(f"particle mask must be 2-D (h, w) tokens; got shape {mask.shape}")
    pp.check_diameter(diameter_px_working)
    smap, (fx, fy) = smooth_and_resize(mask, token_px, post_scale)
    thr = choose_threshold(smap, particle_fraction)
    labels, n = ndimage.label(smap > thr)
    idx = np.arange(1, n + 1)
    yx = np.array(ndimage.center_of_mass(smap, labels, idx)).reshape(-1, 2)  # post px (row, col)
    areas = np.asarray(ndimage.sum_labels(np.ones_like(smap), labels, idx), float)
    mass = np.asarray(ndimage.sum_labels(smap, labels, idx), float)
    d_post = diameter_px_working * np.sqrt(fx * fy) / token_px
    disk = np.pi * d_post**2 / 4
    keep = _neighbour_keep(yx, areas, neighbour_frac * d_post)
    e = edge_frac * d_post
    keep &= (yx[:, 0] >= e) & (yx[:, 0] <= smap.shape[0] - e) & (yx[:, 1] >= e) & (yx[:, 1] <= smap.shape[1] - e)
    if size_filter_factor is not None:
        keep &= areas <= size_filter_factor * disk
    yx, areas, r = yx[keep], areas[keep], mass[keep] / disk
    # post px -> token coordinates -> working px (pixel-centre convention throughout)
    x = ((yx[:, 1] + 0.5) / fx) * token_px - 0.5
    y = ((yx[:, 0] + 0.5) / fy) * token_px - 0.5
    score = np.minimum(r, 1.0 / np.maximum(r, 1e-12))
    picks = pd.DataFrame({"x": x, "y": y, "score": score, "area": areas * token_px**2 / (fx * fy)})
    log.debug("postprocess: threshold %.2f, %d components, %d kept", thr, n, len(picks))
    return (picks, {"smoothed": smap, "threshold": thr, "labels": labels}) if return_maps else picks


def training_particle_fraction(coords_by_mic: Mapping[str, pd.DataFrame] | Sequence[pd.DataFrame],
                               shapes: Mapping[str, tuple[int, int]] | Sequence[tuple[int, int]],
                               diameter: float | None = None) -> float:
    """Mean fraction of a micrograph covered by its particles: n * pi d^2 / 4 / (H W) (paper §3.3's ~4%).

    ``coords_by_mic``: ground-truth picks per training micrograph; ``shapes``: their (H, W) in
    the same px; ``diameter`` (px) defaults to each table's ``diameter`` column. Overlaps and
    border clipping are ignored; each micrograph's fraction is capped at 1.
    """
    keys = list(coords_by_mic) if isinstance(coords_by_mic, Mapping) else range(len(coords_by_mic))
    if len(keys) == 0:
        raise CryolibError("training_particle_fraction needs at least one annotated micrograph")
    fractions = []
    for key in keys:
        df, (h, w) = coords_by_mic[key], shapes[key]
        if diameter is not None:
            d = np.full(len(df), pp.check_diameter(diameter))
        elif "diameter" in df.columns:
            d = df["diameter"].to_numpy(float)
        else:
            raise CryolibError(f"micrograph {key!r}: pass diameter= or give the coordinates a 'diameter' column")
        fractions.append(min(1.0, float(np.sum(np.pi * d**2 / 4)) / (h * w)))
    return float(np.mean(fractions))
