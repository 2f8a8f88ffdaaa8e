"""Fourier shell correlation between two half-maps and the resolution at a threshold (DRACO Tables 1 and 3).

The gold-standard FSC (Rosenthal & Henderson 2003): two maps reconstructed from disjoint halves of the
particles are compared shell by shell in Fourier space,

    FSC(k) = Re Σ_{|q| in shell k} F1(q) F2*(q) / sqrt(Σ |F1(q)|² · Σ |F2(q)|²),

and the resolution is where the curve first falls below 0.143. Shells are one Fourier voxel wide:
shell ``s`` holds the voxels whose radius ``|q|·D`` (voxels) rounds to ``s``, from 0 (DC) to ``D // 2``
(Nyquist, 2 × pixel size). The masks that remove solvent noise before the FFT are soft spheres
(:func:`soft_sphere_mask`); no phase-randomisation correction of the mask's own correlation is applied.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cryolib.core.errors import CryolibError

__all__ = ["FSC_THRESHOLD", "fourier_shell_correlation", "resolution_at", "soft_sphere_mask"]

FSC_THRESHOLD = 0.143  # gold-standard half-map threshold (Rosenthal & Henderson 2003)


def _check_maps(map1: np.ndarray, map2: np.ndarray, pixel_size_A: float) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(map1, dtype=np.float64), np.asarray(map2, dtype=np.float64)
    if a.ndim != 3 or len(set(a.shape)) != 1 or a.shape[0] < 4:
        raise CryolibError(f"FSC needs cubic (D, D, D) maps with D >= 4, got shape {a.shape}")
    if b.shape != a.shape:
        raise CryolibError(f"FSC needs two maps of the same shape, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise CryolibError("FSC maps contain NaN/Inf voxels")
    if not (np.isfinite(pixel_size_A) and pixel_size_A > 0):
        raise CryolibError(f"pixel_size_A={pixel_size_A!r}: give the voxel size in Å (> 0)")
    return a, b


def _shell_index(d: int) -> np.ndarray:
    """Shell of every voxel of a ``(D, D, D // 2 + 1)`` rfft grid: ``round(|q| · D)``."""
    qz = np.fft.fftfreq(d)[:, None, None]
    qy = np.fft.fftfreq(d)[None, :, None]
    qx = np.fft.rfftfreq(d)[None, None, :]
    return np.rint(np.sqrt(qz**2 + qy**2 + qx**2) * d).astype(np.int64)


def _half_space_weights(d: int) -> np.ndarray:
    """rfft columns other than x = 0 and (even D) x = Nyquist stand for two voxels of the full grid."""
    w = np.full(d // 2 + 1, 2.0)
    w[0] = 1.0
    if d % 2 == 0:
        w[-1] = 1.0
    return w[None, None, :]


def fourier_shell_correlation(map1: np.ndarray, map2: np.ndarray, pixel_size_A: float) -> pd.DataFrame:
    """FSC of two ``(D, D, D)`` maps, one row per shell 0 … D // 2.

    Columns: ``shell`` (voxels), ``frequency_per_A`` (shell / (D · pixel size), 1/Å), ``resolution_A``
    (1 / frequency, Å; inf at DC), ``fsc`` (0 where a map has no power in the shell) and ``n_voxels``
    (Fourier voxels of the full grid in the shell). Mask the maps first if solvent should not count.
    """
    a, b = _check_maps(map1, map2, pixel_size_A)
    d = a.shape[0]
    f1, f2 = np.fft.rfftn(a), np.fft.rfftn(b)
    shell = _shell_index(d)
    w = np.broadcast_to(_half_space_weights(d), shell.shape)
    keep = shell <= d // 2
    idx, wk = shell[keep], w[keep]
    n = d // 2 + 1
    cross = np.bincount(idx, weights=wk * (f1 * np.conj(f2)).real[keep], minlength=n)
    p1 = np.bincount(idx, weights=wk * (np.abs(f1) ** 2)[keep], minlength=n)
    p2 = np.bincount(idx, weights=wk * (np.abs(f2) ** 2)[keep], minlength=n)
    count = np.bincount(idx, weights=wk, minlength=n)
    den = np.sqrt(p1 * p2)
    fsc = np.divide(cross, den, out=np.zeros(n), where=den > 0)
    s = np.arange(n)
    freq = s / (d * float(pixel_size_A))
    with np.errstate(divide="ignore"):
        res = np.where(s > 0, 1.0 / np.where(freq > 0, freq, 1.0), np.inf)
    return pd.DataFrame({"shell": s, "frequency_per_A": freq, "resolution_A": res, "fsc": np.clip(fsc, -1.0, 1.0),
                         "n_voxels": count.astype(np.int64)})


def resolution_at(fsc_table: pd.DataFrame, threshold: float = FSC_THRESHOLD) -> float:
    """Resolution (Å) where the FSC first falls below ``threshold``.

    Scans from shell 1; at the first shell ``i`` with ``fsc < threshold`` the frequency is interpolated
    linearly between shells ``i - 1`` and ``i`` and inverted. The DC shell counts as 1 (it holds only the
    maps' means, whose correlation says nothing about resolution), so a curve already below the threshold
    at shell 1 gives a finite resolution beyond the box size. When the curve never crosses, the Nyquist
    resolution (the last shell's, 2 × pixel size) is returned: the data support at least that, and the map
    cannot show more.
    """
    need = {"frequency_per_A", "fsc"}
    if not isinstance(fsc_table, pd.DataFrame) or not need <= set(fsc_table.columns) or len(fsc_table) < 2:
        raise CryolibError("resolution_at needs a fourier_shell_correlation table (frequency_per_A, fsc; >= 2 shells)")
    if not -1.0 < threshold < 1.0:
        raise CryolibError(f"FSC threshold {threshold} must lie in (-1, 1)")
    f = fsc_table["frequency_per_A"].to_numpy(float)
    c = fsc_table["fsc"].to_numpy(float).copy()
    c[0] = 1.0
    below = np.flatnonzero(c[1:] < threshold) + 1
    if len(below) == 0:
        return float(1.0 / f[-1])
    i = int(below[0])
    t = (c[i - 1] - threshold) / (c[i - 1] - c[i])  # c[i - 1] >= threshold > c[i]
    freq = f[i - 1] + t * (f[i] - f[i - 1])
    return float(1.0 / freq) if freq > 0 else math.inf


def soft_sphere_mask(box_px: int, radius_px: float, edge_px: float = 4.0) -> np.ndarray:
    """``(D, D, D)`` float32 mask centred at voxel ``D // 2``: 1 within ``radius_px``, a raised-cosine fall to 0
    over the next ``edge_px`` voxels (0 = hard edge), 0 beyond."""
    d = int(box_px)
    if d < 4 or not (radius_px > 0 and edge_px >= 0):
        raise CryolibError(f"soft_sphere_mask(box_px={box_px}, radius_px={radius_px}, edge_px={edge_px}): "
                           "need box >= 4 px, radius > 0 and edge >= 0 (px)")
    c = np.arange(d) - d // 2
    r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    if edge_px == 0:
        return (r <= radius_px).astype(np.float32)
    t = np.clip((r - radius_px) / edge_px, 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)
