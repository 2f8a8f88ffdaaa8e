"""Cryo-ET tilt series of a small specimen: particles in an ice slab, single-axis tilts, dose split, CTF, shot noise.

The simulated stand-in for the HIV tilt series of DRACO 2024 Appendix B (Figure 8): capsid-like
particles (``icosahedral_capsid`` by default, standing in for HIV virus-like particles) at random
positions and orientations in a vitreous-ice slab, imaged over ±60°.

Geometry (the conventions of :mod:`cryolib.simulate.potential`)
---------------------------------------------------------------
* The specimen frame has x (columns), y (rows) and z (the beam at 0°), in Å from the centre of the
  field and of the ice slab. Volumes are ``(Z, Y, X)`` indexed ``[z, y, x]``; voxel ``i`` of an axis of
  length N is centred at ``(i − N//2) × pixel_size_A``. Tilts are ``(H, W) = (Y, X)`` images with the
  same rule, so the tilt axis is image column ``W // 2``.
* Single-axis tilt about +y: tilt θ is the right-handed active rotation
  ``T(θ) = [[cos θ, 0, sin θ], [0, 1, 0], [−sin θ, 0, cos θ]]`` and, as for particles, a specimen
  point p lands at image position ``(T p)_xy``: ``x' = x cos θ + z sin θ``, ``y' = y``. In RELION's
  Euler angles ``T(θ) = A(rot=0, tilt=−θ, psi=0)`` (:func:`tilt_rotation_matrices`).
* Particle i (structure S_i, orientation R_i from :func:`potential.random_rotations`, centre c_i):
  its atom a sits at ``c_i + R_i a``.

Image formation of each tilt
----------------------------
1. Projected potential (V·Å): exact line integrals of the Gaussian pseudo-atoms, each integrated over
   its pixel (products of 1-D erf differences, as :func:`potential.structure_to_volume` integrates them
   over voxels), so the 0° tilt equals ``volume.sum(z) × pixel_size_A``. Rendered on a canvas padded by
   ``size_px // 8`` per side, so the CTF's delocalisation does not wrap around, then cropped.
2. Phase φ = σ_e·V_proj (mean removed); contrast = −2·IFFT[FFT(φ)·CTF·E_B·D·MTF]
   (:func:`optics.apply_transfer`), with one defocus for the whole series and
   ``D(k) = exp(−(N_prior + N_tilt/2) / 2Ne(k))`` the radiation damage at the tilt's mid-exposure
   (Grant & Grigorieff 2015, :func:`cryolib.processing.motion.critical_exposure`).
3. Intensity = exp(−t / (λ_in cos θ)) × (1 + contrast): zero-loss transmission through the slab's
   path length t / cos θ (:func:`sample.transmission`), clipped ≥ 0.
4. Expected e⁻/px = dose per tilt (e⁻/Å²) × pixel area (Å²) × intensity (``clean``); the recorded tilt
   is a Poisson draw of it (``tilts``).

Dose: the total dose (default 100 e⁻/Å², the usual budget of a tilt series) is split evenly over the
tilts. The tilts are acquired in Hagen's dose-symmetric order (Hagen et al. 2017: 0°, then groups of
``dose_symmetric_group`` tilts alternating between the + and − sides); the order only sets the dose
each tilt has already received, hence its radiation damage.

Not modelled: the ice's own structural noise (the slab only absorbs), the defocus gradient across a
tilted field, tilt-axis and alignment errors, beam-induced motion and multiple scattering.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from scipy.spatial.transform import Rotation
from tqdm.auto import tqdm

from cryolib.core.errors import CryolibError
from cryolib.processing.motion import critical_exposure
from cryolib.simulate.optics import apply_transfer, ctf_2d, detector_mtf, interaction_constant
from cryolib.simulate.potential import _axis_weights, random_rotations, structure_to_volume
from cryolib.simulate.sample import ICE_MEAN_FREE_PATH_NM, transmission
from cryolib.simulate.structures import FAMILIES, Structure, make_structure

__all__ = ["TiltSeriesConfig", "TILT_SERIES_PROFILES", "tilt_series_config", "tilt_angles", "dose_symmetric_order",
           "tilt_rotation_matrices", "Specimen", "make_specimen", "project_atoms", "specimen_volume", "TiltSeries",
           "simulate_tilt_series"]

log = logging.getLogger(__name__)

_CHUNK_ELEMENTS = 4_000_000  # atoms × neighbourhood pixels per scatter (memory cap)


@dataclass(frozen=True)
class TiltSeriesConfig:
    """Specimen, tilt scheme and microscope of one simulated tilt series (per profile: :data:`TILT_SERIES_PROFILES`)."""

    size_px: int = 256  # side of the square tilt images (px); the tomogram's Y and X
    depth_px: int = 128  # Z of the ground-truth volume and of the tomograms (px)
    pixel_size_A: float = 5.0  # Å/px of tilts and voxels
    tilt_max_deg: float = 60.0  # tilts from −max to +max
    tilt_step_deg: float = 3.0
    dose_e_per_A2: float = 100.0  # total over the series, split evenly
    dose_symmetric_group: int = 2  # tilts per side before switching (Hagen scheme)
    defocus_um: float = 4.0  # underfocus (µm), the same at every tilt
    voltage_kV: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    b_factor_A2: float = 100.0  # envelope exp(−B k²/4) (Å²)
    detector: str = "counting"  # detector MTF kind
    radiation_damage: bool = True
    ice_thickness_A: float = 500.0  # slab thickness at 0° (Å)
    family: str = "icosahedral_capsid"  # stands in for HIV virus-like particles
    diameter_A: tuple[float, float] = (300.0, 400.0)  # particle diameters drawn uniformly (Å)
    n_particles: int = 8  # asked for; fewer when they do not fit without overlap (logged)
    n_shapes: int = 3  # distinct particle models, reused at random orientations
    min_gap_A: float = 20.0  # closest approach of two particle surfaces (Å)

    def __post_init__(self) -> None:
        if int(self.size_px) < 16 or int(self.depth_px) < 4:
            raise CryolibError(f"size_px must be ≥ 16 and depth_px ≥ 4, got {self.size_px}, {self.depth_px}")
        if not self.pixel_size_A > 0 or not self.dose_e_per_A2 > 0 or not self.defocus_um > 0:
            raise CryolibError("pixel_size_A, dose_e_per_A2 and defocus_um (underfocus) must be > 0")
        if not (0 <= self.tilt_max_deg < 90 and self.tilt_step_deg > 0):
            raise CryolibError(f"tilt_max_deg must be in [0, 90) and tilt_step_deg > 0, got {self.tilt_max_deg}, "
                               f"{self.tilt_step_deg}")
        lo, hi = self.diameter_A
        if not 0 < lo <= hi or self.n_particles < 0 or self.n_shapes < 1 or self.dose_symmetric_group < 1:
            raise CryolibError("need 0 < diameter lo ≤ hi, n_particles ≥ 0, n_shapes ≥ 1, "
                               "dose_symmetric_group ≥ 1")
        if self.family not in FAMILIES:
            raise CryolibError(f"unknown structure family {self.family!r}; choose one of {', '.join(FAMILIES)}")
        if self.n_particles and not hi + 2 * self.min_gap_A <= self.ice_thickness_A:
            raise CryolibError(f"ice_thickness_A={self.ice_thickness_A:g} Å cannot hold {hi:g} Å particles; "
                               "make the ice thicker or the particles smaller")
        if self.ice_thickness_A > self.depth_px * self.pixel_size_A or hi >= self.size_px * self.pixel_size_A:
            raise CryolibError(f"the volume ({self.depth_px} × {self.size_px}² px at {self.pixel_size_A:g} Å) "
                               "must hold "
                               f"the {self.ice_thickness_A:g} Å slab and {hi:g} Å particles")


#: Sizes per profile: smoke (seconds), default (simulation + WBP + DRACO on every tilt in < 3 min on 2 cores), full.
TILT_SERIES_PROFILES: dict[str, TiltSeriesConfig] = {
    "smoke": TiltSeriesConfig(size_px=64, depth_px=32, pixel_size_A=10.0, tilt_step_deg=6.0, ice_thickness_A=300.0,
                              diameter_A=(200.0, 250.0), n_particles=3, n_shapes=1),
    "default": TiltSeriesConfig(),
    "full": TiltSeriesConfig(size_px=512, depth_px=192, ice_thickness_A=700.0, diameter_A=(300.0, 500.0),
                             n_particles=30, n_shapes=6),
}


def tilt_series_config(profile: str, **changes) -> TiltSeriesConfig:
    """The profile's :class:`TiltSeriesConfig`, with ``changes`` applied (``dataclasses.replace``)."""
    if profile not in TILT_SERIES_PROFILES:
        raise CryolibError(f"unknown profile {profile!r}; choose one of {', '.join(TILT_SERIES_PROFILES)}")
    return replace(TILT_SERIES_PROFILES[profile], **changes)


