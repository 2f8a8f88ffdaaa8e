"""Direct Fourier reconstruction of two half-maps by central-slice insertion (torch-fourier-slice).

The adjoint of :func:`cryolib.simulate.potential.project_prepared`: every particle box (phase-flipped,
protein positive) is zero-padded to ``P = B + 2·int(B (pad − 1)/2)``, Fourier transformed and inserted as a
central slice into a ``P³`` rfft volume with ``insert_central_slices_rfft_3d``, which spreads each sample
over its 8 neighbours (trilinear weights) and returns the summed weights. The rotation handed to the
library is ``R^T``, as for extraction (``R`` maps particle to image coordinates). Each half-map is

    V = IFFT[ Σ slices / max(Σ weights, 1) ] / sinc²,

cropped back to ``B³``. The regularisation ``max(w, 1)`` is torch-fourier-slice's own (``backproject_2d_to_3d``):
a voxel reached by less than one slice sample's worth of weight (high frequencies with few particles) keeps
its plain sum instead of being amplified, which damps those frequencies in the map but not in the FSC of
two maps treated alike. Phase flipping without CTF² weighting leaves the map filtered by the mean |CTF|
(no Wiener filter); the FSC, a ratio per shell, is not changed by such a filter.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cryolib.core.errors import CryolibError
from cryolib.core.reproducibility import deterministic_algorithms

__all__ = ["PAD_FACTOR", "insert_particles", "finish_map", "reconstruct_half_maps", "half_split"]

log = logging.getLogger(__name__)

PAD_FACTOR = 2.0  # torch-fourier-slice's default padding (oversampling of the 3-D Fourier grid)


def _padding(box_px: int, pad_factor: float) -> int:
    if not pad_factor >= 1.0:
        raise CryolibError(f"pad_factor={pad_factor}: must be >= 1")
    return int(box_px * (pad_factor - 1.0) // 2)


def insert_particles(particles: torch.Tensor, rotations: torch.Tensor, pad_factor: float = PAD_FACTOR,
                     batch: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed slices and weights ``(P, P, P//2+1)`` of ``particles (N, B, B)`` at ``rotations (N, 3, 3)``."""
    from torch_fourier_slice import insert_central_slices_rfft_3d

    b = particles.shape[-1]
    p = _padding(b, pad_factor)
    big = b + 2 * p
    shape = (big, big, big)
    dft = torch.zeros((big, big, big // 2 + 1), dtype=torch.complex64)
    weights = torch.zeros(dft.shape, dtype=torch.float32)
    with deterministic_algorithms():  # the same particles give the same bits on any thread count
        for start in range(0, len(particles), batch):
            imgs = F.pad(particles[start : start + batch].float(), [p] * 4)
            imgs = torch.fft.fftshift(torch.fft.rfftn(torch.fft.ifftshift(imgs, dim=(-2, -1)), dim=(-2, -1)),
                                      dim=(-2,))
            r_tfs = rotations[start : start + batch].float().transpose(-1, -2)  # the library rotates the slice: R^T
            d, w = insert_central_slices_rfft_3d(imgs, volume_shape=shape, rotation_matrices=r_tfs, fftfreq_max=0.5)
            dft += d
            weights += w
    return dft, weights


def finish_map(dft: torch.Tensor, weights: torch.Tensor, box_px: int, regularisation: float = 1.0) -> torch.Tensor:
    """Real-space ``(B, B, B)`` map from summed slices: divide by ``max(weights, regularisation)``, inverse
    FFT, gridding (sinc²) correction, crop (module docstring)."""
    from torch_fourier_slice.volume_utils import separable_sinc2_correction

    big = dft.shape[0]
    vol = dft / torch.clamp(weights, min=regularisation)
    vol = torch.fft.ifftshift(vol, dim=(-3, -2))
    vol = torch.fft.fftshift(torch.fft.irfftn(vol, s=(big, big, big), dim=(-3, -2, -1)), dim=(-3, -2, -1))
    vol = vol / separable_sinc2_correction(vol.shape)
    p = (big - box_px) // 2
    return vol[p : p + box_px, p : p + box_px, p : p + box_px].contiguous()


def half_split(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n,)`` half labels 0/1: a random balanced split (RELION's random halves)."""
    labels = np.zeros(n, dtype=np.int64)
    labels[rng.permutation(n)[n // 2 :]] = 1
    return labels


def reconstruct_half_maps(particles: np.ndarray, rotations: np.ndarray, halves: np.ndarray,
                          pad_factor: float = PAD_FACTOR, batch: int = 128, progress: bool = False) -> np.ndarray:
    """``(2, B, B, B)`` float32 half-maps from boxes ``(N, B, B)`` (phase-flipped, protein positive),
    rotation matrices ``(N, 3, 3)`` (simulator convention) and half labels ``(N,)`` in {0, 1}."""
    parts = torch.as_tensor(np.asarray(particles, dtype=np.float32))
    rot = torch.as_tensor(np.asarray(rotations, dtype=np.float32))
    halves = np.asarray(halves)
    if parts.ndim != 3 or parts.shape[1] != parts.shape[2] or parts.shape[1] % 2:
        raise CryolibError(f"particles must be (N, B, B) boxes with B even, got shape {tuple(parts.shape)}")
    if rot.shape != (len(parts), 3, 3) or halves.shape != (len(parts),):
        raise CryolibError(f"need one (3, 3) rotation and one half label per particle: {len(parts)} particles, "
                           f"rotations {tuple(rot.shape)}, halves {halves.shape}")
    if not set(np.unique(halves)) <= {0, 1}:
        raise CryolibError("half labels must be 0 or 1")
    counts = [int((halves == h).sum()) for h in (0, 1)]
    if min(counts) == 0:
        raise CryolibError(f"each half-map needs at least one particle, got {counts}")
    b = parts.shape[-1]
    out = []
    for h in tqdm((0, 1), desc="half-maps", disable=not progress, leave=False):
        sel = torch.from_numpy(np.flatnonzero(halves == h))
        dft, w = insert_particles(parts[sel], rot[sel], pad_factor, batch)
        out.append(finish_map(dft, w, b).numpy())
    return np.stack(out).astype(np.float32)
