"""The specimen in the field of view: ice, carbon film, contaminants, crystalline ice (particle positions:
:mod:`cryolib.simulate.placement`).

All maps are ``(H, W)`` float32 (or bool) arrays at the micrograph pixel size. Thickness is in
nm, phase in rad (at ``voltage_kV``), positions in px as (x, y) from the top-left corner.

Amorphous materials (vitreous ice, carbon film) are Gaussian random fields whose spectrum is
that of a liquid of molecules (atoms): per-pixel projected-potential variance
``ρ·t·(∫V)²/a² · S(k)·|f(k)|²`` averaged over the pixel's frequencies, with ``ρ`` the number
density, ``t`` the local thickness, ``∫V = V_mean/ρ`` the volume integral of one molecule's
potential, ``a`` the pixel size, ``S(k)`` a liquid structure factor and ``f(k)`` a Gaussian
molecular form factor. See :func:`ice_phase_noise` for the numbers and why.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.draw import polygon as draw_polygon

from cryolib.core.errors import CryolibError
from cryolib.simulate.optics import interaction_constant
from cryolib.simulate.placement import check_shape as _check_shape
from cryolib.simulate.placement import place_particles  # noqa: F401  (re-exported)
from cryolib.simulate.structures import ICE_MEAN_INNER_POTENTIAL_V

log = logging.getLogger(__name__)

# Vitreous (low-density amorphous) ice: 0.94 g/cm³ → 0.0314 H2O molecules per Å³.
ICE_NUMBER_DENSITY_PER_A3 = 0.0314
# Inelastic mean free path of ice at 300 kV (zero-loss filtered imaging). Measured values are
# 300–400 nm (Yesibolati et al. 2020 PRL 124:065502, ~350 nm at 300 kV; Rice et al. 2018: ~320 nm).
ICE_MEAN_FREE_PATH_NM = 350.0
# Amorphous carbon film: 2.0 g/cm³ → 0.10 atoms/Å³, mean inner potential ~9.5 V; inelastic
# mean free path ~200 nm at 300 kV (about half that of ice, as carbon is denser).
CARBON_NUMBER_DENSITY_PER_A3 = 0.10
CARBON_MEAN_INNER_POTENTIAL_V = 9.5
CARBON_MEAN_FREE_PATH_NM = 200.0
# Phase cap for thick contaminants: the weak-phase model fails for phases ≫ 1 rad (see contaminants).
CONTAMINANT_MAX_PHASE_RAD = 0.5


# --------------------------------------------------------------------------- random fields
@lru_cache(maxsize=8)
def _freq_grid(shape: tuple[int, int], pixel_size_A: float) -> tuple[np.ndarray, np.ndarray]:
    """|k| (1/Å) on the rfft2 half-grid, and the weight of each column in the full grid."""
    ky = np.fft.fftfreq(shape[0], d=pixel_size_A)[:, None]
    kx = np.fft.rfftfreq(shape[1], d=pixel_size_A)[None, :]
    k = np.sqrt(ky**2 + kx**2)
    weight = np.full(kx.shape, 2.0)
    weight[0, 0] = 1.0
    if shape[1] % 2 == 0:
        weight[0, -1] = 1.0
    return k, weight


def _filtered_noise(shape: tuple[int, int], amplitude: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance white noise filtered by ``amplitude`` (on the rfft2 grid); returns float64."""
    white = rng.standard_normal(shape)
    return np.fft.irfft2(np.fft.rfft2(white) * amplitude, s=shape)


