"""Classical denoisers: cryoSPARC-style low-pass filter (``lowpass``), a best-case Gaussian (``gaussian``)
and a block mean (``blockmean``).

* ``lowpass`` (DRACO §5.2 baseline: "the same protocol used in cryoSPARC ... low-pass cutoff
  resolution to 20 Å"): a soft Fourier cutoff, the Butterworth response
  H(f) = 1/sqrt(1 + (f/f_c)^(2n)) of order n = 8 with f_c = pixel_size_A / resolution_A
  (cycles/px), so H(f_c) = 1/√2 and H(2 f_c) ≈ 0.004. The resolution must be at least 2 px
  (f_c ≤ Nyquist). The image is reflection-padded by two cutoff wavelengths before the FFT so
  the periodic wrap does not mix opposite borders.
* ``gaussian`` (best case, not a method a user could run): a Gaussian blur whose sigma (px) is
  chosen on a grid against the CLEAN image (:func:`best_gaussian_sigma`: the smallest MSE after a
  least-squares affine fit a·blur + b of the blurred image to the clean one). It shows how far a
  perfectly tuned linear filter gets, so a reader sees what learning adds. It needs ``clean=``
  and is not offered by ``cryolib denoise``.
* ``blockmean`` (a reference, not offered by ``cryolib denoise``): every pixel replaced by the mean of
  its ``block_px`` x ``block_px`` block on a grid from the top-left corner (:func:`block_mean`; edge
  blocks are cut by the border and take the mean of the pixels they hold). With ``block_px`` = 16 it is
  a patch network's output when each patch predicts only its own mean: the mosaic of DRACO's patches
  with nothing learned inside them, so a reader sees what DRACO adds to it (Table 2).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from cryolib.core.errors import CryolibError, is_whole_number
from cryolib.denoise.registry import Denoiser, register_denoiser

__all__ = ["LOWPASS_RESOLUTION_A", "BUTTERWORTH_ORDER", "SIGMA_GRID_PX", "lowpass_response", "lowpass_filter",
           "affine_fit_mse", "best_gaussian_sigma", "block_mean", "LowpassDenoiser", "GaussianDenoiser",
           "BlockMeanDenoiser"]

LOWPASS_RESOLUTION_A = 20.0  # DRACO §5.2
BUTTERWORTH_ORDER = 8
#: Gaussian sigmas tried (px); 0 is "no blur".
SIGMA_GRID_PX = (0.0, *np.round(np.geomspace(0.5, 24.0, 23), 3))


def lowpass_response(freq_cycles_per_px: np.ndarray, cutoff_cycles_per_px: float,
                     order: int = BUTTERWORTH_ORDER) -> np.ndarray:
    """Butterworth amplitude response H(f) = 1/sqrt(1 + (f/f_c)^(2·order))."""
    return 1.0 / np.sqrt(1.0 + (np.asarray(freq_cycles_per_px) / cutoff_cycles_per_px) ** (2 * order))


def lowpass_filter(image: np.ndarray, pixel_size_A: float, resolution_A: float = LOWPASS_RESOLUTION_A,
                   order: int = BUTTERWORTH_ORDER) -> np.ndarray:
    """Low-pass a 2-D image at ``resolution_A`` (Å) given ``pixel_size_A`` (Å/px) -> float32 (H, W)."""
    if not (math.isfinite(pixel_size_A) and pixel_size_A > 0):
        raise CryolibError(f"the low-pass filter needs a pixel size > 0 Å/px, got {pixel_size_A}")
    if not (math.isfinite(resolution_A) and resolution_A > 0):
        raise CryolibError(f"the low-pass resolution must be a positive number of Å, got {resolution_A}")
    cutoff = pixel_size_A / resolution_A  # cycles/px
    if cutoff > 0.5:
        raise CryolibError(f"a {resolution_A:g} Å cutoff is finer than Nyquist at {pixel_size_A:g} Å/px "
                           f"(it must be at least 2 px = {2 * pixel_size_A:g} Å)")
    x = np.asarray(image, dtype=np.float64)
    margin = int(math.ceil(2.0 / cutoff))
    mean = x.mean()
    padded = np.pad(x - mean, margin, mode="reflect" if min(x.shape) > 1 else "edge")
    fy = np.fft.fftfreq(padded.shape[0])[:, None]
    fx = np.fft.rfftfreq(padded.shape[1])[None, :]
    response = lowpass_response(np.sqrt(fy**2 + fx**2), cutoff, order)
    out = np.fft.irfft2(np.fft.rfft2(padded) * response, s=padded.shape)
    return (out[margin : margin + x.shape[0], margin : margin + x.shape[1]] + mean).astype(np.float32)


def affine_fit_mse(estimate: np.ndarray, clean: np.ndarray) -> tuple[float, float, float]:
    """Least-squares a, b of a·estimate + b ≈ clean -> (a, b, mean squared residual)."""
    e = np.asarray(estimate, dtype=np.float64).ravel()
    c = np.asarray(clean, dtype=np.float64).ravel()
    e0, c0 = e - e.mean(), c - c.mean()
    var = float(e0 @ e0)
    a = float(e0 @ c0) / var if var > 0 else 0.0
    b = float(c.mean() - a * e.mean())
    return a, b, float(np.mean((c0 - a * e0) ** 2))


def best_gaussian_sigma(image: np.ndarray, clean: np.ndarray,
                        sigmas_px: tuple[float, ...] = SIGMA_GRID_PX) -> tuple[float, float]:
    """(sigma in px, MSE after the affine fit) of the best Gaussian blur of ``image`` against ``clean``."""
    image = np.asarray(image, dtype=np.float64)
    clean = np.asarray(clean, dtype=np.float64)
    if clean.shape != image.shape:
        raise CryolibError(f"the clean image {clean.shape} must have the noisy image's shape {image.shape}")
    if not np.isfinite(clean).all():
        raise CryolibError("the clean image contains NaN or inf pixels")
    if len(sigmas_px) == 0 or any(not (math.isfinite(s) and s >= 0) for s in sigmas_px):
        raise CryolibError(f"sigmas_px must be a non-empty list of numbers >= 0 px, got {sigmas_px}")
    scores = [(affine_fit_mse(_blur(image, s), clean)[2], float(s)) for s in sigmas_px]
    mse, sigma = min(scores)
    return sigma, mse


def block_mean(image: np.ndarray, block_px: int) -> np.ndarray:
    """Each pixel -> the mean of its ``block_px`` x ``block_px`` block (grid from the top-left corner;
    blocks cut by the border average the pixels they hold) -> float32 (H, W)."""
    if not is_whole_number(block_px) or block_px < 1:
        raise CryolibError(f"block_px must be a whole number of pixels >= 1, got {block_px!r}")
    x = np.asarray(image, dtype=np.float64)
    if x.ndim != 2:
        raise CryolibError(f"block_mean needs a 2-D image, got shape {x.shape}")
    b = int(block_px)
    rows, cols = np.arange(x.shape[0]) // b, np.arange(x.shape[1]) // b
    labels = rows[:, None] * (cols[-1] + 1) + cols[None, :]
    sums = np.bincount(labels.ravel(), x.ravel())
    counts = np.bincount(labels.ravel())
    return (sums / counts)[labels].astype(np.float32)


def _blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    return image if sigma_px == 0 else ndimage.gaussian_filter(image, sigma_px, mode="reflect")


@register_denoiser
class LowpassDenoiser(Denoiser):
    """cryoSPARC-style low-pass at 20 Å (DRACO §5.2)."""

    name = "lowpass"
    description = "low-pass filter at 20 Å, soft (Butterworth) cutoff; needs the pixel size"
    needs_pixel_size = True
    options = ("resolution_A",)

    def denoise(self, image: np.ndarray, pixel_size_A: float, state: None, *,
                resolution_A: float = LOWPASS_RESOLUTION_A) -> np.ndarray:
        return lowpass_filter(image, pixel_size_A, resolution_A)


@register_denoiser
class GaussianDenoiser(Denoiser):
    """Best-case Gaussian blur, sigma chosen against the clean image (needs ``clean=``)."""

    name = "gaussian"
    description = "Gaussian blur with sigma chosen against the clean image (best case; needs clean=)"
    on_command_line = False
    options = ("clean", "sigmas_px")

    def denoise(self, image: np.ndarray, pixel_size_A: float, state: None, *, clean: np.ndarray | None = None,
                sigmas_px: tuple[float, ...] = SIGMA_GRID_PX) -> np.ndarray:
        if clean is None:
            raise CryolibError("the gaussian denoiser is a best case: it needs the clean image (clean=...)")
        sigma, _ = best_gaussian_sigma(image, clean, sigmas_px)
        return _blur(np.asarray(image, dtype=np.float64), sigma).astype(np.float32)


@register_denoiser
class BlockMeanDenoiser(Denoiser):
    """Mean over each ``block_px`` block (a reference: a patch network that learned only patch means)."""

    name = "blockmean"
    description = "mean over each block_px x block_px block (reference for patch networks; default 16 px)"
    on_command_line = False
    options = ("block_px",)

    def denoise(self, image: np.ndarray, pixel_size_A: float, state: None, *, block_px: int = 16) -> np.ndarray:
        return block_mean(image, block_px)
