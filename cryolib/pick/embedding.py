"""The embedding image of a micrograph: MAE tokens stitched over the field (Cryo-EMMAE §3.2).

Each non-overlapping tile of the preprocessed micrograph is embedded on its own and the token
grids are stitched into an image ``[h_tokens, w_tokens, D]`` (:func:`embedding_image`), which
the clustering of :mod:`cryolib.pick.cluster` labels token by token. Optional token
standardisation per micrograph (ours) and box smoothing (the repository's) act on it.

Units: "working px" are px of the preprocessed image; a token covers ``token_px`` working px.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from scipy import ndimage
from scipy.ndimage import uniform_filter

from cryolib.processing import preprocess as pp
from cryolib.core.errors import CryolibError
from cryolib.processing.tiles import image_to_tiles, standardize, tiles_to_grid

__all__ = ["Embedder", "token_px_of", "embedding_image", "standardize_embedding", "smooth_embedding",
           "smoothing_window_tokens"]


class Embedder(Protocol):
    """Anything with ``embed(imgs [N, 1, t, t]) -> [N, h, w, D]`` (e.g. ``MaskedAutoencoder``)."""

    def embed(self, imgs: torch.Tensor) -> torch.Tensor: ...


def token_px_of(model: Embedder, tile_px: int) -> int:
    """Working px per token: the model's patch size, or measured with one blank tile."""
    cfg = getattr(model, "cfg", None)
    if cfg is not None and getattr(cfg, "patch_size", None):
        return int(cfg.patch_size)
    with torch.no_grad():
        h = model.embed(torch.zeros(1, 1, tile_px, tile_px)).shape[1]
    return tile_px // int(h)


def embedding_image(model: Embedder, image_preprocessed: np.ndarray, tile_px: int = 64, mean: float = 0.0,
                    std: float = 1.0, batch_size: int = 64, smooth_window: int = 0,
                    centred_smoothing: bool = True, standardize_tokens: bool = False) -> np.ndarray:
    """Embedding image [h_tokens, w_tokens, D] of a preprocessed micrograph (cryoemmae.md §4).

    The image is mirror-padded on the right/bottom to whole ``tile_px`` tiles, each tile is
    standardised with the training ``mean``/``std`` and embedded on its own (no masking), the
    per-tile token grids are stitched, and the map is cropped to ceil(H / token_px) x
    ceil(W / token_px) tokens, so token (i, j) covers working px [j*p, (j+1)*p) x [i*p, (i+1)*p).
    ``standardize_tokens`` applies :func:`standardize_embedding` first, ``smooth_window`` > 1
    then :func:`smooth_embedding` (``centred_smoothing``).
    """
    img = pp.check_image(image_preprocessed, "preprocessed micrograph")
    if min(img.shape) < tile_px:
        raise CryolibError(f"preprocessed micrograph {img.shape} is smaller than one {tile_px} px tile; "
                           "use a larger working scale (target_diameter_px / target_size)")
    h, w = img.shape
    rows, cols = -(-h // tile_px), -(-w // tile_px)
    img = np.pad(img, ((0, rows * tile_px - h), (0, cols * tile_px - w)), mode="reflect")
    tiles, grid = image_to_tiles(img, tile_px, mode="crop")  # [n, 1, t, t]
    tiles = standardize(tiles, mean, std).astype(np.float32)
    params = next(iter(getattr(model, "parameters", lambda: iter(()))()), None)
    device = params.device if params is not None else torch.device("cpu")
    out = []
    with torch.no_grad():
        for i in range(0, len(tiles), batch_size):
            out.append(model.embed(torch.from_numpy(tiles[i:i + batch_size]).to(device)).float().cpu().numpy())
    per_tile = np.concatenate(out)  # [n, th, tw, D]
    token_px = tile_px // per_tile.shape[1]
    emb = tiles_to_grid(per_tile, grid)[: -(-h // token_px), : -(-w // token_px)]  # [h_tok, w_tok, D]
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    if standardize_tokens:
        emb = standardize_embedding(emb)
    return smooth_embedding(emb, smooth_window, centred_smoothing) if smooth_window > 1 else emb


def standardize_embedding(embedding: np.ndarray) -> np.ndarray:
    """Each channel of an embedding image [h, w, D] to zero mean and unit std over its tokens (ours).

    Not in the paper or the repository. A micrograph's dose, ice thickness, defocus and contrast
    move all its tokens together; measured on our analogs, such a shift can put every token of an
    unseen dataset nearest one global k-means centre, leaving the particle cluster empty. Tokens
    relative to their own micrograph keep what the clustering is after: particles differ from the
    background around them. Channels with std below 1e-6 are only centred.
    """
    mean = embedding.mean(axis=(0, 1), keepdims=True)
    std = embedding.std(axis=(0, 1), keepdims=True)
    return ((embedding - mean) / np.where(std > 1e-6, std, 1.0)).astype(np.float32)


def smooth_embedding(embedding: np.ndarray, window: int, centred: bool = True) -> np.ndarray:
    """w x w box mean of each channel over the token grid (repository, not in the paper).

    The repository's window for even w is tokens i - w/2 ... i + w/2 - 1 (``centred=False``),
    which shifts the particle mask by half a token (2 px at 4 px tokens) towards +x, +y. Default:
    a centred window of w + 1 taps with half weights at both ends (same width and total weight).
    Borders replicate the edge token (the repository leaves a ring of zero vectors instead).
    """
    if window <= 1:
        return embedding
    if not centred or window % 2:
        return uniform_filter(embedding, size=(window, window, 1), mode="nearest").astype(np.float32)
    taps = np.ones(window + 1)
    taps[[0, -1]] = 0.5
    taps /= taps.sum()
    out = ndimage.correlate1d(embedding, taps, axis=0, mode="nearest")
    return ndimage.correlate1d(out, taps, axis=1, mode="nearest").astype(np.float32)


def smoothing_window_tokens(diameter_px_working: float, token_px: int) -> int:
    """The repository's window rule: w = 4 if floor(d_tokens / 4) >= 4 else 2 (d_tokens = d / token_px).

    At the paper's scale (4 px tokens at 1024 px) this is the repository's floor(d_512 / 8) >= 4.
    """
    return 4 if int(diameter_px_working / token_px // 4) >= 4 else 2
