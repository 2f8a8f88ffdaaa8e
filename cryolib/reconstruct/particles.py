"""Particle boxes for reconstruction: extraction at picked centres, background normalisation, CTF phase flip.

Conventions (those of :mod:`cryolib.simulate.micrograph`): a particle centred at micrograph pixel
``(x, y)`` (columns, rows from the top-left) sits at pixel ``(B // 2, B // 2)`` of its ``B × B`` box, the
centre of the simulator's projections and of torch-fourier-slice's FFT convention. The recorded contrast
is ``−2 · IFFT[FFT(φ) · CTF]`` (:func:`cryolib.simulate.optics.apply_transfer`), so protein is dark.
:func:`phase_flip` multiplies every Fourier coefficient by ``−sign(CTF)``: the result is the projected
density filtered by ``|CTF|``, protein positive (what ChimeraX shows as density).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from cryolib.core.errors import CryolibError
from cryolib.simulate.optics import ctf_2d

__all__ = ["BOX_FACTOR", "MIN_BOX_PX", "OPTICS_COLUMNS", "default_box_px", "extract_particles", "phase_flip"]

BOX_FACTOR = 1.5  # box side / particle diameter: room for the CTF's delocalised signal and a background ring
MIN_BOX_PX = 16
#: metadata.csv columns the phase flip needs (defocus in µm, positive = underfocus; angle in degrees).
OPTICS_COLUMNS = ("defocus_u_um", "defocus_v_um", "astigmatism_angle_deg", "voltage_kV", "cs_mm", "amplitude_contrast")


def default_box_px(diameter_px: float) -> int:
    """Even box side (px): ``ceil(1.5 × diameter)`` rounded up to even, at least 16.

    1.5 × leaves a quarter diameter on each side: the background ring for normalisation and most of the
    CTF's delocalisation at the binned pixel sizes simulated here (a 2.5 µm underfocus moves 8 Å detail by
    ``λ Δf / d ≈ 60 Å``, about a quarter of a 250 Å particle)."""
    if not (np.isfinite(diameter_px) and diameter_px > 0):
        raise CryolibError(f"diameter_px={diameter_px!r}: give the particle diameter in px (> 0)")
    n = int(math.ceil(BOX_FACTOR * float(diameter_px)))
    return max(MIN_BOX_PX, n + n % 2)


def _check_centres(centres_xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    xy = np.asarray(centres_xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise CryolibError(f"particle centres must be an (N, 2) array of x, y (px), got shape {xy.shape}")
    if not np.isfinite(xy).all():
        raise CryolibError("particle centres hold NaN/Inf coordinates")
    c = np.rint(xy).astype(np.int64)
    h, w = shape
    outside = (c[:, 0] < 0) | (c[:, 0] >= w) | (c[:, 1] < 0) | (c[:, 1] >= h)
    if outside.any():
        raise CryolibError(f"{int(outside.sum())} particle centre(s) lie outside the {w} × {h} px micrograph")
    return c


def extract_particles(image: np.ndarray, centres_xy: np.ndarray, box_px: int, diameter_px: float) -> np.ndarray:
    """``(N, B, B)`` float32 boxes at the centres (x, y in px, rounded to whole pixels), normalised per box.

    Each box has its background, the pixels outside the circle of ``diameter_px`` around the centre,
    brought to mean 0 and standard deviation 1 (RELION's normalisation). Parts of a box beyond the
    micrograph's edge are not used for the statistics and are set to 0 (the background mean).
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2 or img.size == 0 or not np.isfinite(img).all():
        raise CryolibError(f"a micrograph must be a finite 2-D image, got shape {img.shape}")
    b = int(box_px)
    if b < 8 or b % 2:
        raise CryolibError(f"box_px={box_px!r}: give an even box side of at least 8 px")
    if not (0 < diameter_px < b):
        raise CryolibError(f"diameter_px={diameter_px!r} must be positive and smaller than the {b} px box "
                           "(normalisation needs background around the particle)")
    c = _check_centres(centres_xy, img.shape)
    if len(c) == 0:
        return np.zeros((0, b, b), np.float32)
    padded = np.pad(img, b // 2 + 1, constant_values=np.nan)
    off = np.arange(b) - b // 2 + b // 2 + 1  # box offsets in the padded frame
    rows = c[:, 1, None] + off  # (N, B)
    cols = c[:, 0, None] + off
    boxes = padded[rows[:, :, None], cols[:, None, :]]  # (N, B, B)
    r = np.arange(b) - b // 2
    ring = (r[:, None] ** 2 + r[None, :] ** 2) > (diameter_px / 2) ** 2
    valid = np.isfinite(boxes)
    use = valid & ring
    n = use.sum(axis=(1, 2))
    mean = np.where(use, boxes, 0.0).sum(axis=(1, 2)) / np.maximum(n, 1)
    var = np.where(use, (boxes - mean[:, None, None]) ** 2, 0.0).sum(axis=(1, 2)) / np.maximum(n - 1, 1)
    std = np.sqrt(var)
    std = np.where(std > 0, std, 1.0)
    out = (boxes - mean[:, None, None]) / std[:, None, None]
    return np.where(valid, out, 0.0).astype(np.float32)


def _optics_arrays(optics: pd.DataFrame, n: int) -> dict[str, np.ndarray]:
    if not isinstance(optics, pd.DataFrame) or len(optics) != n:
        raise CryolibError(f"phase_flip needs one optics row per particle ({n}), got "
                           f"{len(optics) if isinstance(optics, pd.DataFrame) else type(optics).__name__}")
    missing = [c for c in OPTICS_COLUMNS if c not in optics.columns]
    if missing:
        raise CryolibError(f"optics table lacks {missing}: use the dataset's metadata.csv rows")
    out = {c: optics[c].to_numpy(np.float64) for c in OPTICS_COLUMNS}
    if not all(np.isfinite(v).all() for v in out.values()):
        raise CryolibError("optics table holds NaN/Inf values")
    return out


def phase_flip(particles: np.ndarray, pixel_size_A: float, optics: pd.DataFrame) -> np.ndarray:
    """Multiply each box's Fourier transform by ``−sign(CTF)`` of its micrograph (module docstring).

    ``optics`` holds one row per particle with :data:`OPTICS_COLUMNS` (as in ``metadata.csv``); the CTF is
    :func:`cryolib.simulate.optics.ctf_2d` on the box's own grid (no envelope: only its sign is used).
    """
    p = np.asarray(particles, dtype=np.float32)
    if p.ndim != 3 or p.shape[1] != p.shape[2]:
        raise CryolibError(f"particles must be (N, B, B) boxes, got shape {p.shape}")
    if not (np.isfinite(pixel_size_A) and pixel_size_A > 0):
        raise CryolibError(f"pixel_size_A={pixel_size_A!r}: give the pixel size in Å (> 0)")
    o = _optics_arrays(optics, len(p))
    if len(p) == 0:
        return p.copy()
    out = np.empty_like(p)
    b = p.shape[-1]
    for key in _optics_groups(o):  # voltage, Cs and amplitude contrast are scalars in ctf_2d
        sel = np.flatnonzero((o["voltage_kV"] == key[0]) & (o["cs_mm"] == key[1]) & (o["amplitude_contrast"] == key[2]))
        ctf = ctf_2d((b, b), float(pixel_size_A), torch.from_numpy(o["defocus_u_um"][sel]).float(),
                     torch.from_numpy(o["defocus_v_um"][sel]).float(),
                     torch.from_numpy(o["astigmatism_angle_deg"][sel]).float(), *key)
        ctf = ctf.reshape(len(sel), b, b // 2 + 1)
        spec = torch.fft.rfft2(torch.from_numpy(p[sel])) * -torch.sign(ctf)
        out[sel] = torch.fft.irfft2(spec, s=(b, b)).numpy()
    return out


def _optics_groups(o: dict[str, np.ndarray]) -> Sequence[tuple[float, float, float]]:
    keys = np.stack([o["voltage_kV"], o["cs_mm"], o["amplitude_contrast"]], axis=1)
    return [tuple(float(v) for v in k) for k in np.unique(keys, axis=0)]
