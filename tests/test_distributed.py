"""cryolib.training.distributed: the seeded sharded sampler, device and AMP choice, single-process collectives.

(Two gloo processes training together are tested in test_train.py.)
"""

from __future__ import annotations

import pytest
import torch

from cryolib.training.distributed import (
    EpochBatchSampler,
    amp_dtype,
    barrier,
    gather,
    param_digest,
    setup_distributed,
    to_device,
)
from cryolib.core.errors import CryolibError


def test_sampler_is_seeded_sharded_and_skippable():
    s0 = EpochBatchSampler(23, 4, seed=3, rank=0, world_size=2)
    s1 = EpochBatchSampler(23, 4, seed=3, rank=1, world_size=2)
    assert s0.steps_per_epoch == 2  # 11 per rank, drop_last
    b0, b1 = list(s0), list(s1)
    flat0, flat1 = sum(b0, []), sum(b1, [])
    assert not set(flat0) & set(flat1)
    assert b0 == list(EpochBatchSampler(23, 4, seed=3, rank=0, world_size=2))  # same seed, same epoch
    s0.set_epoch(1)
    assert list(s0) != b0
    s0.set_epoch(1, skip_batches=1)
    assert len(s0) == 1 and list(s0) == list(EpochBatchSampler(23, 4, 4, 0, 2))[1:]  # Generator(seed + epoch)
    with pytest.raises(CryolibError, match="fewer than one batch"):
        EpochBatchSampler(3, 4, seed=0)


def test_single_process_setup_collectives_and_amp(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = setup_distributed("cpu")
    assert (info.rank, info.world_size, info.device.type, info.owns_group) == (0, 1, "cpu", False)
    assert gather({"a": 1}, 1) == [{"a": 1}]
    barrier(1)  # a no-op without a process group
    assert amp_dtype("auto", torch.device("cpu")) is None  # AMP on CUDA only
    assert amp_dtype(True, torch.device("cpu")) is None
    batch = to_device({"x": torch.ones(2), "y": [torch.zeros(1)], "n": 3}, torch.device("cpu"))
    assert batch["n"] == 3 and batch["y"][0].shape == (1,)


def test_bad_device_and_amp_settings_raise():
    with pytest.raises(CryolibError, match="device must be"):
        setup_distributed("tpu")
    with pytest.raises(CryolibError, match="amp must be"):
        amp_dtype("yes", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(CryolibError, match="no CUDA GPU"):
            setup_distributed("cuda")


def test_param_digest_changes_with_any_parameter():
    model = torch.nn.Linear(3, 2)
    before = param_digest(model)
    assert before == param_digest(model)
    with torch.no_grad():
        model.bias[0] += 1e-6
    assert param_digest(model) != before
