"""Cryo-EMMAE micrograph preprocessing (paper §3.1; reference/cryoemmae.md §1).

The chain, in the repository's order (filter first, resize last):
:func:`scheres_normalize` -> :func:`wiener_filter` -> :func:`clahe` -> :func:`guided_filter`
-> :func:`resize`. :func:`cryoemmae_preprocess` runs all of it and returns the working image
in [0, 1] with the scale factors that map picks back to the input micrograph.

Images are float32 ``(H, W)``; sizes are in px of the image passed in. Coordinates use the
pixel-centre convention of OpenCV's resize: ``x_work = (x_in + 0.5) * sx - 0.5``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from scipy.signal import fftconvolve

from cryolib.core.errors import CryolibError

log = logging.getLogger(__name__)

#: Working-scale particle diameter (px) of the "diameter" scale mode. The paper's 14 sets have
#: d at 1024 px of 23-58 px (median 43); 40 keeps that regime and is ~15% cheaper to encode.
DEFAULT_TARGET_DIAMETER_PX = 40.0
#: Working side (px) of the paper's "fixed" scale mode (§3.1: "resized to 1024x1024").
DEFAULT_TARGET_SIZE = 1024


# --------------------------------------------------------------------------- checks
def check_image(image: np.ndarray, name: str = "micrograph") -> np.ndarray:
    """Return ``image`` as float32 (H, W); raise :class:`CryolibError` if not 2-D or not finite."""
    arr = np.asarray(image)
    if arr.ndim != 2 or min(arr.shape) < 2:
        raise CryolibError(f"{name} must be a 2-D (H, W) array with H, W >= 2; got shape {arr.shape}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        n_bad = int((~np.isfinite(arr)).sum())
        raise CryolibError(f"{name} has {n_bad} non-finite pixels (NaN/inf); fix or mask them before picking")
    return arr


def check_diameter(diameter_px: float) -> float:
    """Return the particle diameter (px) as float; raise :class:`CryolibError` unless finite and > 0."""
    try:
        d = float(diameter_px)
    except (TypeError, ValueError):
        raise CryolibError(f"particle diameter must be a number of px; got {diameter_px!r}") from None
    if not np.isfinite(d) or d <= 0:
        raise CryolibError(f"particle diameter must be a finite number of px > 0; got {diameter_px!r}")
    return d


def minmax01(image: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1] (a constant image becomes zeros); float32."""
    lo, hi = float(image.min()), float(image.max())
    if hi - lo <= 0:
        return np.zeros(image.shape, np.float32)
    return ((image - lo) / (hi - lo)).astype(np.float32)


def _odd(n: float, minimum: int = 1) -> int:
    """Nearest integer >= ``minimum``, rounded up to odd so a window has a centre pixel."""
    k = max(int(round(n)), minimum)
    return k if k % 2 else k + 1


# --------------------------------------------------------------------------- steps
def background_kernel(diameter_px: float) -> np.ndarray:
    """d x d mask (float64) of the pixels outside the square's inscribed circle (the 4 corners).

    d is rounded to an odd number of px (>= 5) so the window is centred on its pixel.
    """
    d = _odd(diameter_px, 5)
    r = np.arange(d) - (d - 1) / 2
    rr = np.hypot(r[:, None], r[None, :])
    return (rr > d / 2).astype(np.float64)


def scheres_normalize(image: np.ndarray, diameter_px: float, repo_minmax: bool = False) -> np.ndarray:
    """Local background normalisation (Scheres 2015, RELION; Cryo-EMMAE §3.1).

    At every pixel the mean and std are taken over the pixels of the d x d square centred there
    that lie outside its inscribed circle (d = particle diameter, px), by FFT convolution; the
    output is ``(x - mean) / std``: background noise of zero mean and unit std.
    Borders: the image is mirror-padded by d/2 (numpy "reflect") before the convolution,
    whereas the repository's FFT correlation wraps around the opposite edge.
    A window larger than the image is shrunk to the image's shorter side.
    ``repo_minmax=True`` rescales the result to [0, 1], as the repository saves it.
    """
    x = check_image(image).astype(np.float64)
    d = check_diameter(diameter_px)
    kernel = background_kernel(min(d, min(x.shape) - 1))
    pad = kernel.shape[0] // 2
    xp = np.pad(x, pad, mode="reflect")
    n = kernel.sum()
    mean = fftconvolve(xp, kernel, mode="valid") / n
    mean_sq = fftconvolve(xp * xp, kernel, mode="valid") / n
    var = np.maximum(mean_sq - mean * mean, 0.0)
    floor = max(1e-12, 1e-6 * float(x.std()))  # flat regions: avoid dividing by ~0
    out = ((x - mean) / np.maximum(np.sqrt(var), floor)).astype(np.float32)
    return minmax01(out) if repo_minmax else out


