"""DRACO's complementary odd/even masking and latent merge (DRACO 2024 §4, Eq. 5–6).

Pure tensor functions, no parameters; :mod:`cryolib.models.draco` builds the model on them.

* :func:`complementary_masking`: one random permutation of the L patches per sample; the odd
  image keeps the first K = round((1−γ)·L) patches of it visible, the even image the next K, and
  the remaining L − 2K patches are masked in both. No patch is visible in both, which needs γ ≥ 0.5.
* :func:`scatter_to_grid`: Eq. 5's zero padding of the visible latents back onto the full patch grid.
* :func:`merge_latents`: Eq. 6, ``z_i = (1−m°_i)·z°_i + (1−mᵉ_i)·zᵉ_i + m°_i·mᵉ_i·[MASK]``.

Shapes: N batch, L = h·w patches, K visible patches per half, D token width. Masks hold 1 where a
patch is masked and 0 where it is visible (the MAE and DRACO convention).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from cryolib.core.errors import CryolibError

__all__ = ["DracoMasks", "visible_per_half", "complementary_masking", "scatter_to_grid", "merge_latents"]


class DracoMasks(NamedTuple):
    """The odd and even masks of one batch (§4 "Masking").

    ``ids_odd``, ``ids_even``: [N, K] patch indices visible in the odd / even image (disjoint).
    ``mask_odd``, ``mask_even``: [N, L] float, 1 = masked, 0 = visible, in patch (row-major) order.
    """

    ids_odd: torch.Tensor
    ids_even: torch.Tensor
    mask_odd: torch.Tensor
    mask_even: torch.Tensor


def visible_per_half(length: int, mask_ratio: float) -> int:
    """K = round((1−γ)·L) visible patches per image, capped at L // 2 so the halves stay disjoint.

    Raises :class:`CryolibError` unless 0.5 ≤ γ < 1 (DRACO §4: "this requires γ ≥ 0.5").
    """
    if not 0.5 <= mask_ratio < 1.0:
        raise CryolibError(f"DRACO's mask ratio must be in [0.5, 1) so that no patch is visible in both "
                           f"the odd and the even image (§4); got {mask_ratio}")
    if length < 2:
        raise CryolibError(f"DRACO masking needs at least 2 patches per image, got {length}")
    return max(1, min(int(round(length * (1.0 - mask_ratio))), length // 2))


def complementary_masking(
    n: int,
    length: int,
    mask_ratio: float = 0.75,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> DracoMasks:
    """Odd/even masks with ratio γ = ``mask_ratio`` per image (DRACO §4), as a :class:`DracoMasks`.

    Per sample, ``argsort`` of uniform noise [N, L] gives a random permutation; its first K
    entries are the odd-visible patches, the next K the even-visible ones (K from
    :func:`visible_per_half`). Draws from ``generator`` (else the global torch RNG).
    """
    k = visible_per_half(length, mask_ratio)
    noise = torch.rand(n, length, device=device, generator=generator)  # [N, L]
    ids_shuffle = torch.argsort(noise, dim=1)  # [N, L] a random permutation per sample
    ids_odd, ids_even = ids_shuffle[:, :k], ids_shuffle[:, k : 2 * k]  # [N, K] each, disjoint
    mask_odd = torch.ones(n, length, device=device)
    mask_even = torch.ones(n, length, device=device)
    mask_odd.scatter_(1, ids_odd, 0.0)  # [N, L]
    mask_even.scatter_(1, ids_even, 0.0)  # [N, L]
    return DracoMasks(ids_odd, ids_even, mask_odd, mask_even)


def scatter_to_grid(visible: torch.Tensor, ids: torch.Tensor, length: int) -> torch.Tensor:
    """Eq. 5's zero padding: visible tokens [N, K, D] at patch indices ``ids`` [N, K] -> [N, L, D]."""
    n, k, d = visible.shape
    if ids.shape != (n, k):
        raise CryolibError(f"ids of shape {tuple(ids.shape)} do not match {k} visible tokens of {n} samples")
    grid = visible.new_zeros(n, length, d)
    return grid.scatter(1, ids.unsqueeze(-1).expand(-1, -1, d), visible)  # [N, L, D]


def merge_latents(
    z_odd: torch.Tensor,
    z_even: torch.Tensor,
    mask_odd: torch.Tensor,
    mask_even: torch.Tensor,
    mask_token: torch.Tensor,
) -> torch.Tensor:
    """DRACO Eq. 6: ``z = (1−m°)·z° + (1−mᵉ)·zᵉ + m°·mᵉ·[MASK]``, all on the full grid.

    ``z_odd``, ``z_even``: zero-padded latents [N, L, D] (:func:`scatter_to_grid`); ``mask_*``:
    [N, L] with 1 = masked; ``mask_token``: [D], [1, D] or [1, 1, D]. Returns [N, L, D]. Written
    as the sum of the paper's three products, so every term (the mask token too) stays in the
    autograd graph even when no patch is masked in both.
    """
    if z_odd.shape != z_even.shape or z_odd.shape[:2] != mask_odd.shape or mask_odd.shape != mask_even.shape:
        raise CryolibError(f"merge_latents: latents {tuple(z_odd.shape)} / {tuple(z_even.shape)} and masks "
                           f"{tuple(mask_odd.shape)} / {tuple(mask_even.shape)} do not match ([N, L, D] and [N, L])")
    mo = mask_odd.unsqueeze(-1).to(z_odd.dtype)  # [N, L, 1]
    me = mask_even.unsqueeze(-1).to(z_odd.dtype)  # [N, L, 1]
    token = mask_token.reshape(1, 1, -1).to(z_odd.dtype)  # [1, 1, D]
    return (1.0 - mo) * z_odd + (1.0 - me) * z_even + mo * me * token