def tilt_angles(max_deg: float, step_deg: float) -> np.ndarray:
    """Tilt angles (degrees), ascending and symmetric: ``step × (−n … n)`` with ``n = ⌊max/step⌋``."""
    if not (0 <= max_deg <= 90 and step_deg > 0):
        raise CryolibError(f"tilt range ±{max_deg}° with step {step_deg}°: need 0 ≤ max ≤ 90 and step > 0")
    n = int(math.floor(max_deg / step_deg + 1e-9))
    return step_deg * np.arange(-n, n + 1, dtype=np.float64)


def dose_symmetric_order(angles_deg: np.ndarray, group: int = 2) -> np.ndarray:
    """Acquisition position of each tilt (0 = first) in Hagen's dose-symmetric scheme.

    The tilt nearest 0° first, then ``group`` tilts on the + side (increasing |θ|), ``group`` on the
    − side, and so on; a side that runs out is skipped.
    """
    angles = np.asarray(angles_deg, dtype=np.float64)
    start = int(np.argmin(np.abs(angles)))
    plus = [i for i in np.argsort(angles) if angles[i] > angles[start]]
    minus = [i for i in np.argsort(-angles) if angles[i] < angles[start]]
    sequence = [start]
    while plus or minus:
        sequence += plus[:group] + minus[:group]
        plus, minus = plus[group:], minus[group:]
    order = np.empty(len(angles), dtype=np.int64)
    order[np.asarray(sequence, dtype=np.int64)] = np.arange(len(angles))
    return order


