"""cryolib.training.throughput: FLOP counts against hand counts, the peak table, synthetic triplets, the timed loop."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cryolib.core.errors import CryolibError
from cryolib.models.objectives import OptimConfig, get_objective
from cryolib.processing.triplets import TripletDataset
from cryolib.training import throughput as tp
from cryolib.training.loop import TrainConfig, train

REPO = Path(__file__).resolve().parent.parent


class _MlpObjective:
    """The smallest objective: two Linear layers, loss = sum of the outputs."""

    name = "mlp"

    def __init__(self, d_in: int, d_hidden: int, d_out: int):
        self.sizes = (d_in, d_hidden, d_out)

    def build_model(self) -> nn.Module:
        i, h, o = self.sizes
        return nn.Sequential(nn.Linear(i, h), nn.Linear(h, o))

    def loss(self, model, batch):
        return model(batch).sum(), {}

    def optimizer_config(self) -> OptimConfig:
        return OptimConfig(base_lr=1e-3, weight_decay=0.0)

    def describe(self) -> dict:
        return {"name": self.name}


def test_mlp_step_counts_forward_and_the_backward_products_that_run():
    # forward 2·B·(I·H + H·O); backward: the second layer's grad-input and grad-weight (2·B·H·O each), the first
    # layer's grad-weight only (its input, the data, needs no gradient): 2·B·I·H
    b, i, h, o = 8, 32, 24, 16
    assert tp.step_flops(_MlpObjective(i, h, o), torch.randn(b, i)) == 4 * b * i * h + 6 * b * h * o


def test_cpu_attention_counts_four_b_h_l2_d_forward():
    b, h, length, d = 2, 3, 64, 8
    q, k, v = (torch.randn(b, h, length, d) for _ in range(3))
    with FlopCounterMode(display=False, custom_mapping=tp.CPU_ATTENTION_FORMULAS) as counter:
        F.scaled_dot_product_attention(q, k, v)
    assert counter.get_total_flops() == 4 * b * h * length**2 * d  # QKᵀ and PV, 2·L²·d each


def test_vit_step_is_three_times_its_matmul_forward_plus_attention():
    # The MAE objective on a tiny ViT: the step's count exceeds 3x the encoder's dense forward on the visible
    # tokens (2·params·tokens), which a miscounted (e.g. zero) attention or backward would not.
    objective = get_objective("mae", "cpu-tiny")
    flops = tp.step_flops(objective, torch.randn(4, 1, 64, 64))
    model = objective.build_model()
    enc_params = sum(p.numel() for n, p in model.encoder.named_parameters() if "blocks" in n and p.ndim == 2)
    visible = int(round(model.cfg.num_patches * (1 - objective.mask_ratio)))
    assert flops > 3 * 2 * enc_params * visible * 4
    assert flops == tp.step_flops(objective, torch.randn(4, 1, 64, 64))  # shapes only
    assert tp.step_flops(objective, torch.randn(8, 1, 64, 64)) == pytest.approx(2 * flops, rel=1e-9)


def test_peak_table_prefers_specific_names(monkeypatch):
    assert tp.peak_tflops("cpu")[1] is None
    names = iter(["NVIDIA H100 PCIe", "NVIDIA H100 80GB HBM3", "NVIDIA H200", "Some Future GPU"])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: next(names))
    assert [tp.peak_tflops(torch.device("cuda"))[1] for _ in range(4)] == [756.0, 989.4, 989.4, None]


def test_matmul_rate_is_positive_and_inputs_checked():
    assert tp.matmul_tflops("cpu", n=128, repeats=2) > 0
    with pytest.raises(CryolibError, match="positive"):
        tp.matmul_tflops("cpu", n=128, repeats=0)


def test_synthetic_halves_are_a_binomial_split_of_poisson_counts():
    full, odd, even = tp.synthetic_triplets(2, 128, dose_per_px=40.0, seed=3)
    for f, o, e in zip(full, odd, even):
        assert np.array_equal(o + e, f) and (o >= 0).all() and (e >= 0).all()
        # each half is Poisson of half the dose: mean ≈ variance ≈ 20 counts/px (field ±30 % adds some variance)
        assert abs(o.mean() - 20.0) < 1.0 and abs(e.mean() - 20.0) < 1.0
        assert 0.9 < (o - e).var() / f.mean() < 1.1  # var(odd − even) = E[full] for a fair binomial split
    again = tp.synthetic_triplets(2, 128, dose_per_px=40.0, seed=3)[0]
    assert all(np.array_equal(a, b) for a, b in zip(full, again))
    with pytest.raises(CryolibError, match="dose_per_px"):
        tp.synthetic_triplets(1, 64, dose_per_px=0.0)


class Tiny(list):
    stats = {"mean": 1.0}


def test_cycled_dataset_repeats_and_keeps_stats():
    cyc = tp.CycledDataset(Tiny([10, 11, 12]), 7)
    assert len(cyc) == 7 and [cyc[i] for i in range(7)] == [10, 11, 12, 10, 11, 12, 10] and cyc.stats == {"mean": 1.0}
    with pytest.raises(CryolibError):
        tp.CycledDataset(Tiny([]), 3)


def test_throughput_row_on_a_tiny_draco():
    row = tp.throughput_row("draco-tiny", 64, 4, 10, device="cpu", n_micrographs=2)
    assert row["model"] == "draco-tiny" and row["compute_dtype"] == "float32" and row["steps"] == 10
    assert row["tiles_per_s"] > 0 and len(row["window_tiles_per_s"]) == 4 and row["gflop_per_tile"] > 0
    assert row["achieved_tflops"] == pytest.approx(row["gflop_per_tile"] * row["tiles_per_s"] / 1e3)
    assert row["mfu"] is None and row["peak_bf16_tflops"] is None and row["fraction_of_matmul"] > 0


def test_measure_throughput_rejects_too_few_steps_and_bad_batches():
    objective = get_objective("draco", "draco-tiny")
    data = tp.CycledDataset(Tiny([0]), 10)
    with pytest.raises(CryolibError, match="steps"):
        tp.measure_throughput(objective, data, 1, steps=5)
    with pytest.raises(CryolibError, match="batch_size"):
        tp.measure_throughput(objective, data, 11, steps=10)
    with pytest.raises(CryolibError, match="device"):
        tp.resolve_device("tpu")


def test_benchmark_script_writes_its_tables(tmp_path):
    spec = importlib.util.spec_from_file_location("pretrain_throughput", REPO / "benchmarks" / "pretrain_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--profile", "smoke", "--models", "draco-tiny", "--tile-px", "64", "--batch-size", "4",
                       "--steps", "10", "--device", "cpu", "--no-paper", "--results", str(tmp_path)]) == 0
    text = (tmp_path / "smoke" / "benchmarks" / "pretrain_throughput.md").read_text()
    assert "| draco-tiny |" in text and (tmp_path / "smoke" / "benchmarks" / "pretrain_throughput.json").is_file()
    assert bench.main(["--profile", "nope", "--results", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_run_utilisation_reads_a_finished_run(tmp_path):
    objective = get_objective("draco", "draco-tiny")
    data = TripletDataset(*tp.synthetic_triplets(2, 256, seed=1), tile_px=256)
    result = train(objective, data, TrainConfig(epochs=1, batch_size=2, out_dir=tmp_path, log_every_steps=1,
                                                device="cpu"), progress=False)
    usage = tp.run_utilisation(result.checkpoint, "cpu")
    tile = torch.zeros(1, 1, 256, 256)
    assert usage["gflop_per_tile"] == pytest.approx(tp.step_flops(objective, {"full": tile, "odd": tile,
                                                                              "even": tile}) / 1e9)
    assert usage["tiles_per_s"] > 0 and usage["mfu"] is None
    (tmp_path / "train_log.csv").unlink()
    with pytest.raises(CryolibError, match="train_log.csv is missing"):
        tp.run_utilisation(result.checkpoint)
