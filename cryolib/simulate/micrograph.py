"""Compose one simulated micrograph: specimen → optics → dose-fractionated movie → motion correction.

Image formation (weak-phase, energy-filtered, one micrograph):

1. particles: projected potential (V·Å) pasted at integer centres (the ground truth);
2. phase φ = σ_e·V_proj + ice structural noise + carbon film + contaminants (mean removed: the
   mean loss of beam is the transmission term, not the CTF's amplitude contrast);
3. contrast = −2·IFFT[FFT(φ)·CTF·E_B] (CTF with astigmatism and B-factor envelope), the particle
   term also attenuated by dose-averaged radiation damage (:func:`radiation_damage_filter`);
4. intensity = transmission(ice, carbon, contaminants) × crystalline-ice factor × (1 + contrast),
   blurred by the detector MTF and clipped ≥ 0; expected e⁻/px = dose × pixel area × intensity
   (``clean``);
5. Poisson counts per frame with beam-induced drift (:mod:`cryolib.simulate.movie`), then
   motion correction into full/odd/even sums (DRACO §3).

The specimen is rendered on a canvas padded by the largest drift (and rounded up to an
FFT-friendly size), so content drifts in from outside the field as on a real detector; the
frames, sums and ``clean`` are cropped to the field.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from cryolib.core.errors import CryolibError
from cryolib.processing.motion import critical_exposure, motion_correct
from cryolib.simulate import sample as smp
from cryolib.simulate.movie import drift_trajectory, expose_movie
from cryolib.simulate.optics import apply_transfer, ctf_2d, detector_mtf, interaction_constant
from cryolib.simulate.potential import particle_projections

log = logging.getLogger(__name__)

DEFECTS = ("empty", "thick_ice", "crystalline_ice", "contamination", "severe_drift", "carbon_only")
THICK_ICE_NM = (150.0, 300.0)  # "thick_ice" defect: ice thickness range (nm)
CONTAMINATION_COVER = (0.2, 0.45)  # "contamination" defect: fraction of the field covered
_REF_AREA_PX = 1024 * 1024  # densities in SampleConfig are per 1024² field


@dataclass(frozen=True)
class AcquisitionConfig:
    """Microscope and exposure settings (300 kV single-particle defaults, methods.md)."""

    size_px: int = 1024  # side of the square micrograph (px)
    pixel_size_A: float = 4.0  # Å/px (binned for picking)
    voltage_kV: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    defocus_um: tuple[float, float] = (0.8, 2.5)  # underfocus range (µm), drawn uniformly
    astigmatism_um: float = 0.05  # largest half-difference |dfU − dfV| / 2 (µm)
    b_factor_A2: float = 60.0  # envelope exp(−B k²/4) (Å²)
    dose_e_per_A2: float = 50.0  # total dose over the movie
    n_frames: int = 40
    drift_A: float = 15.0  # accumulated drift path length (Å)
    detector: str = "counting"  # detector MTF kind ("counting" or "ideal")

    def __post_init__(self) -> None:
        if int(self.size_px) < 32:
            raise CryolibError(f"size_px must be at least 32, got {self.size_px}")
        if not self.pixel_size_A > 0:
            raise CryolibError(f"pixel_size_A must be > 0, got {self.pixel_size_A}")
        if not self.dose_e_per_A2 > 0:
            raise CryolibError(f"dose_e_per_A2 must be > 0, got {self.dose_e_per_A2}")
        if int(self.n_frames) < 2:
            raise CryolibError(f"n_frames must be at least 2 (odd/even sums), got {self.n_frames}")
        lo, hi = self.defocus_um
        if not 0 < lo <= hi:
            raise CryolibError(f"defocus_um must be an underfocus range 0 < lo ≤ hi (µm), got {self.defocus_um}")
        if self.astigmatism_um < 0 or self.astigmatism_um >= lo:
            raise CryolibError(f"astigmatism_um must be in [0, {lo}) µm, got {self.astigmatism_um}")
        if self.voltage_kV <= 0 or self.drift_A < 0 or self.b_factor_A2 < 0 or not 0 <= self.amplitude_contrast < 1:
            raise CryolibError(
                "need voltage_kV > 0, drift_A ≥ 0, b_factor_A2 ≥ 0 and 0 ≤ amplitude_contrast < 1; got "
                f"{self.voltage_kV}, {self.drift_A}, {self.b_factor_A2}, {self.amplitude_contrast}"
            )


@dataclass(frozen=True)
class SampleConfig:
    """What is in the field of view."""

    ice_thickness_nm: tuple[float, float] = (30.0, 60.0)  # mean ice thickness range (nm)
    ice_gradient: float = 0.2  # fractional thickness change across the field
    particles_per_1024: tuple[int, int] = (80, 150)  # per 1024² px field; scaled by area
    aggregation: float = 0.0  # 0 = independent, 1 = every particle proposed next to another
    preferred_orientation: float = 0.0  # passed to potential.particle_projections
    contaminants_per_1024: float = 0.5  # Poisson mean per 1024² field
    contaminant_size_scale: float = 1.0  # × the sizes of sample.contaminants (e.g. 0.3: particle-sized ice blobs)
    carbon_edge_probability: float = 0.0  # chance of a carbon hole edge crossing the field

    def __post_init__(self) -> None:
        lo, hi = self.ice_thickness_nm
        if not 0 < lo <= hi:
            raise CryolibError(f"ice_thickness_nm must be 0 < lo ≤ hi (nm), got {self.ice_thickness_nm}")
        plo, phi = self.particles_per_1024
        if not 0 <= plo <= phi:
            raise CryolibError(f"particles_per_1024 must be 0 ≤ lo ≤ hi, got {self.particles_per_1024}")
        if not (0 <= self.aggregation <= 1 and 0 <= self.carbon_edge_probability <= 1):
            raise CryolibError("aggregation and carbon_edge_probability must lie in [0, 1]")
        if self.contaminants_per_1024 < 0 or self.ice_gradient < 0 or not self.contaminant_size_scale > 0:
            raise CryolibError("contaminants_per_1024 and ice_gradient must be ≥ 0 and contaminant_size_scale > 0")


@dataclass
class SimulatedMicrograph:
    """One simulated micrograph with its ground truth."""

    full: np.ndarray  # (H, W) float32 motion-corrected sum of all frames (e⁻/px)
    odd: np.ndarray  # (H, W) float32 sum of the odd frames (e⁻/px)
    even: np.ndarray  # (H, W) float32 sum of the even frames (e⁻/px); full = odd + even
    clean: np.ndarray  # (H, W) float32 expected e⁻/px for the whole dose: no shot noise, no drift
    frames: np.ndarray | None  # (F, H, W) raw counts, only with keep_frames
    particles: pd.DataFrame  # x, y (px, top-left origin), diameter_px, rot_deg, tilt_deg, psi_deg
    meta: dict = field(default_factory=dict)


@dataclass
class _Canvas:
    """The padded field the specimen is rendered on; the micrograph is ``[y0:y0+H, x0:x0+W]``."""

    shape: tuple[int, int]
    y0: int
    x0: int
    size: int

    def crop(self, a: np.ndarray) -> np.ndarray:
        return a[..., self.y0 : self.y0 + self.size, self.x0 : self.x0 + self.size]


@dataclass
class _Specimen:
    phase_rad: np.ndarray  # background phase: ice noise, carbon, contaminants (canvas)
    transmission: np.ndarray  # zero-loss fraction × crystalline-ice factor (canvas)
    forbidden: np.ndarray | None  # bool: where no particle centre may go (canvas)
    ice_mean_nm: float
    carbon_fraction: float
    contaminant_fraction: float


def _nice_size(n: int) -> int:
    """Smallest integer ≥ n whose only prime factors are 2, 3, 5 and 7 (fast FFTs)."""
    while True:
        m = n
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _make_canvas(size: int, max_shift_px: float) -> _Canvas:
    side = _nice_size(size + 2 * (int(math.ceil(max_shift_px)) + 2))
    off = (side - size) // 2
    return _Canvas((side, side), off, off, size)


def _specimen(canvas: _Canvas, acq: AcquisitionConfig, smp_cfg: SampleConfig, defect: str | None, rng: np.random.Generator) -> _Specimen:
    """Ice, carbon, contaminants and crystalline ice on the canvas."""
    shape, px, kv = canvas.shape, acq.pixel_size_A, acq.voltage_kV
    area_ratio = shape[0] * shape[1] / _REF_AREA_PX
    ice_mean = rng.uniform(*(THICK_ICE_NM if defect == "thick_ice" else smp_cfg.ice_thickness_nm))
    ice = smp.ice_thickness_map(shape, ice_mean, smp_cfg.ice_gradient, rng)
    forbidden = np.zeros(shape, dtype=bool)
    phase = np.zeros(shape, dtype=np.float32)
    carbon_t = np.zeros(shape, dtype=np.float32)
    if defect == "carbon_only" or rng.random() < smp_cfg.carbon_edge_probability:
        c_mask, c_phase, carbon_t = smp.carbon_edge(shape, px, rng, carbon_only=defect == "carbon_only", voltage_kV=kv)
        forbidden |= c_mask
        phase += c_phase
    ice = np.clip(ice - carbon_t, 0.0, None)  # the film displaces ice
    phase += smp.ice_phase_noise(shape, px, ice, rng, voltage_kV=kv)
    extra = np.zeros(shape, dtype=np.float32)
    n_cont = rng.poisson(smp_cfg.contaminants_per_1024 * area_ratio)
    if n_cont:
        mask, c_phase, extra = smp.contaminants(shape, px, n_cont, rng, voltage_kV=kv, size_scale=smp_cfg.contaminant_size_scale)
        forbidden |= mask
        phase += c_phase
    if defect == "contamination":
        target = rng.uniform(*CONTAMINATION_COVER)
        for _ in range(200):
            if canvas.crop(forbidden).mean() >= target:
                break
            mask, c_phase, more = smp.contaminants(shape, px, 1, rng, voltage_kV=kv, size_scale=1.5)
            forbidden |= mask
            phase += c_phase
            extra += more
    trans = smp.transmission(ice + extra) * smp.transmission(carbon_t, smp.CARBON_MEAN_FREE_PATH_NM)
    if defect == "crystalline_ice":
        trans = trans * smp.crystalline_ice(shape, px, rng)
    return _Specimen(
        phase_rad=phase,
        transmission=trans.astype(np.float32),
        forbidden=forbidden if forbidden.any() else None,
        ice_mean_nm=float(canvas.crop(ice).mean()),
        carbon_fraction=float(canvas.crop(carbon_t > 0.5 * carbon_t.max()).mean()) if carbon_t.any() else 0.0,
        contaminant_fraction=float(canvas.crop(extra > 5.0).mean()),
    )


def _particles(structure, canvas: _Canvas, acq: AcquisitionConfig, smp_cfg: SampleConfig, forbidden: np.ndarray | None, n_field: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """Place particles on the canvas and paste their projected potential (V·Å).

    Returns the ground truth (centres inside the field, in field px) and the canvas potential.
    """
    diameter_px = structure.diameter_A / acq.pixel_size_A
    potential = np.zeros(canvas.shape, dtype=np.float32)
    cols = ["x", "y", "diameter_px", "rot_deg", "tilt_deg", "psi_deg"]
    ext = int(math.ceil(diameter_px / 2))  # centres up to a radius beyond the canvas still show
    area = (canvas.shape[0] + 2 * ext) * (canvas.shape[1] + 2 * ext)
    n_place = int(round(n_field * area / canvas.size**2))
    if n_place == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in cols}), potential
    if forbidden is not None:  # keep whole particles off carbon and contaminants
        forbidden = np.pad(ndimage.distance_transform_edt(~forbidden) < diameter_px / 2, ext)
    shape = (canvas.shape[0] + 2 * ext, canvas.shape[1] + 2 * ext)
    centres = smp.place_particles(shape, n_place, diameter_px, rng, aggregation=smp_cfg.aggregation, forbidden_mask=forbidden)
    centres = np.rint(centres).astype(np.int64) - ext  # canvas px
    proj, eulers = particle_projections(structure, len(centres), acq.pixel_size_A, rng, preferred_orientation=smp_cfg.preferred_orientation)
    box = proj.shape[-1]
    for (cx, cy), img in zip(centres, proj):
        smp.add_patch(potential, img, int(cy) - box // 2, int(cx) - box // 2)
    x, y = centres[:, 0] - canvas.x0, centres[:, 1] - canvas.y0
    inside = (x >= 0) & (x < canvas.size) & (y >= 0) & (y < canvas.size)
    table = pd.DataFrame(
        {
            "x": x[inside].astype(float),
            "y": y[inside].astype(float),
            "diameter_px": float(diameter_px),
            "rot_deg": eulers[inside, 0],
            "tilt_deg": eulers[inside, 1],
            "psi_deg": eulers[inside, 2],
        },
        columns=cols,
    )
    return table, potential


def radiation_damage_filter(shape: tuple[int, int], pixel_size_A: float, dose_e_per_A2: float, n_frames: int, voltage_kV: float = 300.0) -> torch.Tensor:
    """Dose-averaged amplitude loss of the particle signal on the rfft grid ``(H, W//2+1)``.

    Mean over frames of exp(−N_f / 2Ne(k)) with N_f the exposure at mid-frame and Ne(k) the
    critical exposure of Grant & Grigorieff (2015) (:func:`cryolib.processing.motion.critical_exposure`,
    300 kV values at ≥ 250 kV, 200 kV scaling below). At 50 e⁻/Å² it keeps ~0.74 of the
    amplitude at 20 Å and ~0.47 at 10 Å. This is exact for the expectation of the summed image;
    the per-frame fading itself is not drawn (one expected image feeds the whole movie).
    """
    ky = torch.fft.fftfreq(shape[0], d=pixel_size_A, dtype=torch.float64)[:, None]
    kx = torch.fft.rfftfreq(shape[1], d=pixel_size_A, dtype=torch.float64)[None, :]
    ne = critical_exposure(torch.sqrt(ky**2 + kx**2), 300.0 if voltage_kV >= 250 else 200.0)
    a = torch.exp(-dose_e_per_A2 / n_frames / (2.0 * ne))  # per-frame decay
    mean = a.sqrt() * -torch.expm1(n_frames * torch.log(a)) / (-torch.expm1(torch.log(a)) * n_frames)
    return mean.to(torch.float32)


def _expected_images(spec: _Specimen, potential_vA: np.ndarray, acq: AcquisitionConfig, optics: dict) -> tuple[np.ndarray, np.ndarray]:
    """Expected e⁻/px on the canvas, with and without the particles: ``(clean, background)``."""
    shape = potential_vA.shape
    ctf = ctf_2d(
        shape, acq.pixel_size_A, optics["defocus_u_um"], optics["defocus_v_um"], optics["astigmatism_angle_deg"],
        acq.voltage_kV, acq.cs_mm, acq.amplitude_contrast, acq.b_factor_A2,
    )
    damage = radiation_damage_filter(shape, acq.pixel_size_A, acq.dose_e_per_A2, int(acq.n_frames), acq.voltage_kV)
    phi_bg = torch.from_numpy(spec.phase_rad - spec.phase_rad.mean())
    phi_p = torch.from_numpy(potential_vA * np.float32(interaction_constant(acq.voltage_kV)))
    phi_p -= phi_p.mean()
    c_bg, c_p = apply_transfer(torch.stack([phi_bg, phi_p]), torch.stack([ctf, ctf * damage])).unbind(0)
    contrast = torch.stack([c_bg + c_p, c_bg])  # [2, H, W]: with and without particles
    intensity = torch.from_numpy(spec.transmission)[None] * (1.0 + contrast)
    mtf = detector_mtf(shape, acq.detector)
    intensity = torch.fft.irfft2(torch.fft.rfft2(intensity) * mtf, s=shape).clamp_(min=0.0)
    expected = intensity * float(acq.dose_e_per_A2 * acq.pixel_size_A**2)
    return expected[0].numpy(), expected[1].numpy()


def _draw_optics(acq: AcquisitionConfig, rng: np.random.Generator) -> dict:
    """Per-micrograph defocus (µm, underfocus) and astigmatism."""
    mean = rng.uniform(*acq.defocus_um)
    half = rng.uniform(0.0, acq.astigmatism_um)
    return {
        "defocus_u_um": float(mean + half),
        "defocus_v_um": float(mean - half),
        "astigmatism_angle_deg": float(rng.uniform(0.0, 180.0)),
    }


def simulate_micrograph(
    structure,
    acquisition: AcquisitionConfig,
    sample: SampleConfig,
    rng: np.random.Generator,
    defect: str | None = None,
    keep_frames: bool = False,
) -> SimulatedMicrograph:
    """Simulate one micrograph of ``structure`` (a :class:`~cryolib.simulate.structures.Structure`).

    ``defect`` (one of :data:`DEFECTS`) makes a "bad" micrograph for curation: no particles
    (``empty``), 150–300 nm ice, crystalline ice, ≥ 20% contamination, severe drift with
    intra-frame blur, or the carbon film only. Deterministic for a given ``rng`` state: each
    stage draws from its own generator seeded from ``rng``. ``meta["timing_s"]`` holds the
    seconds spent per stage.
    """
    if defect not in (None, "", *DEFECTS):
        raise CryolibError(f"unknown defect {defect!r}; use one of {DEFECTS} or None")
    defect = defect or None
    acq, cfg = acquisition, sample
    r_opt, r_spec, r_part, r_drift, r_exp, r_n = (np.random.default_rng(int(s)) for s in rng.integers(0, 2**63 - 1, size=6))
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    optics = _draw_optics(acq, r_opt)
    severe = defect == "severe_drift"
    shifts = drift_trajectory(acq.n_frames, acq.drift_A, acq.pixel_size_A, r_drift, severe=severe)
    canvas = _make_canvas(int(acq.size_px), float(np.abs(shifts).max()))
    spec = _specimen(canvas, acq, cfg, defect, r_spec)
    timing["specimen"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    n_field = 0 if defect in ("empty", "carbon_only") else int(round(r_n.integers(cfg.particles_per_1024[0], cfg.particles_per_1024[1] + 1) * canvas.size**2 / _REF_AREA_PX))
    particles, potential = _particles(structure, canvas, acq, cfg, spec.forbidden, n_field, r_part)
    timing["projection"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    expected, background = _expected_images(spec, potential, acq, optics)
    clean, clean_bg = canvas.crop(expected).copy(), canvas.crop(background)
    timing["optics"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    frames = np.ascontiguousarray(canvas.crop(expose_movie(expected, acq.n_frames, shifts, r_exp, intraframe_blur=severe)))
    timing["exposure"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    mc = motion_correct(frames)
    timing["motion_correction"] = time.perf_counter() - t0

    full, odd, even = (np.asarray(mc[k], dtype=np.float32) for k in ("full", "odd", "even"))
    meta = _meta(acq, spec, optics, defect, particles, shifts, np.asarray(mc["shifts_px"]), clean, clean_bg, full, structure)
    meta["timing_s"] = timing
    log.debug("simulated micrograph: %d particles, defect=%s, %.2f s", len(particles), defect, sum(timing.values()))
    return SimulatedMicrograph(full, odd, even, clean, frames if keep_frames else None, particles, meta)


def _meta(acq, spec, optics, defect, particles, shifts_true, shifts_est, clean, clean_bg, full, structure) -> dict:
    """Per-micrograph truth and quality numbers (JSON-able)."""
    true_c = shifts_true - shifts_true.mean(axis=0)
    est_c = shifts_est - shifts_est.mean(axis=0)
    shift_err = float(np.sqrt(np.mean(np.sum((true_c - est_c) ** 2, axis=1)))) if est_c.shape == true_c.shape else float("nan")
    signal_var = float(np.var(clean.astype(np.float64) - clean_bg))
    noise_var = float(np.var(full.astype(np.float64) - clean))
    snr = signal_var / noise_var if noise_var > 0 else float("inf")
    return {
        **optics,
        "pixel_size_A": acq.pixel_size_A,
        "voltage_kV": acq.voltage_kV,
        "cs_mm": acq.cs_mm,
        "amplitude_contrast": acq.amplitude_contrast,
        "b_factor_A2": acq.b_factor_A2,
        "dose_e_per_A2": acq.dose_e_per_A2,
        "n_frames": int(acq.n_frames),
        "detector": acq.detector,
        "ice_thickness_nm": spec.ice_mean_nm,
        "carbon_fraction": spec.carbon_fraction,
        "contaminant_fraction": spec.contaminant_fraction,
        "quality": "bad" if defect else "good",
        "defect": defect or "",
        "n_particles": int(len(particles)),
        "structure": getattr(structure, "name", ""),
        "family": getattr(structure, "family", ""),
        "diameter_A": float(structure.diameter_A),
        "drift_total_px": float(np.sum(np.linalg.norm(np.diff(shifts_true, axis=0), axis=1))),
        "shift_error_rms_px": shift_err,
        "snr_true": snr,
        "snr_true_dB": float(10 * np.log10(snr)) if snr > 0 else float("-inf"),
    }
