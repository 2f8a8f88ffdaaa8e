"""Fourier ring correlation of a 2-D estimate against a reference (the 2-D analogue of the FSC).

    FRC(k) = Re Σ_{|q| in ring k} E(q) R*(q) / sqrt(Σ |E(q)|² · Σ |R(q)|²)

over rings of equal width in spatial frequency |q| (cycles/px, 0 < |q| ≤ 0.5; DC left out). Against the
noise-free image of a simulation it says, per spatial frequency, how much of a denoiser's output is
signal: for an estimate = signal + independent white noise of spectral signal-to-noise ratio s,
FRC = sqrt(s / (1 + s)), and an output that carries nothing at some frequency scores 0 there
(a linear filter of the estimate does not change its FRC: each ring is scaled by one number).
Rectangular images are fine: frequencies are in cycles per pixel along each axis.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryolib.core.errors import CryolibError

__all__ = ["fourier_ring_correlation"]


def fourier_ring_correlation(estimate: np.ndarray, reference: np.ndarray, n_rings: int = 16) -> pd.DataFrame:
    """FRC per ring -> DataFrame(ring, low_cycles_per_px, high_cycles_per_px, frc, n_coefficients).

    Ring j holds the Fourier coefficients with j·w < |q| ≤ (j+1)·w, w = 0.5 / ``n_rings`` (cycles/px).
    The rfft half-plane is used, with its two-fold coefficients counted twice, so the sums equal the
    full-plane ones. A ring where either image has no power gets NaN.
    """
    e, r = np.asarray(estimate, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if e.ndim != 2 or e.shape != r.shape or min(e.shape) < 4:
        raise CryolibError(f"FRC needs two 2-D images of one shape, at least 4x4 px; got {e.shape} and {r.shape}")
    if not (np.isfinite(e).all() and np.isfinite(r).all()):
        raise CryolibError("FRC: an image contains NaN or inf")
    if not 1 <= int(n_rings) <= min(e.shape) // 2:
        raise CryolibError(f"n_rings must be in 1..{min(e.shape) // 2} for a {e.shape} image, got {n_rings}")
    fe, fr = np.fft.rfft2(e - e.mean()), np.fft.rfft2(r - r.mean())
    qy = np.fft.fftfreq(e.shape[0])[:, None]
    qx = np.fft.rfftfreq(e.shape[1])[None, :]
    q = np.sqrt(qy**2 + qx**2)
    weight = np.full(fe.shape, 2.0)  # columns other than x = 0 and (even width) Nyquist stand for two
    weight[:, 0] = 1.0
    if e.shape[1] % 2 == 0:
        weight[:, -1] = 1.0
    width = 0.5 / int(n_rings)
    ring = np.ceil(q / width).astype(np.int64) - 1  # q in (j·w, (j+1)·w] -> j; DC -> -1
    keep = (q > 0) & (ring < int(n_rings))
    idx, w = ring[keep], weight[keep]
    cross = np.bincount(idx, weights=w * np.real(fe[keep] * np.conj(fr[keep])), minlength=n_rings)
    pe = np.bincount(idx, weights=w * np.abs(fe[keep]) ** 2, minlength=n_rings)
    pr = np.bincount(idx, weights=w * np.abs(fr[keep]) ** 2, minlength=n_rings)
    count = np.bincount(idx, weights=w, minlength=n_rings)
    with np.errstate(invalid="ignore", divide="ignore"):
        frc = np.where((pe > 0) & (pr > 0), cross / np.sqrt(pe * pr), np.nan)
    j = np.arange(int(n_rings))
    return pd.DataFrame({"ring": j, "low_cycles_per_px": j * width, "high_cycles_per_px": (j + 1) * width,
                         "frc": frc, "n_coefficients": count.astype(np.int64)})