def tilt_rotation_matrices(angles_deg: np.ndarray) -> np.ndarray:
    """``(n, 3, 3)`` rotations T(θ) about +y (module docstring); angles in degrees within ±90°."""
    angles = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
    if not np.isfinite(angles).all() or (np.abs(angles) > 90.0).any():
        raise CryolibError(f"tilt angles must be finite and within ±90°, got {angles.min(initial=0):g} … "
                           f"{angles.max(initial=0):g}")
    return Rotation.from_euler("y", angles[:, None], degrees=True).as_matrix().reshape(-1, 3, 3)


@dataclass(frozen=True)
class Specimen:
    """Every pseudo-atom of the slab in the specimen frame (Å), and one row per particle."""

    coords_A: np.ndarray  # (N, 3) x, y, z (Å) from the centre of field and slab
    weights_VA3: np.ndarray  # (N,) net integrated potential relative to ice (V·Å³)
    sigma_A: np.ndarray  # (N,) Gaussian standard deviation (Å)
    particles: pd.DataFrame  # x_A, y_A, z_A (centre), diameter_A, shape (index of its model)


def _place_in_slab(radii_A: np.ndarray, field_A: float, thickness_A: float, gap_A: float,
                   rng: np.random.Generator, tries: int = 2000) -> np.ndarray:
    """Non-overlapping centres ``(n, 3)`` (Å; NaN where a particle did not fit), largest particles first."""
    centres = np.full((len(radii_A), 3), np.nan)
    for i in np.argsort(-radii_A, kind="stable"):
        r = radii_A[i]
        half = np.array([field_A / 2 - r - gap_A, field_A / 2 - r - gap_A, thickness_A / 2 - r - gap_A / 2])
        placed = ~np.isnan(centres[:, 0])
        for _ in range(tries):
            c = rng.uniform(-1.0, 1.0, 3) * np.clip(half, 0.0, None)
            if not placed.any() or (np.linalg.norm(centres[placed] - c, axis=1) >= radii_A[placed] + r + gap_A).all():
                centres[i] = c
                break
    return centres


