"""Poses for picked particles, from the simulator's ground truth (DRACO Table 1's resolution column, Table 3).

No refinement runs here: a simulation knows every particle's orientation, so each pick is matched to the
ground truth with the picking rule (``overlap60``, :func:`cryolib.evaluate.metrics.match_picks`) and

* a **true positive** takes its particle's pose and its particle's true centre (as a refinement that
  converged would: the picking error in x, y is corrected, not kept);
* a **false positive** takes a random orientation, uniform on SO(3) and seeded, at its own position
  (rounded to whole pixels): it adds the ice, contaminant or neighbour it sits on, in a random
  direction, so bad picks degrade the map as they would in a real refinement.

Poses are RELION Euler angles (rot, tilt, psi, degrees) as in ``ground_truth/particle_poses/<stem>.csv``;
:func:`cryolib.simulate.potential.euler_zyz_to_rotation` turns them into the simulator's matrices.
The particle-count cap (:func:`select_picks`) keeps the highest-scoring picks, so methods are compared
at the same number of particles.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from cryolib.core.errors import CryolibError
from cryolib.core.reproducibility import child_rng
from cryolib.evaluate.metrics import match_picks
from cryolib.io.datasets import Dataset
from cryolib.simulate.potential import random_rotations, rotation_to_euler_zyz

__all__ = ["EULER_COLUMNS", "POSE_COLUMNS", "ground_truth_poses", "ground_truth_picks", "assign_poses",
           "select_picks", "random_picks", "mix_false_positives"]

EULER_COLUMNS = ("rot_deg", "tilt_deg", "psi_deg")
POSE_COLUMNS = ("x", "y", *EULER_COLUMNS, "true_positive", "score")


def ground_truth_poses(ds: Dataset, stem: str) -> pd.DataFrame:
    """``ground_truth/particle_poses/<stem>.csv``: x, y (px), diameter_px, rot/tilt/psi (degrees)."""
    path = ds.root / "ground_truth" / "particle_poses" / f"{stem}.csv"
    if not path.is_file():
        raise CryolibError(f"{path} not found: poses exist only for simulated datasets (rebuild with notebook 01)")
    df = pd.read_csv(path)
    missing = [c for c in ("x", "y", *EULER_COLUMNS) if c not in df.columns]
    if missing:
        raise CryolibError(f"{path} lacks the columns {missing}; it is not a particle_poses file")
    return df


def ground_truth_picks(ds: Dataset, stems: list[str]) -> dict[str, pd.DataFrame]:
    """Perfect picks: every true particle of ``stems`` (x, y, score 1)."""
    return {s: ground_truth_poses(ds, s)[["x", "y"]].assign(score=1.0) for s in stems}


def _check_picks(picks: pd.DataFrame, what: str) -> pd.DataFrame:
    if not isinstance(picks, pd.DataFrame) or (len(picks) and not {"x", "y"} <= set(picks.columns)):
        raise CryolibError(f"{what}: picks must be a DataFrame with columns x, y (px) and optionally score")
    if len(picks) and not np.isfinite(picks[["x", "y"]].to_numpy(float)).all():
        raise CryolibError(f"{what}: picks hold NaN/Inf coordinates")
    return picks


def assign_poses(picks: pd.DataFrame, truth: pd.DataFrame, diameter_px: float, rng: np.random.Generator,
                 rule: str = "overlap60") -> pd.DataFrame:
    """One row per pick (in pick order): x, y (px; the true centre for a TP, the rounded pick for an FP),
    rot/tilt/psi (degrees), true_positive, score (the pick's, NaN when it has none). See the module
    docstring for the rule."""
    picks = _check_picks(picks, "assign_poses")
    n = len(picks)
    if n == 0:
        return pd.DataFrame({c: pd.Series(dtype=bool if c == "true_positive" else float) for c in POSE_COLUMNS})
    res = match_picks(picks, truth, diameter_px, rule)
    xy = np.rint(picks[["x", "y"]].to_numpy(float))
    euler = rotation_to_euler_zyz(random_rotations(n, rng))
    tp = np.zeros(n, bool)
    tp[res.pred_idx] = True
    if len(res.pred_idx):
        t = truth.iloc[res.gt_idx]
        xy[res.pred_idx] = t[["x", "y"]].to_numpy(float)
        euler[res.pred_idx] = t[list(EULER_COLUMNS)].to_numpy(float)
    score = picks["score"].to_numpy(float) if "score" in picks else np.full(n, np.nan)
    return pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "rot_deg": euler[:, 0], "tilt_deg": euler[:, 1],
                         "psi_deg": euler[:, 2], "true_positive": tp, "score": score})


def select_picks(picks: Mapping[str, pd.DataFrame], max_particles: int | None, seed: int) -> dict[str, pd.DataFrame]:
    """At most ``max_particles`` picks over all micrographs: the highest scores (no ``score`` column: all
    equal), ties broken by a seeded random order. ``None`` keeps every pick. Order within a micrograph kept."""
    frames = []
    for stem, df in picks.items():
        df = _check_picks(df, f"picks of {stem}")
        if len(df):
            s = df["score"].to_numpy(float) if "score" in df else np.zeros(len(df))
            frames.append(pd.DataFrame({"stem": stem, "row": np.arange(len(df)), "score": np.nan_to_num(s, nan=-np.inf)}))
    if max_particles is not None and int(max_particles) < 1:
        raise CryolibError(f"max_particles={max_particles}: the cap must be at least 1 particle")
    if not frames:
        return {stem: df for stem, df in picks.items()}
    every = pd.concat(frames, ignore_index=True)
    if max_particles is not None and len(every) > int(max_particles):
        every["tie"] = child_rng(seed, "select_picks").permutation(len(every))
        every = every.sort_values(["score", "tie"], ascending=[False, True]).head(int(max_particles))
    keep = every.groupby("stem")["row"].apply(lambda r: np.sort(r.to_numpy()))
    return {stem: df.iloc[keep[stem]] if stem in keep.index else df.iloc[:0] for stem, df in picks.items()}


def random_picks(shapes: Mapping[str, tuple[int, int]], n_per_micrograph: int | Mapping[str, int], seed: int,
                 margin_px: int = 0) -> dict[str, pd.DataFrame]:
    """Uniformly random pick positions (x, y in px, score uniform in [0, 1)) per micrograph ``(H, W)``,
    at least ``margin_px`` from the edges: the 'random picks' control."""
    out = {}
    for stem, (h, w) in shapes.items():
        n = int(n_per_micrograph[stem] if isinstance(n_per_micrograph, Mapping) else n_per_micrograph)
        rng = child_rng(seed, "random_picks", stem)
        x = rng.uniform(margin_px, w - 1 - margin_px, n)
        y = rng.uniform(margin_px, h - 1 - margin_px, n)
        out[stem] = pd.DataFrame({"x": np.rint(x), "y": np.rint(y), "score": rng.random(n)})
    return out


def mix_false_positives(truth: Mapping[str, pd.DataFrame], fraction: float, shapes: Mapping[str, tuple[int, int]],
                        diameter_px: float, seed: int) -> dict[str, pd.DataFrame]:
    """Ground-truth picks with ``fraction`` of them (per micrograph, rounded) replaced by positions at least
    one diameter from every true particle: certain false positives, at the same count."""
    if not 0.0 <= fraction <= 1.0:
        raise CryolibError(f"fraction={fraction}: the false-positive fraction must lie in [0, 1]")
    out = {}
    for stem, df in truth.items():
        rng = child_rng(seed, "mix_false_positives", stem)
        n = len(df)
        n_fp = int(round(fraction * n))
        keep = np.sort(rng.permutation(n)[: n - n_fp])
        h, w = shapes[stem]
        true_xy = df[["x", "y"]].to_numpy(float)
        fps: list[tuple[float, float]] = []
        for _ in range(200 * max(n_fp, 1)):
            if len(fps) == n_fp:
                break
            p = np.rint(rng.uniform([0, 0], [w - 1, h - 1]))
            if len(true_xy) == 0 or np.abs(true_xy - p).max(axis=1).min() >= diameter_px:
                fps.append((p[0], p[1]))
        if len(fps) < n_fp:
            raise CryolibError(f"{stem}: no room for {n_fp} false positives a diameter away from every particle")
        fp = pd.DataFrame(fps, columns=["x", "y"], dtype=float)
        out[stem] = pd.concat([df.iloc[keep][["x", "y"]], fp], ignore_index=True).assign(score=1.0)
    return out
