"""Fourier sub-pixel shifts of images and spectra (used by motion correction and the movie simulator).

Shift convention: shifting an image by ``(dx, dy)`` px moves its content to larger x (columns)
and y (rows): ``out[y + dy, x + dx] = in[y, x]``, which for integer shifts is
``np.roll(image, (dy, dx), axis=(-2, -1))``. Shifts are periodic (Fourier).
"""

from __future__ import annotations

import numpy as np
import torch

from cryolib.core.errors import CryolibError

__all__ = ["phase_ramp", "shift_spectrum", "shift_image"]


def _as_shifts(shifts: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    arr = np.asarray(shifts, dtype=np.float64)
    if arr.size == 0 or arr.shape[-1] != 2:
        raise CryolibError(f"{name} must be (F, 2) (dx, dy) px, got shape {arr.shape}")
    s = torch.as_tensor(arr).reshape(-1, 2)
    if not torch.isfinite(s).all():
        raise CryolibError(f"{name} must be finite (F, 2) (dx, dy) px, got non-finite values")
    return s


def phase_ramp(
    shift_xy_px: np.ndarray | torch.Tensor, ky: torch.Tensor, kx: torch.Tensor
) -> torch.Tensor:
    """Fourier shift factors ``exp(-2πi (kx dx + ky dy))`` ``(F, len(ky), len(kx))``, complex64.

    ``ky``/``kx`` are frequencies in cycles/px (any grid, e.g. a cropped one).
    """
    s = _as_shifts(shift_xy_px, "shift_xy_px")
    # phases in float64 (large shifts × frequencies), the outer product in complex64
    ramp_y = torch.exp(-2j * torch.pi * s[:, 1:2] * ky.double()[None, :]).to(torch.complex64)
    ramp_x = torch.exp(-2j * torch.pi * s[:, 0:1] * kx.double()[None, :]).to(torch.complex64)
    return ramp_y[:, :, None] * ramp_x[:, None, :]  # [F, Hk, Wk]


def shift_spectrum(
    spectrum: torch.Tensor,
    shape: tuple[int, int],
    shift_xy_px: np.ndarray | torch.Tensor,
    blur_xy_px: np.ndarray | torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply shifts (and optional linear motion blur) to rfft2 spectra ``(..., H, W//2+1)``.

    Multiplies by ``exp(-2πi (kx dx + ky dy))`` (k in cycles/px) and, with ``blur_xy_px``
    (the displacement (Δx, Δy) px travelled *during* each frame), by
    ``sinc(kx Δx + ky Δy)``, the transform of a uniform line spread centred on the shift.
    Shifts ``(F, 2)`` broadcast against the leading dimension of ``spectrum``.
    """
    h, w = shape
    ky = torch.fft.fftfreq(h)
    kx = torch.fft.rfftfreq(w)
    phase = phase_ramp(shift_xy_px, ky, kx)  # [F, H, Wk]
    if blur_xy_px is not None:
        b = _as_shifts(blur_xy_px, "blur_xy_px").to(torch.float32)
        arg = b[:, 1, None, None] * ky[None, :, None] + b[:, 0, None, None] * kx[None, None, :]
        phase = phase * torch.sinc(arg)  # [F, H, Wk]
    return spectrum * phase


def shift_image(
    image: np.ndarray | torch.Tensor,
    shift_xy_px: np.ndarray | torch.Tensor,
    blur_xy_px: np.ndarray | torch.Tensor | None = None,
) -> torch.Tensor:
    """Fourier sub-pixel shift of ``(H, W)`` or ``(F, H, W)`` by ``(F, 2)`` shifts → ``(F, H, W)``.

    ``(dx, dy)`` in px move content to larger x/y (integer shifts equal ``np.roll``). A 2-D
    image is shifted by every row of ``shift_xy_px``; a 3-D stack frame-by-frame.
    ``blur_xy_px`` ``(F, 2)`` adds intra-frame linear motion blur (see :func:`shift_spectrum`).
    """
    img = torch.as_tensor(image, dtype=torch.float32)
    if img.ndim not in (2, 3):
        raise CryolibError(f"shift_image needs (H, W) or (F, H, W), got shape {tuple(img.shape)}")
    n_shifts = np.asarray(shift_xy_px).reshape(-1, 2).shape[0]
    if img.ndim == 3 and n_shifts not in (1, img.shape[0]):
        raise CryolibError(f"{img.shape[0]} frames but {n_shifts} shifts; give one (dx, dy) each")
    shape = tuple(img.shape[-2:])
    spec = torch.fft.rfft2(img)
    if spec.ndim == 2:
        spec = spec[None]
    out = shift_spectrum(spec, shape, shift_xy_px, blur_xy_px)
    return torch.fft.irfft2(out, s=shape)