def make_specimen(config: TiltSeriesConfig, rng: np.random.Generator) -> Specimen:
    """``config.n_particles`` particles of ``config.family`` (``n_shapes`` models), without overlap in the slab."""
    models = [make_structure(config.family, float(d), rng) for d in rng.uniform(*config.diameter_A, config.n_shapes)]
    which = rng.integers(0, len(models), config.n_particles)
    radii = np.array([models[m].diameter_A / 2 for m in which])
    centres = _place_in_slab(radii, config.size_px * config.pixel_size_A, config.ice_thickness_A, config.min_gap_A, rng)
    keep = ~np.isnan(centres[:, 0])
    if not keep.all():
        log.warning("%d of %d particles did not fit in the slab without overlap", int((~keep).sum()), len(keep))
    rotations = random_rotations(int(keep.sum()), rng)
    parts = [(models[m], c, R) for m, c, R in zip(which[keep], centres[keep], rotations)]
    coords = [c + s.coords_A @ R.T for s, c, R in parts]
    table = pd.DataFrame({"x_A": centres[keep, 0], "y_A": centres[keep, 1], "z_A": centres[keep, 2],
                          "diameter_A": 2 * radii[keep], "shape": which[keep]})
    return Specimen(
        coords_A=np.concatenate(coords) if coords else np.zeros((0, 3)),
        weights_VA3=np.concatenate([s.weights_VA3 for s, _, _ in parts]) if parts else np.zeros(0),
        sigma_A=np.concatenate([s.sigma_A for s, _, _ in parts]) if parts else np.zeros(0),
        particles=table,
    )


