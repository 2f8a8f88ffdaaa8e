"""What an MAE sees and predicts: masked inputs and reconstructions, for the pretraining figures."""

from __future__ import annotations

import numpy as np
import torch

from cryolib.models.vit import MaskedAutoencoder, patchify, unpatchify


@torch.no_grad()
def masked_reconstruction(model: MaskedAutoencoder, tiles: torch.Tensor, mask_ratio: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Mask ``tiles`` [N, 1, t, t] at ``mask_ratio``, run the MAE and return [N, t, t] arrays.

    Keys: ``input``; ``masked`` (masked patches set to NaN, so a plot shows them as holes);
    ``prediction`` (the decoder's output for every patch); ``pasted`` (visible input patches
    with predicted masked patches: the MAE paper's visualisation). With ``norm_pix_loss`` the
    prediction is per-patch normalised, so it is rescaled to the input patch's mean/std.
    """
    model.eval()
    p = model.cfg.patch_size
    generator = torch.Generator().manual_seed(int(seed))
    latent, mask, ids_restore = model.forward_encoder(tiles, mask_ratio, generator)  # mask [N, L], 1 = masked
    pred = model.forward_decoder(latent, ids_restore)  # [N, L, p²]
    target = patchify(tiles, p)  # [N, L, p²]
    if model.cfg.norm_pix_loss:
        mean, std = target.mean(-1, keepdim=True), (target.var(-1, keepdim=True) + 1e-6) ** 0.5
        pred = pred * std + mean
    m = mask.unsqueeze(-1)  # [N, L, 1]
    masked = torch.where(m.bool(), torch.full_like(target, float("nan")), target)
    pasted = target * (1 - m) + pred * m
    grid = (tiles.shape[-2] // p, tiles.shape[-1] // p)

    def img(x: torch.Tensor) -> np.ndarray:
        return unpatchify(x, p, 1, grid)[:, 0].cpu().numpy()

    return {"input": tiles[:, 0].cpu().numpy(), "masked": img(masked), "prediction": img(pred), "pasted": img(pasted)}
