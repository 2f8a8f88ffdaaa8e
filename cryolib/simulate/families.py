"""Procedural shape builders of the particle families in :data:`cryolib.simulate.structures.FAMILIES`.

One builder per family, ``_<family>(d, rng) -> (coords Å, weights V·Å³, sigma Å)``, collected in
:data:`BUILDERS`; :func:`cryolib.simulate.structures.make_structure` calls them, then centres and
sizes the result. Each family is filled with one pseudo-atom per residue volume (134.5 Å³) by
stratified sampling (one uniform point per cubic cell: no lattice peaks); shapes are implicit
functions with smooth random dents, symmetrised by folding points into one asymmetric unit of
their point group. The physical constants come from :mod:`cryolib.simulate.constants`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.spatial.transform import Rotation

from cryolib.simulate.constants import (
    DETERGENT_CORE_DELTA_V,
    DETERGENT_HEAD_DELTA_V,
    FAMILIES,
    PROTEIN_DELTA_V,
    RESIDUE_VOLUME_A3,
    RNA_DELTA_V,
)

__all__ = ["BUILDERS", "OCTAHEDRAL_GROUP", "ICOSAHEDRAL_GROUP"]


# ----------------------------------------------------------------------------- shape helpers
Points = np.ndarray  # (M, 3) Å
Inside = Callable[[Points], np.ndarray]


def _stratified_fill(inside: Inside, half_extent_A: float, rng: np.random.Generator) -> Points:
    """One uniformly placed point per residue-volume cell of a cube, kept where ``inside``."""
    a = RESIDUE_VOLUME_A3 ** (1.0 / 3.0)
    n = int(np.ceil(2.0 * half_extent_A / a)) + 1
    g = (np.arange(n) - (n - 1) / 2.0) * a
    cells = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    pts = cells + rng.uniform(-a / 2, a / 2, size=cells.shape)
    return pts[inside(pts)]


def _smooth_noise(rng: np.random.Generator, wavelength_A: float, n_waves: int = 16) -> Callable[[Points], np.ndarray]:
    """A random smooth field of about unit variance: a sum of plane waves of ~wavelength_A."""
    k = rng.normal(size=(n_waves, 3))
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    k *= (2 * np.pi / (wavelength_A * rng.uniform(0.7, 1.4, n_waves)))[:, None]
    phase = rng.uniform(0, 2 * np.pi, n_waves)
    return lambda p: np.sqrt(2.0 / n_waves) * np.cos(p @ k.T + phase).sum(axis=1)


def _group_closure(generators: list[np.ndarray]) -> np.ndarray:
    """All products of the generators: a finite rotation group (G, 3, 3), identity first."""
    group = [np.eye(3)]
    frontier = [np.eye(3)]
    while frontier:
        new = []
        for g in frontier:
            for h in generators:
                m = h @ g
                if not any(np.abs(m - q).max() < 1e-6 for q in group):
                    group.append(m)
                    new.append(m)
        frontier = new
    return np.stack(group)


def _axis_rot(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    ax = np.asarray(axis, dtype=float)
    return Rotation.from_rotvec(np.deg2rad(degrees) * ax / np.linalg.norm(ax)).as_matrix()


_PHI = (1 + 5**0.5) / 2
OCTAHEDRAL_GROUP = _group_closure([_axis_rot((0, 0, 1), 90), _axis_rot((1, 1, 1), 120)])  # 432, 24
ICOSAHEDRAL_GROUP = _group_closure([_axis_rot((0, 1, _PHI), 72), _axis_rot((1, 1, 1), 120)])  # 532, 60


def _cyclic_group(n: int) -> np.ndarray:
    return np.stack([_axis_rot((0, 0, 1), 360.0 * k / n) for k in range(n)])


def _fold(points: Points, group: np.ndarray, seed_dir: np.ndarray) -> tuple[Points, np.ndarray]:
    """Rotate each point into the asymmetric unit around ``seed_dir`` (Voronoi cell of its orbit).

    Returns the folded points and the angular distance (rad) to the nearest other cell.
    """
    orbit = group @ seed_dir  # (G, 3)
    unit = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-9)
    cos = np.clip(unit @ orbit.T, -1.0, 1.0)  # (M, G)
    order = np.argsort(-cos, axis=1)[:, :2]
    best = order[:, 0]
    folded = np.einsum("mji,mj->mi", group[best], points)  # g^T p
    rows = np.arange(len(points))
    margin = 0.5 * (np.arccos(cos[rows, order[:, 1]]) - np.arccos(cos[rows, best]))
    return folded, margin


def _symmetric(inside_unit: Inside, group: np.ndarray, seed_dir: np.ndarray, groove_A: float) -> Inside:
    """Apply a subunit shape in every asymmetric unit, with a groove between subunits."""

    def inside(p: Points) -> np.ndarray:
        folded, margin = _fold(p, group, seed_dir)
        return inside_unit(folded) & (margin * np.linalg.norm(p, axis=1) > groove_A / 2)

    return inside


def _dents(noise: np.ndarray) -> np.ndarray:
    """Inward-only roughness (≤ 0), so that the smooth envelope sets the diameter."""
    return np.minimum(noise, 0.0)


def _ellipsoid(p: Points, centre, semi_axes, rot: np.ndarray | None = None) -> np.ndarray:
    q = p - np.asarray(centre)
    if rot is not None:
        q = q @ rot
    return ((q / np.asarray(semi_axes)) ** 2).sum(axis=1)


# ----------------------------------------------------------------------------- families
Built = tuple[Points, np.ndarray, np.ndarray]  # coords, weights, sigma


def _atoms(rng: np.random.Generator, pts: Points, delta_V: float | np.ndarray, sigma: tuple[float, float]) -> Built:
    """Pseudo-atoms for filled points: weight = ΔV × cell volume × a ±25 % residue spread."""
    w = np.broadcast_to(np.asarray(delta_V, dtype=float), (len(pts),)) * RESIDUE_VOLUME_A3
    w = w * rng.uniform(0.75, 1.25, len(pts))
    return pts, w, rng.uniform(*sigma, len(pts))


def _protein(rng, inside: Inside, half: float) -> Built:
    return _atoms(rng, _stratified_fill(inside, half, rng), PROTEIN_DELTA_V, (1.5, 2.0))


def _globular(d: float, rng: np.random.Generator) -> Built:
    """A lumpy ellipsoid: a main body and 2-4 overlapping domains, random orientation."""
    rot = Rotation.random(random_state=rng).as_matrix()
    body = d / 2 * np.array([0.85, rng.uniform(0.6, 0.75), rng.uniform(0.5, 0.65)])
    doms = []
    for _ in range(rng.integers(2, 5)):
        u = rng.normal(size=3)
        doms.append((body * 0.5 * u / np.linalg.norm(u), d / 2 * rng.uniform(0.3, 0.45) * rng.uniform(0.75, 1, 3)))
    noise = _smooth_noise(rng, d / 4)

    def inside(p):
        f = _ellipsoid(p, (0, 0, 0), body, rot)
        for c, ax in doms:
            f = np.minimum(f, _ellipsoid(p, rot @ c, ax, rot))
        return f < 1 + 0.15 * _dents(noise(p))

    return _protein(rng, inside, 0.6 * d)


def _cage(d: float, rng: np.random.Generator, group: np.ndarray, inner: float) -> Inside:
    """Hollow shell between inner·d and d/2, tiled by ``len(group)`` rough subunits."""
    seed = rng.normal(size=3)
    noise = _smooth_noise(rng, 0.12 * d)

    def unit(p):
        r, n = np.linalg.norm(p, axis=1), noise(p)
        return (r > (inner + 0.02 * n) * d) & (r < (0.5 + 0.03 * _dents(n)) * d)

    return _symmetric(unit, group, seed / np.linalg.norm(seed), groove_A=3.0)


def _octahedral_cage(d: float, rng: np.random.Generator) -> Built:
    """Apoferritin-like: 24 subunits in 432 symmetry, shell 0.2 d thick, hollow."""
    return _protein(rng, _cage(d, rng, OCTAHEDRAL_GROUP, inner=0.3), 0.55 * d)


def _icosahedral_capsid(d: float, rng: np.random.Generator) -> Built:
    """MS2-like: 60 subunits in 532 symmetry, a thin shell (0.09 d) around sparse RNA."""
    shell = _protein(rng, _cage(d, rng, ICOSAHEDRAL_GROUP, inner=0.41), 0.55 * d)
    r_in = 0.41 * d - 4.0
    pts = _stratified_fill(lambda p: np.linalg.norm(p, axis=1) < r_in, r_in, rng)
    # ≈ 19 % RNA by volume (MS2: 3569 nt, 1.1 MDa, inside r ≈ 110 Å), denser under the shell
    keep = rng.random(len(pts)) < 0.08 + 0.18 * (np.linalg.norm(pts, axis=1) / r_in) ** 2
    rna = _atoms(rng, pts[keep], RNA_DELTA_V, (1.8, 2.4))
    return tuple(np.concatenate(parts) for parts in zip(shell, rna))


def _elongated_trimer(d: float, rng: np.random.Generator) -> Built:
    """HA-like: three subunits coiled about z, head 0.44 d wide, stalk 0.32 d.

    Length ≈ 0.9 × the diameter: the heavier head moves the centre of mass up.
    """
    twist = rng.uniform(0.5, 1.0)
    noise = _smooth_noise(rng, 0.15 * d)
    half = d / 2

    def inside(p):
        z = p[:, 2]
        head = 1 / (1 + np.exp(-(z - 0.1 * d) / (0.05 * d)))
        r_c, rho = (0.06 + 0.03 * head) * d, (0.1 + 0.03 * head) * d
        cap = np.clip(np.abs(z) - (half - rho), 0, None)
        rho = np.sqrt(np.clip(rho**2 - cap**2, 1e-6, None))  # rounded ends
        best = np.full(len(p), np.inf)
        for k in range(3):  # distance to each subunit's helical centreline, in its own frame
            ang = 2 * np.pi * k / 3
            q = p @ _axis_rot((0, 0, 1), np.rad2deg(ang))  # rotate back into subunit 0
            th = twist * z / d
            dist = np.hypot(q[:, 0] - r_c * np.cos(th), q[:, 1] - r_c * np.sin(th)) / rho
            best = np.minimum(best, dist - 0.15 * _dents(noise(q)))
        return (best < 1) & (np.abs(z) < half)

    return _protein(rng, inside, 0.55 * d)


def _membrane_channel(d: float, rng: np.random.Generator) -> Built:
    """C4 channel: TM belt + cytoplasmic domain, inside a detergent micelle (outer edge d/2)."""
    noise, mic_noise = _smooth_noise(rng, 0.12 * d), _smooth_noise(rng, 0.2 * d)
    cyto = rng.uniform(0.17, 0.21) * d

    def unit(p):
        rho, z = np.hypot(p[:, 0], p[:, 1]) + 0.02 * d * noise(p), p[:, 2]
        tm = (np.abs(z) < 0.14 * d) & (rho > 0.04 * d) & (rho < 0.22 * d)
        taper = cyto * (1 - 0.4 * np.clip((-z - 0.14 * d) / (0.28 * d), 0, 1))
        cy = (z <= -0.14 * d) & (z > -0.42 * d) & (rho > 0.03 * d) & (rho < taper)
        return tm | cy

    protein_in = _symmetric(unit, _cyclic_group(4), np.array([1.0, 0.0, 0.0]), groove_A=3.0)
    protein = _protein(rng, protein_in, 0.5 * d)

    def micelle(p):
        f = _ellipsoid(p, (0, 0, 0), (0.48 * d, 0.48 * d, 0.17 * d)) + 0.08 * mic_noise(p)
        core = np.hypot(p[:, 0], p[:, 1]) < 0.22 * d  # protein and pore: no detergent
        return (f < 1) & ~(core & (np.abs(p[:, 2]) < 0.14 * d))

    pts = _stratified_fill(micelle, 0.5 * d, rng)
    pts = pts[~protein_in(pts)]
    f = _ellipsoid(pts, (0, 0, 0), (0.48 * d, 0.48 * d, 0.17 * d))
    delta = np.where(f > 0.6, DETERGENT_HEAD_DELTA_V, DETERGENT_CORE_DELTA_V)  # outer rim = heads
    det = _atoms(rng, pts, delta, (2.5, 3.0))
    return tuple(np.concatenate(parts) for parts in zip(protein, det))


def _filament(d: float, rng: np.random.Generator) -> Built:
    """LetB-like tube along z: stacked C6 rings, length ≈ d, width 0.3 d, open lumen."""
    n_rings = 7  # LetB: seven stacked MCE rings
    pitch = 0.95 * d / n_rings
    ring_r = rng.uniform(0.9, 1.05, n_rings) * 0.15 * d
    ring_phase = rng.uniform(0, 60, n_rings)
    noise = _smooth_noise(rng, 0.1 * d)

    def inside(p):
        j = np.clip(np.floor(p[:, 2] / pitch + n_rings / 2), 0, n_rings - 1).astype(int)
        zl = p[:, 2] - (j + 0.5 - n_rings / 2) * pitch
        ang = np.rad2deg(np.arctan2(p[:, 1], p[:, 0])) - ring_phase[j]
        gap = np.abs(((ang + 30) % 60) - 30) * np.pi / 180 * np.hypot(p[:, 0], p[:, 1])  # C6 grooves
        rho = np.hypot(p[:, 0], p[:, 1])
        ring = (rho > 0.06 * d) & (rho < ring_r[j] + 0.02 * d * _dents(noise(p))) & (np.abs(zl) < 0.44 * pitch)
        return ring & (np.abs(p[:, 2]) < n_rings * pitch / 2) & (gap > 1.5)

    return _protein(rng, inside, 0.55 * d)


def _ribosome(d: float, rng: np.random.Generator) -> Built:
    """Two subunits (large ≈ 2/3, small ≈ 1/3 of the mass) with stalks; ~60 % rRNA by volume."""
    noise, comp = _smooth_noise(rng, 0.15 * d), _smooth_noise(rng, 0.08 * d)
    tilt = _axis_rot((0, 0, 1), rng.uniform(-15, 15))
    lumps = [((0, 0.05, 0.38), 0.1), ((0.38, -0.1, 0.15), 0.08), ((-0.4, -0.05, 0.1), 0.07)]

    def inside(p):
        f_l = _ellipsoid(p, (0, 0, 0.1 * d), (0.42 * d, 0.38 * d, 0.3 * d))
        for c, r in lumps:
            f_l = np.minimum(f_l, _ellipsoid(p, np.array(c) * d, (r * d,) * 3))
        f_s = _ellipsoid(p, (0.03 * d, 0, -0.22 * d), (0.4 * d, 0.25 * d, 0.17 * d), tilt)
        n = 0.12 * _dents(noise(p))
        return ((f_l < 1 + n) & (p[:, 2] > -0.07 * d)) | ((f_s < 1 + n) & (p[:, 2] < -0.09 * d))

    pts = _stratified_fill(inside, 0.6 * d, rng)
    c = comp(pts)
    is_rna = c > np.quantile(c, 0.4)
    return _atoms(rng, pts, np.where(is_rna, RNA_DELTA_V, PROTEIN_DELTA_V), (1.5, 2.2))


#: The shape builder of each family: ``builder(diameter_A, rng) -> (coords, weights, sigma)``.
BUILDERS: dict[str, Callable[[float, np.random.Generator], Built]] = {
    "globular": _globular,
    "octahedral_cage": _octahedral_cage,
    "icosahedral_capsid": _icosahedral_capsid,
    "elongated_trimer": _elongated_trimer,
    "membrane_channel": _membrane_channel,
    "filament": _filament,
    "ribosome": _ribosome,
}
assert tuple(BUILDERS) == FAMILIES, "one builder per family, in FAMILIES' order"
