"""Seeding, so that the same seed gives the same metrics (STYLE.md §4)."""

from __future__ import annotations

import os
import random

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
