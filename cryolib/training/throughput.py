"""Pretraining throughput and FLOP utilisation of the one loop (DRACO issue: "tiles/s on CPU; on a GPU, throughput
and the fraction of peak FLOP/s in bf16").

* :func:`step_flops`: the FLOPs of one training step (forward + backward of the objective's loss on one batch),
  counted by PyTorch's :class:`torch.utils.flop_counter.FlopCounterMode` from the shapes of the matrix products,
  convolutions and attention that actually run. Element-wise work (norms, GELU, the AdamW update) is not counted,
  as model-FLOP utilisation (MFU) conventionally leaves it out. PyTorch registers no formula for the CPU attention
  kernel, so :data:`CPU_ATTENTION_FORMULAS` adds PyTorch's own attention formulas for it (forward 4·B·H·L²·d; the
  backward as PyTorch counts it on the GPU kernels, 2.5x the forward).
* :func:`peak_tflops`: the vendor's dense bf16 tensor-core peak of a GPU (:data:`PEAK_BF16_TFLOPS`, datasheet
  numbers without sparsity), None on a CPU or an unlisted GPU.
* :func:`matmul_tflops`: the rate a large square matrix product actually reaches on this device and dtype, the
  attainable ceiling that the loop's rate is also compared with (it is the only ceiling there is on a CPU).
* :func:`synthetic_triplets`: (full, odd, even) micrographs of Poisson counts, the halves a binomial split of the
  full counts (so each half is a Poisson image of half the dose, as summing odd and even frames gives): the real
  data path (:class:`~cryolib.processing.triplets.TripletDataset`, standardisation, augmentation) without a dataset.
* :func:`measure_throughput`: tiles/s of :func:`cryolib.training.loop.train` itself (same AMP, same optimiser, same
  batch collation) over ``steps`` steps, the first logged window (start-up, allocator and kernel warm-up) dropped.
* :func:`throughput_row`: all of it for one model size: tiles/s, GFLOP per tile, achieved TFLOP/s, MFU against
  the peak and the fraction of the measured matmul ceiling.
* :func:`run_utilisation`: the same figures for a finished run of the loop, from its checkpoint and
  ``train_log.csv`` (``cryolib pretrain`` writes them to its run.yaml; under ``torchrun`` the MFU is per GPU).
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from cryolib.core.errors import CryolibError
from cryolib.core.reproducibility import seed_everything
from cryolib.training.data import batch_size_of
from cryolib.training.distributed import amp_dtype, to_device
from cryolib.training.loop import TRAIN_LOG_NAME, TrainConfig, train

log = logging.getLogger(__name__)

__all__ = ["PEAK_BF16_TFLOPS", "CPU_ATTENTION_FORMULAS", "step_flops", "peak_tflops", "matmul_tflops",
           "synthetic_triplets", "resolve_device", "CycledDataset", "measure_throughput", "throughput_row",
           "run_utilisation"]

#: Dense bf16 tensor-core peak (TFLOP/s, no sparsity) by a substring of ``torch.cuda.get_device_name``, from
#: the vendors' datasheets; the first match wins, so the specific names come before the generic ones.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM5 (e.g. "NVIDIA H100 80GB HBM3")
    ("H200", 989.4),
    ("H800", 989.4),
    ("A100", 312.0),
    ("A800", 312.0),  # the DRACO paper's GPUs (§5)
    ("L40S", 362.1),
    ("A10G", 70.0),
)


def _cpu_sdpa_forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


#: FLOP formulas for the CPU attention kernels, which PyTorch's counter lacks (module docstring).
CPU_ATTENTION_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_forward,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
}


def resolve_device(device: str) -> torch.device:
    """"auto" (CUDA when there is one), "cpu" or "cuda" -> a torch device."""
    if device not in ("auto", "cpu", "cuda"):
        raise CryolibError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise CryolibError("device 'cuda' requested but no CUDA GPU is visible; use device='cpu'")
    return torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")


def step_flops(objective: Any, batch: Any, device: str | torch.device = "cpu", seed: int = 0) -> float:
    """FLOPs of one training step (the loss's forward and backward) of ``objective`` on ``batch`` (module docstring).

    The count depends on the shapes only (DRACO's masks keep a fixed number of visible patches), so it is taken
    once, in fp32, on a freshly built model.
    """
    seed_everything(seed)
    device = torch.device(device)
    model = objective.build_model().to(device).train()
    batch = to_device(batch, device)
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FORMULAS) as counter:
        loss, _ = objective.loss(model, batch)
        loss.backward()
    flops = float(counter.get_total_flops())
    if flops <= 0:
        raise CryolibError(f"no FLOPs counted for {type(objective).__name__}: its model runs no matrix product")
    return flops


def peak_tflops(device: str | torch.device) -> tuple[str, float | None]:
    """(device name, dense bf16 peak in TFLOP/s or None) of ``device`` (:data:`PEAK_BF16_TFLOPS`)."""
    device = torch.device(device)
    if device.type != "cuda":
        import platform

        return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)", None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for key, peak in PEAK_BF16_TFLOPS if key in name), None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, n: int | None = None,
                  repeats: int = 5) -> float:
    """Achieved TFLOP/s of an n x n x n matrix product (2·n³ FLOPs), the median of ``repeats`` timed products after
    two warm-ups. Default n: 8192 on a GPU, 2048 on a CPU."""
    device = torch.device(device)
    n = int(n or (8192 if device.type == "cuda" else 2048))
    if n < 1 or repeats < 1:
        raise CryolibError(f"n and repeats must be positive, got {n}, {repeats}")
    gen = torch.Generator(device="cpu").manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen).to(device=device, dtype=dtype) for _ in range(2))
    times = []
    for i in range(repeats + 2):
        _sync(device)
        t0 = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / statistics.median(times) / 1e12


def synthetic_triplets(n_micrographs: int, size_px: int, dose_per_px: float = 20.0, seed: int = 0
                       ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(full, odd, even) lists of ``size_px``² micrographs in counts: full ~ Poisson(dose · (1 + a smooth field
    of ±30 %)), odd ~ Binomial(full, ½) and even = full − odd. ``dose_per_px``: mean counts per px."""
    from scipy import ndimage

    if n_micrographs < 1 or size_px < 1 or not dose_per_px > 0:
        raise CryolibError(f"need n_micrographs >= 1, size_px >= 1 and dose_per_px > 0, got {n_micrographs}, "
                           f"{size_px}, {dose_per_px}")
    rng = np.random.default_rng(seed)
    full, odd, even = [], [], []
    for _ in range(int(n_micrographs)):
        field = ndimage.gaussian_filter(rng.normal(size=(size_px, size_px)), max(1.0, size_px / 32))
        counts = rng.poisson(dose_per_px * (1.0 + 0.3 * field / (np.abs(field).max() + 1e-12)))
        half = rng.binomial(counts, 0.5)
        full.append(counts.astype(np.float32))
        odd.append(half.astype(np.float32))
        even.append((counts - half).astype(np.float32))
    return full, odd, even


class CycledDataset(torch.utils.data.Dataset):
    """``dataset`` repeated to ``length`` samples (index i -> i mod len), so a timed run is one epoch: no epoch
    boundaries (and no data-loader worker restarts) inside the measurement. Keeps ``stats``."""

    def __init__(self, dataset: Any, length: int):
        if len(dataset) < 1 or length < 1:
            raise CryolibError(f"need a non-empty dataset and a positive length, got {len(dataset)} and {length}")
        self.dataset, self.length, self.stats = dataset, int(length), dataset.stats

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Any:
        return self.dataset[i % len(self.dataset)]


def measure_throughput(objective: Any, dataset: Any, batch_size: int, steps: int, device: str = "auto",
                       amp: bool | str = "auto", seed: int = 0, windows: int = 4, num_workers: int = 0
                       ) -> dict[str, Any]:
    """Tiles/s of the one training loop on ``dataset``: ``steps`` steps logged in ``windows`` + 1 windows, the first
    dropped (warm-up); the median of the rest. Returns tiles_per_s, its per-window values, steps and seconds.
    ``num_workers``: data-loader processes (0: augmentation in the training process, as notebook 04 runs)."""
    if steps < 2 * (windows + 1) or windows < 1:
        raise CryolibError(f"need windows >= 1 and steps >= 2·(windows + 1) = {2 * (windows + 1)}, got {steps}")
    if batch_size < 1 or len(dataset) < batch_size:
        raise CryolibError(f"batch_size must be between 1 and the {len(dataset)} samples, got {batch_size}")
    every = steps // (windows + 1)
    steps_per_epoch = len(dataset) // batch_size
    config = TrainConfig(epochs=math.ceil(steps / steps_per_epoch), batch_size=batch_size, warmup_epochs=0.0,
                         seed=seed, log_every_steps=every, amp=amp, device=device, max_steps=every * (windows + 1),
                         num_workers=int(num_workers))
    t0 = time.perf_counter()
    result = train(objective, dataset, config, progress=False)
    seconds = time.perf_counter() - t0
    rates = [float(r) for r in result.history["images_per_s"].to_numpy()[1:]]
    return {"tiles_per_s": statistics.median(rates), "window_tiles_per_s": rates,
            "steps": int(config.max_steps), "seconds": seconds}


def throughput_row(model: str, tile_px: int, batch_size: int, steps: int, device: str = "auto",
                   amp: bool | str = "auto", n_micrographs: int = 8, seed: int = 0,
                   matmul_ceiling: float | None = None, num_workers: int = 0) -> dict[str, Any]:
    """DRACO pretraining throughput of one model size on synthetic triplets (module docstring).

    ``model``: a size of :data:`cryolib.models.vit.MODEL_SIZES`, run at ``tile_px``; ``matmul_ceiling``: the
    device's measured matmul TFLOP/s in the loop's compute dtype (measured here when None); ``n_micrographs``
    synthetic micrographs, large enough for two batches of distinct tiles, are cycled through for ``steps`` steps.
    """
    from cryolib.models.draco import draco_objective
    from cryolib.models.vit import get_config
    from cryolib.processing.triplets import TripletDataset

    dev = resolve_device(device)
    cfg = get_config(model, img_size=int(tile_px))
    objective = draco_objective(cfg)
    size = max(int(tile_px), int(math.ceil(math.sqrt(batch_size * 2 / n_micrographs))) * int(tile_px))
    data = TripletDataset(*synthetic_triplets(n_micrographs, size, seed=seed), tile_px=int(tile_px),
                          rng=np.random.default_rng(seed))
    sample = default_collate([data[i] for i in range(batch_size)])  # as the loop's DataLoader batches
    flops_per_tile = step_flops(objective, sample, dev, seed) / batch_size_of(sample)
    dtype = amp_dtype(amp, dev)
    measured = measure_throughput(objective, CycledDataset(data, batch_size * steps), batch_size, steps,
                                  device=dev.type, amp=amp, seed=seed, num_workers=num_workers)
    name, peak = peak_tflops(dev)
    ceiling = matmul_ceiling if matmul_ceiling is not None else matmul_tflops(dev, dtype or torch.float32)
    achieved = flops_per_tile * measured["tiles_per_s"] / 1e12
    n_params = sum(p.numel() for p in objective.build_model().parameters())
    return {"model": model, "parameters_M": n_params / 1e6, "tile_px": int(tile_px), "batch_size": int(batch_size),
            "device": name, "compute_dtype": str(dtype or torch.float32).replace("torch.", ""),
            "tiles_per_s": measured["tiles_per_s"], "gflop_per_tile": flops_per_tile / 1e9,
            "achieved_tflops": achieved, "peak_bf16_tflops": peak,
            "mfu": achieved / peak if peak else None, "matmul_tflops": ceiling,
            "fraction_of_matmul": achieved / ceiling if ceiling > 0 else None,
            "steps": measured["steps"], "seconds": measured["seconds"],
            "window_tiles_per_s": measured["window_tiles_per_s"]}


def run_utilisation(checkpoint: str | os.PathLike, device: str | torch.device = "cpu", world_size: int = 1
                    ) -> dict[str, Any]:
    """FLOP figures of a finished run of the loop: tiles/s (median of its ``train_log.csv`` rows, all ranks),
    GFLOP per tile of its objective and model (counted on one sample), achieved TFLOP/s, and the MFU per device
    when ``device`` (where it ran) is a GPU of :data:`PEAK_BF16_TFLOPS` (``world_size`` devices shared the work)."""
    import pandas as pd

    from cryolib.models.objectives import get_objective
    from cryolib.models.vit import ViTConfig
    from cryolib.training.checkpoint import load_checkpoint

    path = Path(checkpoint)
    log_path = path.parent / TRAIN_LOG_NAME
    if not log_path.is_file():
        raise CryolibError(f"{log_path} is missing: run_utilisation needs the run's training log beside {path.name}")
    ckpt = load_checkpoint(path)
    cfg = ViTConfig(**ckpt["model_config"])
    objective = get_objective(ckpt["objective"], cfg)
    mask_ratio = (ckpt.get("objective_config") or {}).get("mask_ratio")
    if mask_ratio is not None and hasattr(objective, "mask_ratio"):
        objective.mask_ratio = float(mask_ratio)  # the run's γ (it sets how many tokens the encoder sees)
    tile = torch.zeros(1, cfg.in_chans, cfg.img_size, cfg.img_size)
    sample = {"full": tile, "odd": tile, "even": tile} if ckpt["objective"] == "draco" else tile
    flops = step_flops(objective, sample)
    rates = pd.read_csv(log_path)["images_per_s"].dropna()
    tiles_per_s = float(rates.median()) if len(rates) else math.nan
    achieved = flops * tiles_per_s / 1e12
    name, peak = peak_tflops(device)
    return {"device": name, "world_size": int(world_size), "tiles_per_s": tiles_per_s, "gflop_per_tile": flops / 1e9,
            "achieved_tflops": achieved, "peak_bf16_tflops_per_device": peak,
            "mfu": achieved / (peak * world_size) if peak else None}
