"""Microscope optics: electron wavelength, interaction constant, CTF, detector MTF.

Conventions (used everywhere in cryolib):

* Frequencies are spatial frequencies ``k`` in 1/Å (cycles per Å); Fourier arrays use
  the unshifted FFT layout, ``rfft=True`` giving the half plane ``(H, W // 2 + 1)``.
* Defocus is positive for underfocus (µm). The CTF is the one of ``torch-ctf``::

      CTF(k) = -sin(γ(k)),  γ(k) = -π λ Δf k² + (π/2) Cs λ³ k⁴ - asin(A)

  so ``CTF(0) = +A`` and, in underfocus, the CTF is positive from DC to its first zero.
* Weak-phase image formation (:func:`apply_transfer`): the exit wave is ``exp(iφ)`` with
  ``φ = σ_e · V_projected`` (rad); the recorded intensity, normalised to the flat beam, is::

      I(r) = 1 + contrast(r),  contrast = -2 · IFFT[ FFT(φ) · CTF · E_B · MTF ]

  so a positive phase object in underfocus is *darker* than the background (the usual
  cryo-EM look: dark protein on light ice).
* B-factor envelope: ``E_B(k) = exp(-B k² / 4)`` with B in Å², the amplitude convention of
  crystallography (a Gaussian blur whose image-amplitude falls to 1/2 at ``k = √(4 ln2 / B)``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import constants as C
from torch_ctf import calculate_ctf_2d

from cryolib.core.errors import CryolibError

__all__ = [
    "electron_wavelength_A",
    "interaction_constant",
    "ctf_2d",
    "bfactor_envelope",
    "ctf_zero_frequencies",
    "detector_mtf",
    "apply_transfer",
    "power_spectrum",
    "radial_average",
]

ArrayLike = np.ndarray | torch.Tensor


def electron_wavelength_A(voltage_kV: float) -> float:
    """Relativistic electron wavelength λ (Å) at an acceleration voltage (kV).

    λ = h c / sqrt(eV (2 m₀c² + eV)); 300 kV → 0.019687 Å, 200 kV → 0.025079 Å.
    """
    if voltage_kV <= 0:
        raise CryolibError(f"voltage_kV must be positive, got {voltage_kV}")
    ev = C.elementary_charge * voltage_kV * 1e3
    mc2 = C.electron_mass * C.speed_of_light**2
    return C.Planck * C.speed_of_light / math.sqrt(ev * (2 * mc2 + ev)) * 1e10


def interaction_constant(voltage_kV: float) -> float:
    """Relativistic interaction constant σ_e in rad/(V·Å) (Kirkland 2020, eq. 5.6).

    σ_e = (2π / (λ V)) · (m₀c² + eV) / (2 m₀c² + eV); 300 kV → 6.526e-4, 200 kV → 7.288e-4.
    """
    lam = electron_wavelength_A(voltage_kV)
    volts = voltage_kV * 1e3
    mc2_eV = C.electron_mass * C.speed_of_light**2 / C.elementary_charge
    return 2 * math.pi / (lam * volts) * (mc2_eV + volts) / (2 * mc2_eV + volts)


def _frequency_grid_A(
    shape: tuple[int, int], pixel_size_A: float, rfft: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ky, kx) broadcastable frequency grids in 1/Å for an unshifted (r)FFT layout."""
    h, w = shape
    ky = torch.fft.fftfreq(h, d=pixel_size_A)[:, None]
    kx = (torch.fft.rfftfreq(w, d=pixel_size_A) if rfft else torch.fft.fftfreq(w, d=pixel_size_A))
    return ky, kx[None, :]


def bfactor_envelope(
    shape: tuple[int, int], pixel_size_A: float, b_factor_A2: float, rfft: bool = True
) -> torch.Tensor:
    """Amplitude envelope exp(-B k²/4) (B in Å², k in 1/Å) on the (r)FFT grid, float32."""
    ky, kx = _frequency_grid_A(shape, pixel_size_A, rfft)
    return torch.exp(-float(b_factor_A2) * (ky**2 + kx**2) / 4.0).to(torch.float32)


