"""The supervised baseline of DRACO Table 4: a ResNet18 trained from scratch (App. D.2) to accept/reject.

``torchvision.models.resnet18`` with a 1-channel first convolution and one output per class of its
labels (accept/reject, or the quality classes as for the linear head, :mod:`cryolib.curate.probe`;
P(accept) = softmax P("good")), on the
micrographs in shot-noise units ``(x − mean)/sqrt(mean)`` (unit noise for pure shot noise at any
dose, as the image statistics of :mod:`cryolib.curate.features`), downsampled to ``size_px`` (area
averaging). Augmentation: the 8 flips/rotations of the square. AdamW,
cross-entropy weighted as the linear head is (:func:`~cryolib.curate.probe.class_balance_weights`), a fixed seed; the paper trains 50 epochs at batch 128.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cryolib.core.errors import CryolibError
from cryolib.curate.probe import ACCEPT, class_balance_weights, quality_labels
from cryolib.processing.preprocess import resize
from cryolib.processing.triplets import dihedral

log = logging.getLogger(__name__)

__all__ = ["ResNetCurator", "resnet18_1ch", "downsample_noise_units", "train_resnet"]


def resnet18_1ch(seed: int = 0, num_classes: int = 2) -> nn.Module:
    """ResNet18 with ``num_classes`` outputs and a 1-channel stem, initialised from ``seed``."""
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


def downsample_noise_units(image: np.ndarray, size_px: int) -> np.ndarray:
    """A micrograph (counts) -> shot-noise units ``(x − mean)/sqrt(mean)`` resized to ``size_px`` square (area) -> float32."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or not np.isfinite(img).all():
        raise CryolibError(f"need a finite 2-D micrograph, got shape {img.shape}")
    m = float(img.mean())
    units = (img - m) / np.sqrt(m) if m > 0 else (img - m) / max(float(img.std()), 1e-12)
    return resize(units.astype(np.float32), int(size_px))[0]


@dataclass
class ResNetCurator:
    """A trained ResNet18 curator: the network, its input size (px) and its output classes."""

    model: nn.Module
    size_px: int
    classes: tuple[str, ...] = ("good", "reject")

    def _batch(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        x = np.stack([downsample_noise_units(im, self.size_px) for im in images])
        return torch.from_numpy(x.astype(np.float32)).unsqueeze(1)  # [N, 1, s, s]

    @torch.no_grad()
    def scores(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """P(accept) per micrograph -> [N]."""
        self.model.eval()
        x = self._batch(images)
        accept = self.classes.index(ACCEPT)
        out = [F.softmax(self.model(chunk), dim=1)[:, accept] for chunk in x.split(batch_size)]
        return torch.cat(out).double().numpy()


def train_resnet(images: Sequence[np.ndarray], labels: Sequence[int] | Sequence[str], size_px: int = 128,
                 epochs: int = 10, batch_size: int = 16, lr: float = 1e-3, seed: int = 0) -> ResNetCurator:
    """Train :func:`resnet18_1ch` from scratch on micrographs (counts) with labels 1/0 (accept/reject) or
    quality-class names (one output per class)."""
    names = quality_labels(labels)
    if len(names) != len(images) or len(names) == 0:
        raise CryolibError(f"{len(images)} micrographs but {len(names)} labels")
    sample_weight = class_balance_weights(names)  # raises without both accepted and rejected micrographs
    if epochs < 1 or size_px < 32:
        raise CryolibError(f"need epochs >= 1 and size_px >= 32, got {epochs} and {size_px}")
    classes = tuple(sorted(set(names)))
    y = torch.as_tensor([classes.index(c) for c in names])
    weight = torch.tensor([float(sample_weight[names == c][0]) for c in classes])
    small = np.stack([downsample_noise_units(im, size_px) for im in images])  # [N, s, s]
    model = resnet18_1ch(seed, len(classes))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            ks = torch.randint(0, 8, (len(idx),), generator=gen)
            x = np.stack([dihedral(small[i], int(k)) for i, k in zip(idx.tolist(), ks.tolist())])
            logits = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1))
            loss = F.cross_entropy(logits, y[idx], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        log.debug("resnet18 epoch %d: last loss %.4f", epoch, float(loss.detach()))
    return ResNetCurator(model.eval(), int(size_px), classes)
