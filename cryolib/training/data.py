"""What :func:`cryolib.training.loop.train` needs from a dataset, and how it counts a batch.

A dataset is indexable (``__len__``, ``__getitem__`` -> one sample) and has a ``stats`` dict (the
standardisation, e.g. ``{"mean", "std", "tile_px"}``) that the loop stores in the checkpoint as
``data_stats``. A sample, and so a collated batch, is a tensor ``[C, H, W]`` (MAE tiles), a
tuple/list whose items are tensors, or a dict of tensors (DRACO: ``{"full", "odd", "even"}``).
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable

import torch

from cryolib.core.errors import CryolibError

__all__ = ["TrainingDataset", "batch_size_of"]


@runtime_checkable
class TrainingDataset(Protocol):
    """The dataset contract of the training loop (a map-style ``torch.utils.data.Dataset`` with ``stats``)."""

    def __len__(self) -> int:
        """Number of samples."""
        ...

    def __getitem__(self, index: int) -> Any:
        """One sample: a tensor, a tuple/list of tensors, or a dict of tensors."""
        ...

    @property
    def stats(self) -> dict:
        """Plain-typed standardisation and provenance, stored in the checkpoint as ``data_stats``."""
        ...


def _tensors(batch: Any) -> list[tuple[str, torch.Tensor]]:
    """(label, tensor) of every tensor at the top level of ``batch``."""
    if isinstance(batch, torch.Tensor):
        return [("batch", batch)]
    if isinstance(batch, Mapping):
        items = [(repr(k), v) for k, v in batch.items()]
    elif isinstance(batch, (tuple, list)):
        items = [(f"item {i}", v) for i, v in enumerate(batch)]
    else:
        raise CryolibError(f"a training batch must be a tensor, a tuple/list or a dict of tensors, "
                           f"got {type(batch).__name__}")
    tensors = [(k, v) for k, v in items if isinstance(v, torch.Tensor)]
    if not tensors:
        raise CryolibError(f"a training batch of type {type(batch).__name__} holds no tensor")
    return tensors


def batch_size_of(batch: Any) -> int:
    """Number of samples in a collated batch: the first dimension of its tensors (all must agree).

    A tuple/list (e.g. ``(images, labels)``) or dict (``{"full": T, "odd": T, "even": T}``) counts by
    its tensors' first dimension; non-tensor items are ignored. Raises :class:`CryolibError` when the
    tensors disagree, when one is a 0-d scalar, or when there is no tensor.
    """
    sizes = {}
    for label, tensor in _tensors(batch):
        if tensor.ndim == 0:
            raise CryolibError(f"batch {label} is a 0-d tensor; every tensor needs a batch dimension")
        sizes[label] = int(tensor.shape[0])
    if len(set(sizes.values())) > 1:
        raise CryolibError(f"batch tensors disagree on the number of samples (first dimension): {sizes}")
    return next(iter(sizes.values()))
