"""Weighted back-projection (WBP) of single-axis tilt series: the tomograms of DRACO Figure 8 (Appendix B).

Geometry: :mod:`cryolib.simulate.tilt_series` (one convention, imported, not rewritten). The tilt axis is
+y (image rows stay rows); a voxel at (x, y, z) px from the volume centre ``(Z//2, Y//2, X//2)`` lands at
``x' = T₀₀ x + T₀₂ z = x cos θ + z sin θ`` (px from column ``W//2``) in the tilt of angle θ, with
``T = tilt_rotation_matrices(θ)``. Volumes are ``(Z, Y, X)``.

1. **R-weighting** (:func:`r_weight_filter`, :func:`weight_tilts`): each tilt, its mean removed, is
   zero-padded along x to ≥ 2W and filtered along x only (perpendicular to the tilt axis) by the
   ramp |k| (k in cycles/px) times an apodisation. The ramp is the discrete Ram-Lak filter built in
   real space (Kak & Slaney 1988, eq. 61: h[0] = 1/4, h[odd n] = −1/(π n)², h[even n] = 0), whose
   spectrum is |k| with the right small DC term instead of 0. Apodisations, with
   ``k_c = cutoff × 0.5`` cycles/px and zero beyond k_c: ``"none"`` (1), ``"cosine"``
   (cos(π k / 2k_c), the "Shepp-Logan-like" roll-off, the default) and ``"hann"`` (cos²(π k / 2k_c)).
2. **Back-projection** (:func:`back_project`): every voxel adds, for every tilt, the filtered tilt
   linearly interpolated at x' (same row y), times the tilt's angular weight Δθ (rad,
   :func:`angular_weights`); a voxel whose x' falls outside a tilt gets nothing from it.

With these weights the sum approximates the filtered back-projection integral f = ∫ Q_θ dθ, so a
full ±90° series of line integrals (value × px) returns the values themselves (a projected potential
in V·px gives V). A ±60° series samples only Fourier directions within 60° of the x axis in the
x-z plane: the missing wedge around k_z elongates objects along z and draws the stripes of Figure 8.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from cryolib.core.errors import CryolibError
from cryolib.simulate.tilt_series import tilt_rotation_matrices

__all__ = ["APODISATIONS", "r_weight_filter", "angular_weights", "weight_tilts", "back_project",
           "weighted_back_projection"]

log = logging.getLogger(__name__)

APODISATIONS = ("none", "cosine", "hann")


def _check_series(tilts: np.ndarray | torch.Tensor, angles_deg: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """(tilts as float32 (n, H, W), angles (n,)) or a :class:`CryolibError` naming what is wrong."""
    t = torch.as_tensor(np.asarray(tilts, dtype=np.float32) if not isinstance(tilts, torch.Tensor) else tilts)
    t = t.to(torch.float32)
    if t.ndim != 3 or t.shape[0] == 0 or min(t.shape[1:]) < 2:
        raise CryolibError(f"a tilt series must be a non-empty (n, H, W) stack, got shape {tuple(t.shape)}")
    angles = np.asarray(angles_deg, dtype=np.float64)
    if angles.shape != (t.shape[0],):
        raise CryolibError(f"{t.shape[0]} tilts but angles of shape {angles.shape}: give one angle (degrees) per tilt")
    if not np.isfinite(angles).all() or (np.abs(angles) > 90.0).any():
        raise CryolibError(f"tilt angles must be finite and within ±90°, got {angles.min():g} … {angles.max():g}")
    if not torch.isfinite(t).all():
        raise CryolibError("the tilt series contains NaN or inf pixels")
    return t, angles


def r_weight_filter(n_freq: int, padded_px: int, apodisation: str = "cosine", cutoff: float = 1.0) -> torch.Tensor:
    """The R-weighting filter on the rfft grid of a ``padded_px``-long line: ``(n_freq,)`` float32 (step 1 above)."""
    if apodisation not in APODISATIONS:
        raise CryolibError(f"unknown apodisation {apodisation!r}; choose one of {', '.join(APODISATIONS)}")
    if not 0 < cutoff <= 1:
        raise CryolibError(f"cutoff={cutoff}: give the filter's cutoff as a fraction of Nyquist in (0, 1]")
    n = torch.fft.fftfreq(padded_px, d=1.0 / padded_px, dtype=torch.float64)  # integer offsets 0, 1, …, −1
    h = torch.where(n.remainder(2) == 1, -1.0 / (math.pi * n) ** 2, torch.zeros_like(n))
    h[0] = 0.25
    ramp = torch.fft.rfft(h).real[:n_freq]  # ≈ |k| (cycles/px)
    k = torch.fft.rfftfreq(padded_px, dtype=torch.float64)[:n_freq]
    kc = 0.5 * cutoff
    x = (math.pi / 2.0) * (k / kc).clamp(max=1.0)
    window = {"none": torch.ones_like(k), "cosine": torch.cos(x), "hann": torch.cos(x) ** 2}[apodisation]
    return (ramp * window * (k <= kc)).to(torch.float32)


def angular_weights(angles_deg: np.ndarray) -> np.ndarray:
    """Δθ (rad) per tilt: half the distance between its neighbours; an end tilt takes its one spacing.

    For evenly spaced tilts every weight is the step; a single tilt gets 1.
    """
    angles = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    if len(angles) < 2:
        return np.ones(len(angles))
    order = np.argsort(angles, kind="stable")
    a = angles[order]
    gaps = np.diff(a)
    sorted_w = np.empty(len(a))
    sorted_w[1:-1] = (gaps[:-1] + gaps[1:]) / 2.0
    sorted_w[0], sorted_w[-1] = gaps[0], gaps[-1]
    out = np.empty(len(a))
    out[order] = sorted_w
    return out


def weight_tilts(tilts: np.ndarray | torch.Tensor, apodisation: str = "cosine", cutoff: float = 1.0) -> torch.Tensor:
    """R-weighted tilts ``(n, H, W)`` float32: mean removed, padded along x to ≥ 2W, filtered along x, cropped."""
    t = torch.as_tensor(np.asarray(tilts, dtype=np.float32)) if not isinstance(tilts, torch.Tensor) else tilts.float()
    w = t.shape[-1]
    padded = 2 ** math.ceil(math.log2(2 * w))
    filt = r_weight_filter(padded // 2 + 1, padded, apodisation, cutoff)
    centred = t - t.mean(dim=(-2, -1), keepdim=True)
    spec = torch.fft.rfft(centred, n=padded, dim=-1) * filt
    return torch.fft.irfft(spec, n=padded, dim=-1)[..., :w].contiguous()


def back_project(weighted: np.ndarray | torch.Tensor, angles_deg: np.ndarray, depth_px: int) -> np.ndarray:
    """Back-project R-weighted tilts ``(n, H, W)`` into a ``(depth_px, H, W)`` float32 volume (step 2 above)."""
    t, angles = _check_series(weighted, angles_deg)
    if int(depth_px) < 1:
        raise CryolibError(f"depth_px={depth_px}: the tomogram needs at least one slice")
    n, h, w = t.shape
    rot = tilt_rotation_matrices(angles)
    if not np.allclose(rot[:, 1], [0.0, 1.0, 0.0]):  # pragma: no cover - the convention is single-axis by construction
        raise CryolibError("back_project handles single-axis tilts about y only")
    dtheta = angular_weights(angles)
    x = torch.arange(w, dtype=torch.float64) - w // 2
    z = torch.arange(int(depth_px), dtype=torch.float64)[:, None] - int(depth_px) // 2
    out = torch.zeros(h, int(depth_px) * w, dtype=torch.float32)  # [Y, Z·X]
    for i in tqdm(range(n), desc="back-projecting", leave=False, disable=n < 8):
        xp = rot[i, 0, 0] * x[None, :] + rot[i, 0, 2] * z + w // 2  # [Z, X] position in the tilt (px)
        i0 = torch.floor(xp)
        frac = (xp - i0).float().reshape(-1)
        i0 = i0.long().reshape(-1)
        for idx, wt in ((i0, 1.0 - frac), (i0 + 1, frac)):
            inside = (idx >= 0) & (idx < w)
            vals = t[i].index_select(1, idx.clamp(0, w - 1))  # [Y, Z·X]
            out.add_(vals * (wt * inside) * float(dtheta[i]))
    return out.reshape(h, int(depth_px), w).permute(1, 0, 2).contiguous().numpy()


def weighted_back_projection(tilts: np.ndarray | torch.Tensor, angles_deg: np.ndarray, depth_px: int,
                             apodisation: str = "cosine", cutoff: float = 1.0) -> np.ndarray:
    """Tomogram ``(depth_px, H, W)`` float32 of a single-axis tilt series ``(n, H, W)`` at ``angles_deg`` (degrees).

    R-weighting (:func:`weight_tilts`) then back-projection (:func:`back_project`); units: the tilts'
    units per pixel (line integrals in V·px give V).
    """
    t, angles = _check_series(tilts, angles_deg)
    return back_project(weight_tilts(t, apodisation, cutoff), angles, depth_px)
