"""cryolib.core.reproducibility: seeds give the same draws, and the deterministic-algorithms block
restores torch's previous setting, also when the block raises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryolib.core.reproducibility import child_rng, deterministic_algorithms, seed_everything


def test_the_same_seed_gives_the_same_draws():
    a = seed_everything(3).normal(size=4), torch.rand(3)
    b = seed_everything(3).normal(size=4), torch.rand(3)
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert np.array_equal(child_rng(3, "x").normal(size=3), child_rng(3, "x").normal(size=3))
    assert not np.array_equal(child_rng(3, "x").normal(size=3), child_rng(3, "y").normal(size=3))


def test_deterministic_block_restores_the_setting_even_on_error():
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_algorithms():
        assert torch.are_deterministic_algorithms_enabled()
    assert not torch.are_deterministic_algorithms_enabled()
    with pytest.raises(ValueError):
        with deterministic_algorithms():
            raise ValueError("inside")
    assert not torch.are_deterministic_algorithms_enabled()