def _smooth_field(shape: tuple[int, int], correlation_px: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std smooth Gaussian random field with a Gaussian correlation length (px).

    Drawn on a grid coarser by up to correlation/8 and interpolated (bilinear) to ``shape``.
    """
    f = max(1, int(correlation_px // 8))
    coarse = (-(-shape[0] // f) + 1, -(-shape[1] // f) + 1)
    k, weight = _freq_grid(coarse, 1.0)
    amp = np.exp(-((np.pi * correlation_px / f * k) ** 2) / 2.0)
    amp[0, 0] = 0.0
    field = _filtered_noise(coarse, amp, rng)
    field /= max(np.sqrt(np.sum(weight * amp**2) / (coarse[0] * coarse[1])), 1e-12)
    if f == 1:
        return field[: shape[0], : shape[1]]
    return _linear_upsample_matrix(shape[0], coarse[0], f) @ field @ _linear_upsample_matrix(shape[1], coarse[1], f).T


def _linear_upsample_matrix(n_out: int, n_in: int, factor: int) -> np.ndarray:
    """Dense ``(n_out, n_in)`` matrix of linear interpolation at positions ``i / factor``."""
    pos = np.arange(n_out) / factor
    i0 = np.minimum(pos.astype(np.int64), n_in - 2)
    frac = pos - i0
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), i0] = 1.0 - frac
    m[np.arange(n_out), i0 + 1] = frac
    return m


def _liquid_structure_factor(k: np.ndarray, s0: float, s1: float, k_c: float, k_peak: float, peak: float, width: float) -> np.ndarray:
    """Structure factor S(k) (k in 1/Å): ``s0`` at k→0 rising to a plateau ``s1``, then a Gaussian first peak."""
    k2 = k**2
    return s0 + (s1 - s0) * k2 / (k2 + k_c**2) + peak * np.exp(-((k - k_peak) ** 2) / (2 * width**2))


def _amorphous_phase(
    shape: tuple[int, int],
    pixel_size_A: float,
    thickness_nm: np.ndarray | float,
    rng: np.random.Generator,
    density_per_A3: float,
    mean_potential_V: float,
    structure_factor: np.ndarray,
    voltage_kV: float,
) -> np.ndarray:
    """Phase (rad) of an amorphous slab: variance ∝ local thickness, spectrum S(k)|f(k)|²."""
    k, _ = _freq_grid(shape, float(pixel_size_A))
    form = np.exp(-2.0 * (np.pi * 0.5 * k) ** 2)  # Gaussian molecular potential, σ = 0.5 Å
    amp = np.sqrt(structure_factor) * form
    amp[0, 0] = 0.0
    unit = _filtered_noise(shape, amp, rng)  # variance = mean_k S|f|²
    v_integral = mean_potential_V / density_per_A3  # V·Å³ per molecule
    t_A = np.clip(np.asarray(thickness_nm, dtype=np.float64), 0.0, None) * 10.0
    std_vA = np.sqrt(density_per_A3 * t_A) * v_integral / pixel_size_A  # white (S = 1) std, V·Å
    return (interaction_constant(voltage_kV) * std_vA * unit).astype(np.float32)


# --------------------------------------------------------------------------- ice
def ice_thickness_map(shape: tuple[int, int], mean_thickness_nm: float, gradient: float, rng: np.random.Generator, variation: float = 0.05) -> np.ndarray:
    """Ice thickness (nm): a linear gradient plus a smooth random variation.

    ``gradient`` is the fractional change across the field along a random direction (0.2 means
    the thick side is 20% thicker than the thin side); ``variation`` is the relative std of a
    smooth field with a correlation length of a quarter of the field. Floors at 10% of the mean.
    """
    _check_shape(shape)
    if mean_thickness_nm <= 0:
        raise CryolibError(f"mean_thickness_nm must be > 0, got {mean_thickness_nm}")
    h, w = shape
    theta = rng.uniform(0.0, 2 * np.pi)
    yy, xx = np.ogrid[0:h, 0:w]
    proj = (xx - (w - 1) / 2) * np.cos(theta) + (yy - (h - 1) / 2) * np.sin(theta)
    span = max(proj.max() - proj.min(), 1.0)
    rel = gradient * proj / span + variation * _smooth_field(shape, max(h, w) / 4.0, rng)
    rel -= rel.mean()
    return np.clip(mean_thickness_nm * (1.0 + rel), 0.1 * mean_thickness_nm, None).astype(np.float32)


def ice_phase_noise(shape: tuple[int, int], pixel_size_A: float, thickness_nm: np.ndarray | float, rng: np.random.Generator, voltage_kV: float = 300.0) -> np.ndarray:
    """Structural noise of vitreous ice (rad): a Gaussian random field, variance ∝ local thickness.

    Physical amplitude: a pixel column of area a² and thickness t holds N = ρ·a²·t water
    molecules (ρ = 0.0314 Å⁻³), each with a potential volume integral V_ice/ρ ≈ 156 V·Å³. Were
    they uncorrelated (an ideal gas), the projected potential would fluctuate by
    √N·156/a² V·Å. Amorphous ice is far more uniform at long wavelengths, so the spectrum is
    weighted by a water-like structure factor: S ≈ 0.02 as k → 0 (LDA ice is nearly
    hyperuniform), a plateau S ≈ 0.1 below the first diffraction ring, and the ring itself at
    1/3.7 Å (the "ice ring" of power spectra, height 2). At 4 Å/px this is near-white with a
    low-frequency roll-off: for t = 50 nm the per-pixel std is ≈ 45 V·Å, i.e. ≈ 0.03 rad at
    300 kV, a fraction of the phase of a 150–200 Å protein (~0.1–0.2 rad), so ice adds
    CTF-modulated structural noise comparable to the shot noise of a 50 e⁻/Å² exposure.
    Approximates the Parkhurst et al. (2021) spectrum; written for this project.
    """
    _check_shape(shape)
    _check_pixel(pixel_size_A)
    k, _ = _freq_grid(tuple(shape), float(pixel_size_A))
    s_k = _liquid_structure_factor(k, s0=0.02, s1=0.10, k_c=1 / 30.0, k_peak=1 / 3.7, peak=2.0, width=0.02)
    return _amorphous_phase(tuple(shape), pixel_size_A, thickness_nm, rng, ICE_NUMBER_DENSITY_PER_A3, ICE_MEAN_INNER_POTENTIAL_V, s_k, voltage_kV)


def transmission(thickness_nm: np.ndarray | float, mean_free_path_nm: float = ICE_MEAN_FREE_PATH_NM) -> np.ndarray | float:
    """Zero-loss (energy-filtered) fraction exp(−t/λ_in) of the beam through ``thickness_nm``.

    λ_in ≈ 350 nm for vitreous ice at 300 kV (measured 300–400 nm; Yesibolati et al. 2020,
    Rice et al. 2018). Assumes a slit that removes all inelastically scattered electrons;
    elastic scattering outside the objective aperture is in the CTF's amplitude contrast.
    """
    if mean_free_path_nm <= 0:
        raise CryolibError(f"mean_free_path_nm must be > 0, got {mean_free_path_nm}")
    t = np.clip(np.asarray(thickness_nm, dtype=np.float64), 0.0, None)
    out = np.exp(-t / mean_free_path_nm)
    return out.astype(np.float32) if out.ndim else float(out)


# --------------------------------------------------------------------------- carbon film
def carbon_edge(
    shape: tuple[int, int],
    pixel_size_A: float,
    rng: np.random.Generator,
    thickness_nm: tuple[float, float] = (10.0, 20.0),
    carbon_only: bool = False,
    voltage_kV: float = 300.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A carbon film whose curved hole edge crosses the field: ``(mask, phase_rad, thickness_nm)``.

    The hole is a circle of radius 0.6–1 µm (a 1.2–2 µm hole) whose rim covers 15–60% of the
    field, with a few-px wobble and a 1-px anti-aliased edge. The film (uniform thickness drawn
    from ``thickness_nm``) displaces ice, so its phase is σ·(9.5 V − V_ice)·t plus its own
    amorphous texture (S plateau 0.5: carbon is less uniform than ice, which is why carbon
    shows strong Thon rings). ``carbon_only`` covers the whole field. Particles in our analogs
    are placed only in the hole, as in curated single-particle data.
    """
    _check_shape(shape)
    _check_pixel(pixel_size_A)
    h, w = shape
    t_c = rng.uniform(*thickness_nm)
    if carbon_only:
        soft = np.ones(shape, dtype=np.float64)
    else:
        radius_px = rng.uniform(6000.0, 10000.0) / pixel_size_A
        u = rng.uniform(0.0, 2 * np.pi)
        d = rng.uniform(-0.1, 0.35) * max(h, w)  # field centre lies d px inside the hole
        cy, cx = (h - 1) / 2 - (radius_px - d) * np.sin(u), (w - 1) / 2 - (radius_px - d) * np.cos(u)
        yy, xx = np.ogrid[0:h, 0:w]
        r = np.hypot(yy - cy, xx - cx)
        ang = np.arctan2(yy - cy, xx - cx)
        m = np.round(2 * np.pi * radius_px / rng.uniform(30.0, 300.0, size=4))  # 30–300 px wavelengths
        wobble = sum(rng.uniform(0.5, 3.0) * np.cos(mi * ang + rng.uniform(0, 2 * np.pi)) for mi in m)
        soft = 0.5 * (1.0 + np.tanh(r - radius_px - wobble))
    t_map = (t_c * soft).astype(np.float32)
    sigma = interaction_constant(voltage_kV)
    step = sigma * (CARBON_MEAN_INNER_POTENTIAL_V - ICE_MEAN_INNER_POTENTIAL_V) * t_map * 10.0
    k, _ = _freq_grid((h, w), float(pixel_size_A))
    s_k = _liquid_structure_factor(k, s0=0.1, s1=0.5, k_c=1 / 30.0, k_peak=1 / 2.1, peak=2.0, width=0.05)
    texture = _amorphous_phase((h, w), pixel_size_A, t_map, rng, CARBON_NUMBER_DENSITY_PER_A3, CARBON_MEAN_INNER_POTENTIAL_V, s_k, voltage_kV)
    return soft > 0.5, (step + texture).astype(np.float32), t_map


# --------------------------------------------------------------------------- contaminants
def add_patch(canvas: np.ndarray, patch: np.ndarray, y0: int, x0: int) -> None:
    """Add ``patch`` into ``canvas`` with its top-left at (y0, x0), clipped to the canvas."""
    h, w = canvas.shape
    ph, pw = patch.shape
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(h, y0 + ph), min(w, x0 + pw)
    if ye > ys and xe > xs:
        canvas[ys:ye, xs:xe] += patch[ys - y0 : ye - y0, xs - x0 : xe - x0]


def _crystal_chunk(radius_px: float, rng: np.random.Generator) -> np.ndarray:
    """Relative thickness (0..1) of a faceted ice crystal: an irregular 5–8-gon with a tilted top."""
    n = int(rng.integers(5, 9))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = radius_px * rng.uniform(0.7, 1.0, n)
    size = int(np.ceil(2 * radius_px)) + 9
    c = size / 2
    rr, cc = draw_polygon(c + rad * np.sin(ang), c + rad * np.cos(ang), (size, size))
    patch = np.zeros((size, size))
    yy, xx = np.mgrid[0:size, 0:size] / max(radius_px, 1.0)
    tilt = 1.0 + rng.uniform(-0.2, 0.2) * (yy - 1) + rng.uniform(-0.2, 0.2) * (xx - 1)
    patch[rr, cc] = 1.0
    return ndimage.gaussian_filter(patch * tilt, 1.5)


def _blob(radius_px: float, rng: np.random.Generator) -> np.ndarray:
    """Relative thickness (0..1) of a round, slightly elliptical drop: a spherical-cap profile."""
    size = int(np.ceil(2.4 * radius_px)) + 9
    c = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size] - c
    e, th = rng.uniform(0.8, 1.0), rng.uniform(0, np.pi)
    u = (xx * np.cos(th) + yy * np.sin(th)) / radius_px
    v = (-xx * np.sin(th) + yy * np.cos(th)) / (radius_px * e)
    return ndimage.gaussian_filter(np.sqrt(np.clip(1.0 - u**2 - v**2, 0.0, None)), 2.0)