def ctf_2d(
    shape: tuple[int, int],
    pixel_size_A: float,
    defocus_u_um: float | torch.Tensor,
    defocus_v_um: float | torch.Tensor,
    astigmatism_angle_deg: float | torch.Tensor,
    voltage_kV: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    b_factor_A2: float = 0.0,
    rfft: bool = True,
) -> torch.Tensor:
    """2-D CTF × B-factor envelope on an unshifted (r)FFT grid, float32 ``(..., H, W')``.

    Defocus in µm, positive = underfocus. ``defocus_u_um`` is the defocus along the
    direction at ``astigmatism_angle_deg`` from the +x (column) axis towards +y (rows);
    ``defocus_v_um`` is perpendicular to it. Defocus values may be tensors ``(B,)`` for a
    batch of CTFs. The sign convention is torch-ctf's (module docstring): ``CTF(0) = +A``.
    """
    _check_shape(shape)
    du = torch.as_tensor(defocus_u_um, dtype=torch.float32)
    dv = torch.as_tensor(defocus_v_um, dtype=torch.float32)
    angle = torch.as_tensor(astigmatism_angle_deg, dtype=torch.float32)
    # torch-ctf needs astigmatism >= 0: when v > u, swap the axes (rotate by 90°).
    swap = dv > du
    angle = torch.where(swap, angle + 90.0, angle)
    astig = (du - dv).abs() / 2
    ctf = calculate_ctf_2d(
        defocus=(du + dv) / 2,
        astigmatism=astig,
        astigmatism_angle=angle,
        voltage=float(voltage_kV),
        spherical_aberration=float(cs_mm),
        amplitude_contrast=float(amplitude_contrast),
        phase_shift=0.0,
        pixel_size=float(pixel_size_A),
        image_shape=tuple(shape),
        rfft=rfft,
        fftshift=False,
    )
    if b_factor_A2:
        ctf = ctf * bfactor_envelope(shape, pixel_size_A, b_factor_A2, rfft)
    return ctf.to(torch.float32)


def ctf_zero_frequencies(
    n_zeros: int,
    defocus_um: float,
    voltage_kV: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
) -> np.ndarray:
    """Spatial frequencies (1/Å) of the first ``n_zeros`` CTF zeros (underfocus only).

    The CTF ``sin(π λ Δf k² - (π/2) Cs λ³ k⁴ + asin A)`` vanishes where the argument is
    ``nπ`` (n = 1, 2, …). With u = k² this is the quadratic ``a u² - b u + c_n = 0``,
    a = π Cs λ³ / 2, b = π λ Δf, c_n = nπ - asin A, whose smaller root (the rising branch of
    the phase) is u = 2 c_n / (b + sqrt(b² - 4 a c_n)) (cancellation-free form).
    """
    if defocus_um <= 0:
        raise CryolibError(
            f"ctf_zero_frequencies needs underfocus (defocus_um > 0), got {defocus_um}"
        )
    if not 0 <= amplitude_contrast < 1:
        raise CryolibError(f"amplitude_contrast must be in [0, 1), got {amplitude_contrast}")
    lam = electron_wavelength_A(voltage_kV)
    a = math.pi / 2 * cs_mm * 1e7 * lam**3
    b = math.pi * lam * defocus_um * 1e4
    c = np.arange(1, int(n_zeros) + 1) * math.pi - math.asin(amplitude_contrast)
    disc = b**2 - 4 * a * c
    if np.any(disc < 0):
        raise CryolibError(
            f"only {int(np.sum(disc >= 0))} zeros exist on the rising branch of the CTF phase "
            f"for defocus {defocus_um} µm and Cs {cs_mm} mm; ask for fewer zeros"
        )
    return np.sqrt(2 * c / (b + np.sqrt(disc)))


