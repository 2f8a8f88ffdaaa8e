"""Processes, devices and data order for :mod:`cryolib.training.loop`: DDP under ``torchrun``, AMP, sampling.

Launched by ``torchrun`` (WORLD_SIZE > 1) the process group is initialised here: nccl on CUDA,
gloo on CPU. The sampler gives every rank its shard of a seeded per-epoch permutation, so the
data order depends only on (seed, epoch), and a resumed run can skip the batches already done.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Sampler

from cryolib.core.errors import CryolibError

log = logging.getLogger(__name__)


class EpochBatchSampler(Sampler[list[int]]):
    """Seeded per-epoch permutation, sharded over ranks, in batches of ``batch_size`` (drop_last)."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world_size = n, batch_size, seed, rank, world_size
        self.steps_per_epoch = (n // world_size) // batch_size
        if self.steps_per_epoch == 0:
            raise CryolibError(f"{n} samples are fewer than one batch of {batch_size} x {world_size} process(es); "
                               "lower batch_size or add data")
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Select the epoch's permutation and skip its first ``skip_batches`` batches (resume)."""
        self.epoch, self.skip = epoch, skip_batches

    def __len__(self) -> int:
        return self.steps_per_epoch - self.skip

    def __iter__(self) -> Iterator[list[int]]:
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        per_rank = self.n // self.world_size
        mine = perm[self.rank : per_rank * self.world_size : self.world_size]  # [per_rank]
        for b in range(self.skip, self.steps_per_epoch):
            yield mine[b * self.batch_size : (b + 1) * self.batch_size].tolist()


def param_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (to check that DDP ranks agree bit for bit)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # we initialised the process group, so we destroy it


def setup_distributed(device_pref: str) -> Dist:
    """Device choice, and ``init_process_group`` when launched with WORLD_SIZE > 1."""
    if device_pref not in ("auto", "cpu", "cuda"):
        raise CryolibError(f"device must be 'auto', 'cpu' or 'cuda', got {device_pref!r}")
    use_cuda = torch.cuda.is_available() if device_pref == "auto" else device_pref == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise CryolibError("device 'cuda' requested but no CUDA GPU is visible; use device='cpu'")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world <= 1:
        return Dist(device=device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device, owns_group=owns)


def amp_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """bf16 where supported, else fp16, on CUDA only; None = fp32."""
    if amp not in (True, False, "auto"):
        raise CryolibError(f"amp must be True, False or 'auto', got {amp!r}")
    if device.type != "cuda":
        if amp is True:
            log.warning("AMP requested on %s; AMP runs on CUDA only, training in fp32", device)
        return None
    if amp is False:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def gather(obj: Any, world_size: int) -> list:
    """Every rank's ``obj`` (a one-element list in a single process)."""
    if world_size == 1:
        return [obj]
    out = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(world_size: int) -> None:
    """Wait for every rank (no-op in a single process)."""
    if world_size > 1:
        dist.barrier()
