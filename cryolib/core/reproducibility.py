"""Seeding, so that the same seed gives the same metrics (STYLE.md §4)."""

from __future__ import annotations

import contextlib
import os
import random
from typing import Iterator

import numpy as np


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch; return a NumPy ``Generator`` seeded the same way.

    torch is imported lazily so that light modules (I/O, simulation) do not pay for it.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return np.random.default_rng(seed)


def child_rng(seed: int, *keys: int | str) -> np.random.Generator:
    """An independent generator for one item (a micrograph, a dataset) under a master seed.

    ``child_rng(seed, "sim-10081", 3)`` is the same stream whatever order items are made in,
    so a dataset can be built in parallel or resumed and still be identical.
    """
    material = [int(seed)] + [_key_to_int(k) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(material))


def _key_to_int(key: int | str) -> int:
    if isinstance(key, (int, np.integer)):
        return int(key)
    import zlib

    return zlib.crc32(str(key).encode())


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """torch's deterministic algorithms inside the block; the previous setting is restored after.

    Accumulating scatters (``index_put_(accumulate=True)`` on CPU, as torch-fourier-slice's slice
    insertion uses) otherwise add in a thread-dependent order, so the same seed gives maps that
    differ in the last bits from run to run. The deterministic path is about 2x slower there.
    """
    import torch

    was, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)