def detector_mtf(
    shape: tuple[int, int], kind: str = "counting", rfft: bool = True
) -> torch.Tensor:
    """Detector MTF on an unshifted (r)FFT grid, float32 in [0, 1], 1 at DC.

    ``"counting"``: the square-pixel aperture of an ideal electron-counting detector,
    MTF = sinc(kx) · sinc(ky) with k in cycles/px and sinc(x) = sin(πx)/(πx); it is 2/π ≈ 0.64
    at Nyquist along an axis, close to measured K2/K3 counting-mode MTFs at low dose rate
    (McMullan et al. 2014). ``"ideal"``: 1 everywhere.
    """
    _check_shape(shape)
    if kind == "ideal":
        return torch.ones(shape[0], shape[1] // 2 + 1 if rfft else shape[1])
    if kind != "counting":
        raise CryolibError(f"unknown detector MTF kind {kind!r}; use 'counting' or 'ideal'")
    ky, kx = _frequency_grid_A(shape, 1.0, rfft)  # cycles/px
    return (torch.sinc(ky) * torch.sinc(kx)).to(torch.float32)


def apply_transfer(
    projected_phase_rad: ArrayLike,
    ctf: torch.Tensor,
    mtf: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weak-phase image contrast ``-2 · IFFT[FFT(φ) · CTF · MTF]`` (intensity I = 1 + contrast).

    ``projected_phase_rad`` is ``(..., H, W)`` (φ = σ_e · projected potential). ``ctf`` and
    ``mtf`` are on the rfft grid ``(H, W//2+1)`` or the full grid ``(H, W)`` (as from
    :func:`ctf_2d` / :func:`detector_mtf`). Underfocus makes a positive φ darker.
    """
    phi = torch.as_tensor(projected_phase_rad, dtype=torch.float32)
    if phi.ndim < 2:
        raise CryolibError(f"projected phase must be (..., H, W), got shape {tuple(phi.shape)}")
    h, w = phi.shape[-2:]
    transfer = ctf if mtf is None else ctf * mtf
    if transfer.shape[-2:] == (h, w // 2 + 1):
        spec = torch.fft.rfft2(phi) * transfer
        return (-2.0 * torch.fft.irfft2(spec, s=(h, w))).to(torch.float32)
    if transfer.shape[-2:] == (h, w):
        spec = torch.fft.fft2(phi) * transfer
        return (-2.0 * torch.fft.ifft2(spec).real).to(torch.float32)
    raise CryolibError(
        f"CTF shape {tuple(transfer.shape)} does not match image shape {(h, w)} "
        f"(expected {(h, w // 2 + 1)} for rfft or {(h, w)} for full FFT)"
    )


def power_spectrum(image: ArrayLike) -> np.ndarray:
    """Power spectrum |FFT(image - mean)|² / (H·W), centred (DC at [H//2, W//2]), float64."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim < 2:
        raise CryolibError(f"power_spectrum needs (..., H, W), got shape {img.shape}")
    img = img - img.mean(axis=(-2, -1), keepdims=True)
    ps = np.abs(np.fft.fft2(img)) ** 2 / (img.shape[-1] * img.shape[-2])
    return np.fft.fftshift(ps, axes=(-2, -1))


def radial_average(
    ps: np.ndarray, pixel_size_A: float, n_bins: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rotational average of a centred power spectrum ``(H, W)`` out to Nyquist.

    Returns ``(freq_per_A, values)``: ring j holds the pixels with |k| in
    ``[(j - 1/2) Δ, (j + 1/2) Δ)``, ``Δ = Nyquist / n_bins`` (default ``n_bins = min(H, W) // 2``),
    and ``freq_per_A[j] = j Δ`` (ring 0 is DC). Frequencies at or beyond Nyquist are ignored.
    """
    ps = np.asarray(ps, dtype=np.float64)
    if ps.ndim != 2:
        raise CryolibError(f"radial_average needs a 2-D spectrum, got shape {ps.shape}")
    h, w = ps.shape
    n_bins = n_bins or min(h, w) // 2
    ky = np.fft.fftshift(np.fft.fftfreq(h, d=pixel_size_A))[:, None]
    kx = np.fft.fftshift(np.fft.fftfreq(w, d=pixel_size_A))[None, :]
    k = np.sqrt(ky**2 + kx**2).ravel()
    nyquist = 0.5 / pixel_size_A
    idx = np.floor(k / nyquist * n_bins + 0.5).astype(np.int64)
    keep = idx < n_bins
    sums = np.bincount(idx[keep], weights=ps.ravel()[keep], minlength=n_bins)
    counts = np.bincount(idx[keep], minlength=n_bins)
    freqs = np.arange(n_bins) * nyquist / n_bins
    return freqs, sums / np.maximum(counts, 1)


def _check_shape(shape: tuple[int, int]) -> None:
    if len(shape) != 2 or min(shape) < 1:
        raise CryolibError(f"shape must be (H, W) with positive sizes, got {shape}")