def _axis_terms(u: torch.Tensor, s: torch.Tensor, k: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel indices ``(m, 2k+1)`` (clamped) and exact pixel integrals of unit Gaussians at ``u`` (px) along one
    axis, zero outside ``[0, size)`` (:func:`potential._axis_weights`)."""
    first, w = _axis_weights(u[:, None], s, k)  # (m, 1), (m, 1, 2k+1)
    idx = first[:, 0, None] + torch.arange(2 * k + 1)
    return idx.clamp(0, size - 1), w[:, 0] * ((idx >= 0) & (idx < size))


def project_atoms(coords_A: np.ndarray, weights_VA3: np.ndarray, sigma_A: np.ndarray, rotations: np.ndarray,
                  shape: tuple[int, int], pixel_size_A: float) -> torch.Tensor:
    """Projected potential (V·Å) ``(n, H, W)`` float32 of Gaussian atoms seen through ``rotations`` (n, 3, 3).

    Atom a lands at ``(R a)_xy / pixel_size_A + (W//2, H//2)`` px; each Gaussian is integrated exactly
    over every pixel of a ±ceil(4σ) neighbourhood, so ``proj.sum() × pixel² = Σ weights`` for atoms inside.
    The row terms are reused while ``R[1]`` stays the same (single-axis tilts about y).
    """
    h, w = (int(v) for v in shape)
    rot = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    out = torch.zeros(len(rot), h * w, dtype=torch.float32)
    if len(coords_A) == 0:
        return out.reshape(len(rot), h, w)
    xyz = torch.as_tensor(np.asarray(coords_A, dtype=np.float64) / pixel_size_A)  # (N, 3) px
    s = torch.as_tensor(np.asarray(sigma_A, dtype=np.float32) / pixel_size_A)
    amp = torch.as_tensor(np.asarray(weights_VA3, dtype=np.float32) / pixel_size_A**2)  # V·Å per pixel
    k = max(1, int(math.ceil(4.0 * float(s.max()))))
    chunks = [slice(i, i + max(1, _CHUNK_ELEMENTS // (2 * k + 1) ** 2)) for i in
              range(0, len(xyz), max(1, _CHUNK_ELEMENTS // (2 * k + 1) ** 2))]
    row_key, rows = None, []
    for i, R in enumerate(tqdm(rot, desc="projecting tilts", leave=False, disable=len(rot) < 8)):
        if R[1].tobytes() != row_key:
            row_key = R[1].tobytes()
            y = (xyz @ torch.as_tensor(R[1]) + h // 2).float()
            rows = [_axis_terms(y[c], s[c], k, h) for c in chunks]
        x = (xyz @ torch.as_tensor(R[0]) + w // 2).float()
        for c, (yi, wy) in zip(chunks, rows):
            xi, wx = _axis_terms(x[c], s[c], k, w)
            val = amp[c, None, None] * wy[:, :, None] * wx[:, None, :]  # (m, y, x)
            out[i].index_add_(0, ((yi * w)[:, :, None] + xi[:, None, :]).reshape(-1), val.reshape(-1))
    return out.reshape(len(rot), h, w)


def specimen_volume(specimen: Specimen, shape_zyx: tuple[int, int, int], pixel_size_A: float) -> np.ndarray:
    """Ground-truth net potential (V) ``(Z, Y, X)`` float32: :func:`potential.structure_to_volume` of all atoms
    in a cube of the largest side (rounded up to even), cropped about the centre voxel."""
    if len(specimen.coords_A) == 0:
        return np.zeros(shape_zyx, dtype=np.float32)
    d = max(shape_zyx) + max(shape_zyx) % 2
    atoms = Structure(specimen.coords_A, specimen.weights_VA3, specimen.sigma_A, name="specimen", family="specimen")
    cube = structure_to_volume(atoms, pixel_size_A, box_px=d).numpy()
    z, y, x = (slice(d // 2 - n // 2, d // 2 - n // 2 + n) for n in shape_zyx)
    return np.ascontiguousarray(cube[z, y, x])


@dataclass
class TiltSeries:
    """One simulated tilt series with its ground truth (tilts in ascending angle order)."""

    tilts: np.ndarray  # (n, H, W) float32 recorded counts (e⁻/px), Poisson
    clean: np.ndarray  # (n, H, W) float32 expected counts (e⁻/px): no shot noise
    angles_deg: np.ndarray  # (n,) tilt angles (degrees), ascending
    volume: np.ndarray  # (Z, Y, X) float32 ground-truth net potential (V)
    pixel_size_A: float
    projected_VA: np.ndarray  # (n, H, W) float32 projected potential (V·Å) of each tilt
    dose_e_per_A2: np.ndarray  # (n,) dose of each tilt; sums to the total
    prior_dose_e_per_A2: np.ndarray  # (n,) dose received before each tilt
    acquisition_order: np.ndarray  # (n,) position of each tilt in the acquisition (0 = first)
    particles: pd.DataFrame  # x_px, y_px, z_px (volume index coordinates), diameter_A, diameter_px, shape
    config: TiltSeriesConfig


def _expected_counts(projected_VA: torch.Tensor, angles_deg: np.ndarray, dose: np.ndarray, prior: np.ndarray,
                     cfg: TiltSeriesConfig) -> torch.Tensor:
    """Steps 2-4 of the module docstring: expected e⁻/px ``(n, H, W)`` of projected potentials (V·Å)."""
    shape = tuple(projected_VA.shape[-2:])
    px = cfg.pixel_size_A
    ctf = ctf_2d(shape, px, cfg.defocus_um, cfg.defocus_um, 0.0, cfg.voltage_kV, cfg.cs_mm, cfg.amplitude_contrast,
                 cfg.b_factor_A2)
    transfer = ctf[None].expand(len(dose), -1, -1)
    if cfg.radiation_damage:
        ky = torch.fft.fftfreq(shape[0], d=px, dtype=torch.float64)[:, None]
        kx = torch.fft.rfftfreq(shape[1], d=px, dtype=torch.float64)[None, :]
        ne = critical_exposure(torch.sqrt(ky**2 + kx**2), cfg.voltage_kV)
        mid = torch.as_tensor(prior + dose / 2.0)[:, None, None]
        transfer = transfer * torch.exp(-mid / (2.0 * ne)).float()
    phi = projected_VA * float(interaction_constant(cfg.voltage_kV))
    phi = phi - phi.mean(dim=(-2, -1), keepdim=True)
    contrast = apply_transfer(phi, transfer, detector_mtf(shape, cfg.detector))
    path_nm = cfg.ice_thickness_A / 10.0 / np.cos(np.deg2rad(angles_deg))
    trans = torch.as_tensor(np.asarray(transmission(path_nm, ICE_MEAN_FREE_PATH_NM), dtype=np.float32))
    intensity = (trans[:, None, None] * (1.0 + contrast)).clamp_(min=0.0)
    return intensity * torch.as_tensor(dose * px**2, dtype=torch.float32)[:, None, None]


def simulate_tilt_series(config: TiltSeriesConfig, rng: np.random.Generator) -> TiltSeries:
    """A tilt series over ±``tilt_max_deg`` (module docstring); deterministic for a given ``rng`` state."""
    angles = tilt_angles(config.tilt_max_deg, config.tilt_step_deg)
    order = dose_symmetric_order(angles, config.dose_symmetric_group)
    dose = np.full(len(angles), config.dose_e_per_A2 / len(angles))
    prior = np.concatenate([[0.0], np.cumsum(dose[np.argsort(order)])[:-1]])[order]
    specimen = make_specimen(config, rng)
    n, pad = config.size_px, config.size_px // 8
    canvas = project_atoms(specimen.coords_A, specimen.weights_VA3, specimen.sigma_A, tilt_rotation_matrices(angles),
                           (n + 2 * pad, n + 2 * pad), config.pixel_size_A)
    clean = _expected_counts(canvas, angles, dose, prior, config)[:, pad : pad + n, pad : pad + n].numpy()
    tilts = rng.poisson(clean.astype(np.float64)).astype(np.float32)
    volume = specimen_volume(specimen, (config.depth_px, n, n), config.pixel_size_A)
    p = specimen.particles
    particles = pd.DataFrame({"x_px": p["x_A"] / config.pixel_size_A + n // 2,
                              "y_px": p["y_A"] / config.pixel_size_A + n // 2,
                              "z_px": p["z_A"] / config.pixel_size_A + config.depth_px // 2,
                              "diameter_A": p["diameter_A"], "diameter_px": p["diameter_A"] / config.pixel_size_A,
                              "shape": p["shape"]})
    log.info("tilt series: %d tilts of %d² px, %d particles, %.2f e⁻/Å² per tilt", len(angles), n, len(particles),
             dose[0])
    return TiltSeries(tilts=tilts, clean=np.ascontiguousarray(clean, dtype=np.float32), angles_deg=angles,
                      volume=volume, pixel_size_A=float(config.pixel_size_A),
                      projected_VA=canvas[:, pad : pad + n, pad : pad + n].contiguous().numpy(),
                      dose_e_per_A2=dose, prior_dose_e_per_A2=prior, acquisition_order=order,
                      particles=particles, config=config)
