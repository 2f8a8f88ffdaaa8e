"""Micrograph features for curation (DRACO 2024 §5.3): a frozen encoder's embedding, or image statistics.

Encoder features (the linear probe's input):

1. Normalisation. The micrograph is brought to the encoder's training dose and standardised with
   the training statistics (``data_stats`` of the checkpoint, written by
   :class:`cryolib.processing.triplets.TripletDataset`): ``z = (x / mean(x) − 1) · M / S``, i.e.
   ``x`` rescaled to the training mean ``M``, then ``(· − M) / S``. For a micrograph at the
   training dose this IS the training standardisation; at another dose or pixel size the relative
   contrast and the relative shot noise are kept (a thin-ice micrograph stays less noisy than a
   thick-ice one), which a per-micrograph z-score would erase. Without ``data_stats`` the
   micrograph is z-scored on its own.
2. Tiles. The encoder sees the micrograph at its own sampling, as in pretraining: a centred grid
   of non-overlapping ``img_size`` tiles (at most ``max_tiles``, spread evenly over the grid). A
   micrograph smaller than one tile is embedded whole (cropped to a multiple of the patch size;
   the ViT builds the position embedding for that grid).
3. Pooling. The patch tokens after the encoder's final LayerNorm (``model.embed``, cls dropped)
   are averaged over patches and tiles: one D-vector per micrograph, concatenated with nothing.

Image-statistics features (a baseline with no learning), in units of the shot-noise floor so that
they do not depend on the dose: log10 mean counts m, log10 Fano factor var(x)/m (1 for pure shot
noise), and the radially averaged log10 power of ``(x − m)/sqrt(m)`` (flat at 1 for pure shot noise)
in ``n_bands`` equal-width bands of spatial frequency from 0 to Nyquist (DC excluded).

Session-relative features (:func:`relative_to_session`). The mean counts per pixel scale with dose ×
pixel area, a setting of the session, and fall with ice thickness, a property of the micrograph.
Taken relative to the median of the micrographs collected together (one session), the statistic
keeps the second and drops the first, as relative ice thickness does in a curation tool. The same
holds for every feature: pixel size, dose, defocus range and detector move a session's embedding
and power spectrum as a whole, and curation asks which micrographs stand out from their session.
It assumes most of a session is usable, so the median is a good micrograph; a micrograph curated
alone is its own median (0). Heads whose ``features`` carry ``"session_relative": "all"`` take
every feature relative to its session median; ``True`` (heads written before) only the mean counts.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from cryolib.core.errors import CryolibError

log = logging.getLogger(__name__)

__all__ = [
    "normalise_micrograph",
    "micrograph_tiles",
    "embed_micrograph",
    "encoder_features",
    "radial_band_power",
    "image_statistics",
    "image_statistics_names",
    "relative_to_session",
    "particle_coverage",
    "COVERAGE_NAME",
    "COVERAGE_FLOOR",
    "N_BANDS",
]

N_BANDS = 6  # radial power bands of the image-statistics features
COVERAGE_NAME = "log10_particle_coverage"  # the particle-coverage feature (particle_coverage)
COVERAGE_FLOOR = 1e-4  # coverage fraction given to a micrograph with no particle (log10: -4)


def _check(image: np.ndarray, where: str = "micrograph") -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < 8:
        raise CryolibError(f"{where}: need a 2-D image of at least 8x8 px, got shape {img.shape}")
    if not np.isfinite(img).all():
        raise CryolibError(f"{where}: the image contains NaN or inf")
    return img


def normalise_micrograph(image: np.ndarray, mean: float | None = None, std: float | None = None) -> np.ndarray:
    """Dose-normalised training standardisation (module docstring, step 1) -> float32 (H, W).

    ``mean``/``std``: the encoder's training statistics (counts); None z-scores the micrograph itself.
    A micrograph whose mean is not positive (already normalised) is z-scored too.
    """
    img = _check(image)
    m = float(img.mean())
    if mean is not None and std is not None and m > 0:
        if not (std > 0 and mean > 0):
            raise CryolibError(f"training statistics must be positive, got mean {mean}, std {std}")
        return ((img / m - 1.0) * (mean / std)).astype(np.float32)
    s = float(img.std())
    return ((img - m) / (s if s > 0 else 1.0)).astype(np.float32)


def micrograph_tiles(image: np.ndarray, tile_px: int, patch_px: int, max_tiles: int = 16) -> np.ndarray:
    """A centred grid of non-overlapping ``tile_px`` tiles, at most ``max_tiles`` spread evenly -> [T, t, t].

    An image smaller than one tile gives one tile: the centred crop to a multiple of ``patch_px``.
    """
    if tile_px <= 0 or patch_px <= 0 or tile_px % patch_px:
        raise CryolibError(f"tile_px {tile_px} must be a positive multiple of patch_px {patch_px}")
    if max_tiles < 1:
        raise CryolibError(f"max_tiles must be at least 1, got {max_tiles}")
    h, w = image.shape
    if min(h, w) < tile_px:
        side = (min(h, w) // patch_px) * patch_px
        if side == 0:
            raise CryolibError(f"a {h}x{w} px micrograph is smaller than one {patch_px} px patch")
        y0, x0 = (h - side) // 2, (w - side) // 2
        return image[None, y0 : y0 + side, x0 : x0 + side]
    rows, cols = h // tile_px, w // tile_px
    y0, x0 = (h - rows * tile_px) // 2, (w - cols * tile_px) // 2
    cells = np.arange(rows * cols)
    if len(cells) > max_tiles:
        cells = cells[np.round(np.linspace(0, len(cells) - 1, max_tiles)).astype(int)]
    return np.stack([image[y0 + r * tile_px : y0 + (r + 1) * tile_px, x0 + c * tile_px : x0 + (c + 1) * tile_px]
                     for r, c in (divmod(int(k), cols) for k in cells)])


@torch.no_grad()
def embed_micrograph(model: nn.Module, image: np.ndarray, stats: dict | None = None, max_tiles: int = 16) -> np.ndarray:
    """One micrograph -> its mean-pooled encoder embedding [D] (module docstring, steps 1-3).

    ``model``: a DracoModel or MaskedAutoencoder (anything with ``cfg`` and ``embed`` -> [N, h, w, D]).
    ``stats``: the checkpoint's ``data_stats`` (``mean``, ``std`` in counts) or None.
    """
    stats = stats or {}
    z = normalise_micrograph(image, stats.get("mean"), stats.get("std"))
    tiles = micrograph_tiles(z, model.cfg.img_size, model.cfg.patch_size, max_tiles)  # [T, t, t]
    device = next(model.parameters()).device
    tokens = model.embed(torch.from_numpy(np.ascontiguousarray(tiles)).unsqueeze(1).to(device))  # [T, h, w, D]
    return tokens.float().mean(dim=(0, 1, 2)).cpu().numpy()  # [D]


def encoder_features(model: nn.Module, images: Sequence[np.ndarray], stats: dict | None = None,
                     max_tiles: int = 16) -> np.ndarray:
    """Embeddings of several micrographs -> [N, D] float64 (model put in eval mode)."""
    if len(images) == 0:
        raise CryolibError("no micrographs to embed")
    model.eval()
    return np.stack([embed_micrograph(model, im, stats, max_tiles) for im in images]).astype(np.float64)


def radial_band_power(image: np.ndarray, n_bands: int = N_BANDS) -> np.ndarray:
    """Mean power |FFT(x − mean)|²/(H·W) in ``n_bands`` equal rings of |k| from 0 to Nyquist (DC out) -> [n_bands].

    |k| is in cycles per pixel (Nyquist 0.5); ring j holds 0 < |k| in [j, j+1)·0.5/n_bands. For white
    noise of variance σ² every ring's power is σ² (Parseval).
    """
    img = _check(image)
    if n_bands < 1 or n_bands > min(img.shape) // 2:
        raise CryolibError(f"n_bands must be in 1..{min(img.shape) // 2} for a {img.shape} image, got {n_bands}")
    power = np.abs(np.fft.fft2(img - img.mean())) ** 2 / img.size
    ky = np.fft.fftfreq(img.shape[0])[:, None]
    kx = np.fft.fftfreq(img.shape[1])[None, :]
    k = np.sqrt(ky**2 + kx**2)
    band = np.floor(k / 0.5 * n_bands).astype(np.int64)
    keep = (k > 0) & (band < n_bands)
    sums = np.bincount(band[keep], weights=power[keep], minlength=n_bands)
    counts = np.bincount(band[keep], minlength=n_bands)
    if (counts == 0).any():
        raise CryolibError(f"{img.shape} image too small for {n_bands} power bands")
    return sums / counts


def image_statistics(image: np.ndarray, n_bands: int = N_BANDS) -> np.ndarray:
    """Image-statistics features of one micrograph -> [2 + n_bands] (module docstring; names in
    :func:`image_statistics_names`). Micrographs in counts (mean > 0); otherwise the mean term is 0
    and the micrograph is z-scored instead of put in shot-noise units."""
    img = _check(image)
    m = float(img.mean())
    noise_units = (img - m) / np.sqrt(m) if m > 0 else (img - m) / max(float(img.std()), 1e-12)
    bands = radial_band_power(noise_units, n_bands)
    return np.concatenate([[np.log10(m) if m > 0 else 0.0, np.log10(max(float(noise_units.var()), 1e-30))],
                           np.log10(np.maximum(bands, 1e-30))])


def relative_to_session(features: np.ndarray, sessions: Sequence[str] | None = None,
                        columns: Sequence[int] | None = (0,)) -> np.ndarray:
    """Features [N, D] with ``columns`` taken relative to each session's median (module docstring) -> a new
    array. Default column 0: the log10 mean counts of :func:`image_statistics`; ``None``: every column.
    ``sessions``: one label per row, None = all one session."""
    out = np.array(features, dtype=np.float64, copy=True)
    if out.ndim != 2 or out.shape[1] < 1:
        raise CryolibError(f"need features [N, D], got shape {out.shape}")
    labels = np.zeros(len(out), dtype=int) if sessions is None else np.asarray(list(sessions), dtype=object)
    if len(labels) != len(out):
        raise CryolibError(f"{len(out)} micrographs but {len(labels)} session labels")
    cols = np.arange(out.shape[1]) if columns is None else np.asarray(list(columns), dtype=int)
    if cols.size and (cols.min() < -out.shape[1] or cols.max() >= out.shape[1]):
        raise CryolibError(f"columns {cols.tolist()} outside the {out.shape[1]} feature columns")
    for session in set(labels.tolist()):
        rows = np.flatnonzero(labels == session)
        block = out[np.ix_(rows, cols)]
        out[np.ix_(rows, cols)] = block - np.median(block, axis=0)
    return out


def particle_coverage(n_particles: int, shape: tuple[int, int], diameter_px: float) -> float:
    """log10 of the fraction of a micrograph of ``shape`` (px) that ``n_particles`` disks of ``diameter_px`` cover,
    n·π·d²/4 / (H·W), floored at :data:`COVERAGE_FLOOR` (no particle): a particle count in units that depend on
    neither the micrograph's size nor the particle's. ``n_particles`` comes from a picker (the caller's choice)."""
    h, w = (int(v) for v in shape)
    if n_particles < 0 or h < 1 or w < 1 or not (np.isfinite(diameter_px) and diameter_px > 0):
        raise CryolibError(f"need n_particles >= 0, a positive shape and diameter; got {n_particles}, {shape}, "
                           f"{diameter_px}")
    fraction = n_particles * np.pi * float(diameter_px) ** 2 / 4.0 / (h * w)
    return float(np.log10(max(fraction, COVERAGE_FLOOR)))


def image_statistics_names(n_bands: int = N_BANDS) -> list[str]:
    """Names of the :func:`image_statistics` features."""
    return ["log10_mean_counts", "log10_fano_factor"] + [f"log10_power_band{j}" for j in range(n_bands)]