def gaussian_psf(size: int = 9, sigma_px: float = 3.0) -> np.ndarray:
    """``size`` x ``size`` Gaussian point-spread function of std ``sigma_px`` (px), summing to 1."""
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (r / max(sigma_px, 1e-6)) ** 2)
    psf = np.outer(g, g)
    return psf / psf.sum()


def wiener_filter(image: np.ndarray, psf_sigma_px: float = 3.0, psf_size: int = 9, k: float = 30.0,
                  repo_shift: bool = False) -> np.ndarray:
    """Wiener deconvolution with a Gaussian PSF: ``conj(H) / (|H|^2 + k)`` (Cryo-EMMAE §3.1).

    The repository's values: 9 x 9 PSF, sigma 3 px, k = 30. Since |H|^2 <= 1 << k this is in
    effect a Gaussian blur scaled by ~1/(1 + k); the output is in the input's units times that.
    Default: the PSF is centred on the origin (no shift), the image mirror-padded by
    ``psf_size // 2`` px, and the real part returned. ``repo_shift=True`` reproduces the
    repository: PSF at the array corner (output shifted by ``psf_size // 2`` px), circular
    borders, and the magnitude of the inverse FFT.
    """
    x = check_image(image).astype(np.float64)
    psf = gaussian_psf(psf_size, psf_sigma_px)
    pad = 0 if repo_shift else psf_size // 2
    xp = np.pad(x, pad, mode="reflect") if pad else x
    h_arr = np.zeros(xp.shape)
    h_arr[:psf_size, :psf_size] = psf
    if not repo_shift:  # move the PSF centre to pixel (0, 0)
        h_arr = np.roll(h_arr, (-(psf_size // 2), -(psf_size // 2)), axis=(0, 1))
    h_f = np.fft.rfft2(h_arr)
    out = np.fft.irfft2(np.fft.rfft2(xp) * np.conj(h_f) / (np.abs(h_f) ** 2 + k), s=xp.shape)
    if repo_shift:
        return np.abs(out).astype(np.float32)
    return out[pad:pad + x.shape[0], pad:pad + x.shape[1]].astype(np.float32)


def clahe(image: np.ndarray, clip_limit: float = 2.0, tile_grid: int = 16) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (OpenCV; Cryo-EMMAE §3.1).

    The image is min-max scaled to uint8, equalised on a ``tile_grid`` x ``tile_grid`` grid of
    tiles with ``clip_limit``, and returned as float32 in [0, 1].
    """
    u8 = np.rint(minmax01(check_image(image)) * 255).astype(np.uint8)
    eq = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(int(tile_grid), int(tile_grid))).apply(u8)
    return eq.astype(np.float32) / 255.0


def guided_filter(image: np.ndarray, guide: np.ndarray, radius: int = 20, eps: float = 0.1) -> np.ndarray:
    """Guided filter (He et al. 2010) with box means (Cryo-EMMAE §3.1).

    ``radius`` is the box SIDE in px, as in the repository (``cv2.boxFilter`` of radius x radius),
    not He et al.'s 2r + 1; an even side is rounded up to odd so the box is centred (20 -> 21).
    ``eps`` is the regularisation in the guide's squared units; the repository's eps = 0.1
    assumes images in [0, 1]. Borders: mirror (OpenCV's default, reflect-101).
    Output: ``mean(a) * guide + mean(b)`` with ``a = cov(guide, image) / (var(guide) + eps)``.
    """
    p = check_image(image, "guided-filter input").astype(np.float32)
    g = check_image(guide, "guided-filter guide").astype(np.float32)
    if p.shape != g.shape:
        raise CryolibError(f"guided filter: image {p.shape} and guide {g.shape} differ in shape")
    side = _odd(radius, 1)

    def box(a: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(a, -1, (side, side), normalize=True, borderType=cv2.BORDER_REFLECT_101)

    mean_g, mean_p = box(g), box(p)
    var_g = box(g * g) - mean_g * mean_g
    cov_gp = box(g * p) - mean_g * mean_p
    a = cov_gp / (var_g + float(eps))
    b = mean_p - a * mean_g
    return (box(a) * g + box(b)).astype(np.float32)


def resize(image: np.ndarray, size_or_scale: int | float | tuple[int, int]) -> tuple[np.ndarray, tuple[float, float]]:
    """Resize; return the image and ``(sx, sy)``: output px per input px along x and y.

    ``size_or_scale``: an ``int`` is a square side (px), a ``(height, width)`` tuple an output
    shape (px), a ``float`` a scale factor for both axes. INTER_AREA when either axis shrinks,
    bicubic when both grow. The factors are exact (output size / input size), so
    ``x_out = (x_in + 0.5) * sx - 0.5`` (see :func:`map_coords`).
    """
    img = check_image(image)
    h, w = img.shape
    if isinstance(size_or_scale, (tuple, list)):
        out_h, out_w = (int(v) for v in size_or_scale)
    elif isinstance(size_or_scale, (int, np.integer)):
        out_h = out_w = int(size_or_scale)
    else:
        scale = float(size_or_scale)
        if not np.isfinite(scale) or scale <= 0:
            raise CryolibError(f"resize scale must be finite and > 0; got {size_or_scale!r}")
        out_h, out_w = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    if out_h < 1 or out_w < 1:
        raise CryolibError(f"resize target must be >= 1 px; got {(out_h, out_w)}")
    if (out_h, out_w) == (h, w):
        return img.copy(), (1.0, 1.0)
    interp = cv2.INTER_AREA if (out_h < h or out_w < w) else cv2.INTER_CUBIC
    out = cv2.resize(img, (out_w, out_h), interpolation=interp)
    return out.astype(np.float32), (out_w / w, out_h / h)


def map_coords(x: np.ndarray, y: np.ndarray, scale_xy: tuple[float, float],
               inverse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Map (x, y) px through a resize of factors ``scale_xy`` (pixel-centre convention).

    ``inverse=True`` maps resized px back to the original image.
    """
    sx, sy = scale_xy
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if inverse:
        return (x + 0.5) / sx - 0.5, (y + 0.5) / sy - 0.5
    return (x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5


# --------------------------------------------------------------------------- whole chain
@dataclass
class PreprocessResult:
    """Output of :func:`cryoemmae_preprocess`.

    ``image``: float32 working image in [0, 1]; ``scale_xy``: working px per input px (x, y);
    ``input_shape``: (H, W) of the input; ``diameter_px_working``: particle diameter in working px
    (geometric mean over the axes when the scale is anisotropic); ``filter_scale``: the scale
    (<= 1) the filters ran at, relative to the input; ``stages``: intermediate images if kept.
    """

    image: np.ndarray
    scale_xy: tuple[float, float]
    input_shape: tuple[int, int]
    diameter_px_working: float
    filter_scale: float = 1.0
    stages: dict[str, np.ndarray] = field(default_factory=dict)

    def to_input(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Working-image px -> input-micrograph px."""
        return map_coords(x, y, self.scale_xy, inverse=True)

    def to_working(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Input-micrograph px -> working-image px."""
        return map_coords(x, y, self.scale_xy)


def working_shape(shape: tuple[int, int], diameter_px: float, working_scale: float | None = None,
                  target_size: int | None = None, scale_mode: str | None = None,
                  target_diameter_px: float = DEFAULT_TARGET_DIAMETER_PX) -> tuple[int, int]:
    """(H, W) of the working image for an input of ``shape`` (see :func:`cryoemmae_preprocess`)."""
    h, w = shape
    if working_scale is not None:
        s = float(working_scale)
        if not np.isfinite(s) or s <= 0:
            raise CryolibError(f"working_scale must be finite and > 0; got {working_scale!r}")
        return max(1, int(round(h * s))), max(1, int(round(w * s)))
    mode = scale_mode or ("fixed" if target_size is not None else "diameter")
    if mode == "fixed":
        side = int(target_size or DEFAULT_TARGET_SIZE)
        if side < 1:
            raise CryolibError(f"target_size must be >= 1 px; got {target_size!r}")
        return side, side
    if mode == "diameter":
        if target_size is not None:
            raise CryolibError("target_size applies only to scale_mode='fixed'; use target_diameter_px")
        s = check_diameter(target_diameter_px) / check_diameter(diameter_px)
        return max(1, int(round(h * s))), max(1, int(round(w * s)))
    raise CryolibError(f"unknown scale_mode {scale_mode!r}; choose 'diameter' or 'fixed'")


def standardized_working_image(image: np.ndarray, diameter_px: float, *,
                               target_diameter_px: float = DEFAULT_TARGET_DIAMETER_PX) -> PreprocessResult:
    """DRACO's input (methods.md, denoising inference), at the working scale of :func:`cryoemmae_preprocess`.

    The micrograph is area-resized isotropically so that the particle is ``target_diameter_px`` working px
    wide (``diameter_px``: input px), then clipped to its 0.1-99.9 percentiles and standardised by its own
    mean and std. No filters: an encoder pretrained on raw odd/even/full micrographs (DRACO) sees the kind
    of image it was trained on. ``image`` of the result is float32 with mean 0 and std 1 (not in [0, 1]).
    """
    x = check_image(image)
    d = check_diameter(diameter_px)
    out_h, out_w = working_shape(x.shape, d, None, None, "diameter", target_diameter_px)
    work, (sx, sy) = resize(x, (out_h, out_w))
    lo, hi = np.percentile(work, [0.1, 99.9])
    work = np.clip(work, lo, hi)
    work = ((work - work.mean()) / max(float(work.std()), 1e-12)).astype(np.float32)
    return PreprocessResult(work, (sx, sy), tuple(image.shape), d * float(np.sqrt(sx * sy)), 1.0)


def cryoemmae_preprocess(image: np.ndarray, diameter_px: float, working_scale: float | None = None,
                         target_size: int | None = None, repo_parity: bool = False, *,
                         scale_mode: Literal["diameter", "fixed"] | None = None,
                         target_diameter_px: float = DEFAULT_TARGET_DIAMETER_PX,
                         filter_oversample: float | None = 2.0,
                         keep_stages: bool = False) -> PreprocessResult:
    """The Cryo-EMMAE preprocessing chain (§3.1): Scheres -> Wiener -> CLAHE -> guided -> resize.

    ``diameter_px``: particle diameter in input px. Working scale (first that applies):
    ``working_scale`` (isotropic factor); ``scale_mode="fixed"`` (the paper: a
    ``target_size`` x ``target_size`` square, default 1024, aspect not kept); ``"diameter"``
    (our default, and implied when ``target_size`` is None: rescale isotropically so the particle
    is ``target_diameter_px`` working px wide). The "diameter" mode lets one shipped checkpoint
    see particles at the size it was trained on whatever the micrograph's size and pixel size.

    Filters run before the resize (repository order). Speed-up: when the input is more than
    ``filter_oversample`` times the working scale, it is first area-downsampled to that
    multiple and every filter length (diameter, PSF sigma/size, guided box) is scaled with it,
    so each keeps its size in input px; ``None`` filters at full resolution (the repository).
    ``repo_parity``: min-max after Scheres, the corner-PSF Wiener and the repository's guided
    filter (guide = Wiener output, input = CLAHE) instead of the paper's (guide = CLAHE).
    Returns the working image as float32 in [0, 1] plus the scale factors.
    """
    x = check_image(image)
    d = check_diameter(diameter_px)
    out_h, out_w = working_shape(x.shape, d, working_scale, target_size, scale_mode, target_diameter_px)
    sx, sy = out_w / x.shape[1], out_h / x.shape[0]
    f = 1.0
    if filter_oversample is not None and filter_oversample * max(sx, sy) < 1.0:
        f = float(filter_oversample) * max(sx, sy)
        x, (fx, fy) = resize(x, (max(2, round(x.shape[0] * f)), max(2, round(x.shape[1] * f))))
        f = float(np.sqrt(fx * fy))
    stages: dict[str, np.ndarray] = {}
    norm = scheres_normalize(x, d * f, repo_minmax=repo_parity)
    wien = wiener_filter(norm, psf_sigma_px=3.0 * f, psf_size=_odd(9 * f, 3), repo_shift=repo_parity)
    eq = clahe(wien)
    box = max(2, int(round(20 * f)))
    if repo_parity:  # repo: CLAHE image filtered with the Wiener output (in 0..255 units / 255) as guide
        guided = guided_filter(eq, wien / 255.0, radius=box, eps=0.1)
    else:  # paper: Wiener output (in [0, 1]) filtered with the CLAHE image as guide
        guided = guided_filter(minmax01(wien), eq, radius=box, eps=0.1)
    work, _ = resize(minmax01(guided), (out_h, out_w))
    work = np.clip(work, 0.0, 1.0).astype(np.float32)
    if keep_stages:
        stages = {"normalized": norm, "wiener": wien, "clahe": eq, "guided": guided, "working": work}
    d_work = d * float(np.sqrt(sx * sy))
    log.debug("preprocess %s -> %s (filter scale %.3f, d %.1f -> %.1f px)", image.shape, work.shape, f, d, d_work)
    return PreprocessResult(work, (sx, sy), tuple(image.shape), d_work, f, stages)