def contaminants(
    shape: tuple[int, int],
    pixel_size_A: float,
    n: int,
    rng: np.random.Generator,
    kind: str = "mixed",
    voltage_kV: float = 300.0,
    size_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Surface contamination: ``(mask, phase_rad, extra_thickness_nm)``.

    ``kind``: "crystalline" (faceted ice crystals, 300–1500 Å across, 100–300 nm thick),
    "ethane" (round ethane/ice drops, 200–1000 Å, 50–250 nm at the centre) or "mixed" (half
    each). ``extra_thickness_nm`` is the ice-equivalent attenuation thickness: for crystals it
    includes a further 0.5–2× for Bragg-diffracted electrons stopped by the objective aperture,
    which makes them near-black. Their phase σ·V_ice·t would be several rad, where the
    weak-phase model fails; it is soft-limited to ``CONTAMINANT_MAX_PHASE_RAD`` so that their
    Fresnel fringes stay moderate (their dominant contrast is amplitude).
    """
    _check_shape(shape)
    _check_pixel(pixel_size_A)
    if kind not in ("mixed", "crystalline", "ethane"):
        raise CryolibError(f"unknown contaminant kind {kind!r}; use 'mixed', 'crystalline' or 'ethane'")
    h, w = shape
    phys = np.zeros(shape, dtype=np.float64)
    atten = np.zeros(shape, dtype=np.float64)
    for _ in range(int(n)):
        crystal = kind == "crystalline" or (kind == "mixed" and rng.random() < 0.5)
        if crystal:
            radius_px = size_scale * rng.uniform(150.0, 750.0) / pixel_size_A
            rel, t_max = _crystal_chunk(radius_px, rng), rng.uniform(100.0, 300.0)
            extra = 1.0 + rng.uniform(0.5, 2.0)
        else:
            radius_px = size_scale * rng.uniform(100.0, 500.0) / pixel_size_A
            rel, t_max, extra = _blob(radius_px, rng), rng.uniform(50.0, 250.0), 1.0
        y0 = int(rng.uniform(0, h)) - rel.shape[0] // 2
        x0 = int(rng.uniform(0, w)) - rel.shape[1] // 2
        add_patch(phys, rel * t_max, y0, x0)
        add_patch(atten, rel * t_max * extra, y0, x0)
    raw = interaction_constant(voltage_kV) * ICE_MEAN_INNER_POTENTIAL_V * phys * 10.0
    phase = CONTAMINANT_MAX_PHASE_RAD * np.tanh(raw / CONTAMINANT_MAX_PHASE_RAD)
    return phys > 5.0, phase.astype(np.float32), atten.astype(np.float32)


# --------------------------------------------------------------------------- crystalline ice
def crystalline_ice(shape: tuple[int, int], pixel_size_A: float, rng: np.random.Generator, grain_size_nm: tuple[float, float] = (20.0, 80.0)) -> np.ndarray:
    """Multiplicative diffraction-contrast map (0..1] of a field of crystalline ice grains.

    Voronoi grains of mean diameter drawn from ``grain_size_nm``; each grain loses a fraction of
    the beam to Bragg reflections outside the objective aperture: most 0–15%, one in four (in a
    strong Bragg condition, at least one in view) 30–65%, with a faint bend-contour ramp inside each grain. The ice
    reflections themselves (3.4–3.9 Å) are beyond Nyquist at ≥2 Å/px and are not drawn.
    """
    _check_shape(shape)
    _check_pixel(pixel_size_A)
    h, w = shape
    grain_px = rng.uniform(*grain_size_nm) * 10.0 / pixel_size_A
    n_grains = max(2, int(round(h * w / (np.pi / 4 * grain_px**2))))
    seeds = rng.uniform([-0.1 * h, -0.1 * w], [1.1 * h, 1.1 * w], size=(n_grains, 2))
    step = max(1, int(grain_px // 32))
    gy, gx = np.mgrid[0:h:step, 0:w:step]
    _, label = cKDTree(seeds).query(np.column_stack([gy.ravel(), gx.ravel()]))
    label = label.reshape(gy.shape).repeat(step, 0).repeat(step, 1)[:h, :w]
    dark = rng.random(n_grains) < 0.25
    dark[label[rng.integers(h), rng.integers(w)]] = True  # at least one visible dark grain
    level = np.where(dark, rng.uniform(0.35, 0.7, n_grains), rng.uniform(0.85, 1.0, n_grains))
    slope = rng.normal(0.0, 0.05, size=(n_grains, 2)) / grain_px
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    sy, sx = seeds[label, 0], seeds[label, 1]
    ramp = slope[label, 0] * (yy - sy) + slope[label, 1] * (xx - sx)
    factor = ndimage.gaussian_filter(level[label] * (1.0 + ramp), max(1.0, 8.0 / pixel_size_A + step / 2))
    return np.clip(factor, 0.05, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- checks
def _check_pixel(pixel_size_A: float) -> None:
    if not pixel_size_A > 0:
        raise CryolibError(f"pixel_size_A must be > 0, got {pixel_size_A}")
