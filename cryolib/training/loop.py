"""The one pretraining / fine-tuning loop, for every :class:`~cryolib.models.objectives.Objective`.

* Learning rate set every iteration: linear warm-up, then a half-cycle cosine to ``min_lr``
  (MAE App. A.1; Cryo-EMMAE cryoemmae.md §3), peak ``base_lr · effective_batch / 256``.
* Deterministic data order: epoch ``e`` uses ``torch.randperm(n, Generator(seed + e))``, sharded
  over ranks (rank r takes every world-th index) and batched with drop_last. A resumed run skips
  the batches already done, so resuming from step N gives the same weights as never stopping.
* Checkpoints (atomic: temp file + rename) hold model, optimiser, scaler, step, every rank's RNG
  states, the objective and model config, the data standardisation and the logged history.
  Writing, reading and checking them, and :func:`load_model`, live in :mod:`cryolib.training.checkpoint`
  (re-exported here).
* Data: any :class:`~cryolib.training.data.TrainingDataset` (``__len__``, ``__getitem__``, ``stats``);
  batches are tensors, tuples or dicts of tensors, counted by :func:`~cryolib.training.data.batch_size_of`.
* Logs: ``train_log.csv`` (step, epoch, lr, loss, parts, samples, images_per_s) and ``val_log.csv``;
  ``samples`` is the number of samples (all ranks) since the previous row.
* AMP (bf16, else fp16 with a GradScaler) on CUDA only. DDP when launched by ``torchrun``
  (WORLD_SIZE > 1): nccl on CUDA, gloo on CPU; only rank 0 writes files. Process groups,
  devices and the sampler live in :mod:`cryolib.training.distributed`.

``cryolib pretrain --synthetic 8 --objective cryoemmae --profile smoke --out DIR`` trains on synthetic
blobs through this loop (a smoke test, and the DDP test's entry point under ``torchrun``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cryolib.core.atomic import atomic_write_text
from cryolib.training.checkpoint import (  # noqa: F401  (load_model is only re-exported)
    CHECKPOINT_FORMAT,
    _rng_state,
    _set_rng_state,
    check_compatible,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from cryolib.training.distributed import (
    Dist,
    EpochBatchSampler,
    amp_dtype,
    barrier,
    gather,
    param_digest,
    setup_distributed,
    to_device,
)
from cryolib.core.errors import CryolibError
from cryolib.models.objectives import Objective, param_groups
from cryolib.training.data import TrainingDataset, batch_size_of
from cryolib.core.reproducibility import seed_everything

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
TRAIN_LOG_NAME = "train_log.csv"
VAL_LOG_NAME = "val_log.csv"


@dataclass
class TrainConfig:
    """Loop settings. ``batch_size`` is per process (effective batch = batch_size · world size)."""

    epochs: int = 1
    batch_size: int = 64
    warmup_epochs: float | None = None  # None: the objective's OptimConfig.warmup_epochs
    seed: int = 0
    num_workers: int = 0
    checkpoint_every_steps: int = 0  # 0: checkpoint only at epoch ends and at the end
    log_every_steps: int = 10
    amp: bool | str = "auto"  # "auto" = on for CUDA; never on CPU
    device: str = "auto"  # "auto", "cpu" or "cuda"
    out_dir: str | Path | None = None  # None: nothing written to disk
    resume: bool = False  # continue from out_dir/checkpoint.pt if it exists
    max_steps: int | None = None  # stop early (tests); the lr schedule still spans all epochs
    grad_clip: float | None = None  # max global grad norm; None: no clipping (Cryo-EMMAE)


@dataclass
class TrainResult:
    """The trained (unwrapped) model, its logs and the last checkpoint written (None without out_dir)."""

    model: nn.Module
    history: pd.DataFrame
    val_history: pd.DataFrame
    checkpoint: Path | None


def lr_at(step: int, *, peak_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Learning rate before iteration ``step`` (0-based): linear warm-up, then half-cycle cosine."""
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    if total_steps <= warmup_steps:
        return peak_lr
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------------------------- setup helpers


def _append_csv(path: Path, row: dict) -> None:
    """Append one row (header first if new); one short write, flushed."""
    new = not path.exists()
    with open(path, "a") as f:
        f.write(pd.DataFrame([row]).to_csv(index=False, header=new, lineterminator="\n"))
        f.flush()


def _rewrite_csv(path: Path, rows: list[dict]) -> None:
    """Replace the log with ``rows`` atomically (fresh start or resume: drops rows past the checkpoint)."""
    if rows:
        atomic_write_text(path, pd.DataFrame(rows).to_csv(index=False, lineterminator="\n"))
    else:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------- the loop


class _Run:
    """State of one training run: model, optimiser, sampler, step, logs; every rank holds one."""

    def __init__(self, objective: Objective, dataset: TrainingDataset, config: TrainConfig,
                 val_dataset: TrainingDataset | None,
                 dist_info: Dist):
        self.objective, self.dataset, self.config, self.val_dataset = objective, dataset, config, val_dataset
        self.dist = dist_info
        self.device = self.dist.device
        self.out_dir = Path(config.out_dir) if config.out_dir is not None else None
        seed_everything(config.seed)  # same initial weights on every rank
        self.model = objective.build_model().to(self.device)
        opt = objective.optimizer_config()
        self.optimizer = torch.optim.AdamW(param_groups(self.model, opt.weight_decay), lr=0.0, betas=opt.betas,
                                           eps=opt.eps)
        self.amp_dtype = amp_dtype(config.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        world = self.dist.world_size
        self.sampler = EpochBatchSampler(len(dataset), config.batch_size, config.seed, self.dist.rank, world)
        self.spe = self.sampler.steps_per_epoch
        self.total_steps = config.epochs * self.spe
        warmup = opt.warmup_epochs if config.warmup_epochs is None else config.warmup_epochs
        self.schedule = dict(peak_lr=opt.peak_lr(config.batch_size * world), warmup_steps=round(warmup * self.spe),
                             total_steps=self.total_steps, min_lr=opt.min_lr)
        self.step, self.history, self.val_history, self.saved_step = 0, [], [], -1
        self.window: dict[str, float] = {}  # sums since the last log row (saved in checkpoints)
        self.window_t0, self.timed_samples = time.perf_counter(), 0  # for images/s, this process only
        seed_everything(config.seed + self.dist.rank)  # a different mask stream per rank
        ckpt_path = self.path(CHECKPOINT_NAME)
        if config.resume and ckpt_path is not None and ckpt_path.exists():
            self._restore(load_checkpoint(ckpt_path, "cpu"), ckpt_path)  # RNG states must stay on CPU
        elif self.dist.rank == 0 and self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if ckpt_path.exists():
                log.warning("%s exists and resume=False: starting afresh and overwriting it", ckpt_path)
            _rewrite_csv(self.path(TRAIN_LOG_NAME), [])
            _rewrite_csv(self.path(VAL_LOG_NAME), [])
        self.ddp = self.model
        if world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def path(self, name: str) -> Path | None:
        return None if self.out_dir is None else self.out_dir / name

    def _restore(self, ckpt: dict, path: Path) -> None:
        """Continue exactly where ``ckpt`` stopped (same data order, RNG, optimiser moments)."""
        check_compatible(ckpt, self.objective, path)
        same = (ckpt["steps_per_epoch"], ckpt["world_size"], ckpt["train_config"]["batch_size"])
        if same != (self.spe, self.dist.world_size, self.config.batch_size):
            raise CryolibError(f"{path}: (steps/epoch, processes, batch size) were {same}, now "
                               f"{(self.spe, self.dist.world_size, self.config.batch_size)}; resume needs the "
                               "same data, batch size and process count (or use a fresh out_dir)")
        if ckpt["total_steps"] != self.total_steps:
            log.warning("resuming with %d total steps instead of %d: the lr schedule changes",
                        self.total_steps, ckpt["total_steps"])
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        _set_rng_state(ckpt["rng"][self.dist.rank], self.device)
        self.step = self.saved_step = ckpt["step"]
        self.history, self.val_history = list(ckpt["history"]), list(ckpt["val_history"])
        self.window = dict(ckpt["log_window"])
        if self.dist.rank == 0:
            _rewrite_csv(self.path(TRAIN_LOG_NAME), self.history)
            _rewrite_csv(self.path(VAL_LOG_NAME), self.val_history)
        log.info("resumed from %s at step %d (epoch %d)", path, self.step, self.step // self.spe)

    def fit(self, progress: bool) -> None:
        cfg = self.config
        stop = self.total_steps if cfg.max_steps is None else min(self.total_steps, cfg.max_steps)
        show = progress and self.dist.rank == 0 and sys.stderr.isatty()
        bar = tqdm(total=stop, initial=self.step, disable=not show, desc=self.objective.name, unit="step")
        while self.step < stop:
            epoch, done = divmod(self.step, self.spe)
            self.sampler.set_epoch(epoch, done)
            # Own generator: DataLoader otherwise draws its worker base seed from the global RNG.
            loader = DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=cfg.num_workers,
                                pin_memory=self.device.type == "cuda",
                                generator=torch.Generator().manual_seed(cfg.seed + epoch))
            for batch in loader:
                self._train_step(batch, epoch)
                bar.update(1)
                bar.set_postfix(loss=self.history[-1]["loss"] if self.history else float("nan"), refresh=False)
                at_epoch_end = self.step % self.spe == 0
                if cfg.checkpoint_every_steps and self.step % cfg.checkpoint_every_steps == 0 and not at_epoch_end:
                    self.save()
                if self.step >= stop:
                    break
            if self.step % self.spe == 0:
                self._validate(epoch)
                if self.step < stop:  # the final save below covers the last epoch
                    self.save()
        bar.close()
        digests = gather(param_digest(self.model), self.dist.world_size)
        if len(set(digests)) > 1:
            raise CryolibError(f"DDP ranks ended with different parameters: {digests}")
        self.save(extra={"rank_param_digests": digests})

    def _train_step(self, batch: Any, epoch: int) -> None:
        """One iteration: set lr, forward under autocast, backward (scaled), optional clip, step."""
        lr = lr_at(self.step, **self.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = to_device(batch, self.device)
        n_samples = batch_size_of(batch)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            loss, parts = self.objective.loss(self.ddp, batch)
        if not torch.isfinite(loss):
            raise CryolibError(f"loss is {float(loss)} at step {self.step}; lower the learning rate or check the data")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        for key, value in {"loss": float(loss.detach()), **parts}.items():
            self.window[key] = self.window.get(key, 0.0) + value
        self.window["_steps"] = self.window.get("_steps", 0.0) + 1
        self.window["_samples"] = self.window.get("_samples", 0.0) + n_samples
        self.timed_samples += n_samples
        if self.step % self.config.log_every_steps == 0 or self.step == self.total_steps:
            self._log(epoch, lr)

    def _log(self, epoch: int, lr: float) -> None:
        """Mean of the window since the last row (averaged over ranks) -> history and train_log.csv."""
        world = self.dist.world_size
        keys = sorted(k for k in self.window if not k.startswith("_"))
        counts = [self.window["_steps"], self.window.get("_samples", 0.0)]
        sums = torch.tensor([self.window[k] for k in keys] + counts, dtype=torch.float64)
        if world > 1:
            sums = sums.to(self.device)
            dist.all_reduce(sums)
            sums = sums.cpu() / world
        n_steps, n_samples = float(sums[-2]), round(float(sums[-1]) * world)
        elapsed = max(time.perf_counter() - self.window_t0, 1e-9)
        row = {"step": self.step, "epoch": epoch, "lr": lr, "loss": float(sums[keys.index("loss")]) / n_steps}
        row.update({k: float(sums[i]) / n_steps for i, k in enumerate(keys) if k != "loss"})
        row["samples"] = n_samples
        row["images_per_s"] = self.timed_samples * world / elapsed  # ranks get equal shards
        self.history.append(row)
        self.window, self.window_t0, self.timed_samples = {}, time.perf_counter(), 0
        if self.dist.rank == 0 and self.out_dir is not None:
            _append_csv(self.path(TRAIN_LOG_NAME), row)

    @torch.no_grad()
    def _validate(self, epoch: int) -> None:
        """Validation loss on rank 0 with a fixed mask seed (global RNG untouched: fork_rng)."""
        if self.val_dataset is None:
            return
        if self.dist.rank == 0:
            self.model.eval()
            sums, count = {}, 0
            loader = DataLoader(self.val_dataset, batch_size=self.config.batch_size, num_workers=self.config.num_workers)
            cuda = [self.device.index] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(self.config.seed)
                for batch in loader:
                    batch = to_device(batch, self.device)
                    n = batch_size_of(batch)
                    with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                        loss, parts = self.objective.loss(self.model, batch)
                    for key, value in {"loss": float(loss), **parts}.items():
                        sums[key] = sums.get(key, 0.0) + value * n
                    count += n
            self.model.train()
            row = {"epoch": epoch, "step": self.step, **{f"val_{k}": v / max(count, 1) for k, v in sums.items()}}
            self.val_history.append(row)
            log.info("epoch %d: val_loss %.5f", epoch, row.get("val_loss", float("nan")))
            if self.out_dir is not None:
                _append_csv(self.path(VAL_LOG_NAME), row)
        barrier(self.dist.world_size)

    def save(self, extra: dict | None = None) -> None:
        """Write out_dir/checkpoint.pt on rank 0 (all ranks call: the RNG states are gathered)."""
        if self.out_dir is None or (self.step == self.saved_step and not extra):
            return
        rng = gather(_rng_state(self.device), self.dist.world_size)
        if self.dist.rank == 0:
            desc = self.objective.describe()
            train_cfg = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self.config).items()}
            state = {
                "format": CHECKPOINT_FORMAT, "objective": self.objective.name, "objective_config": desc,
                "model_config": desc["model_config"], "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "step": self.step, "epoch": self.step // self.spe, "steps_per_epoch": self.spe,
                "total_steps": self.total_steps, "world_size": self.dist.world_size, "rng": rng,
                "sampler": {"seed": self.config.seed, "epoch": self.step // self.spe, "batch_in_epoch": self.step % self.spe},
                "data_stats": self.dataset.stats, "train_config": train_cfg,
                "history": self.history, "val_history": self.val_history, "log_window": self.window,
                "torch_version": str(torch.__version__), **(extra or {}),
            }
            save_checkpoint(self.path(CHECKPOINT_NAME), state)
        self.saved_step = self.step
        barrier(self.dist.world_size)

    def result(self) -> TrainResult:
        return TrainResult(model=self.model, history=pd.DataFrame(self.history),
                           val_history=pd.DataFrame(self.val_history), checkpoint=self.path(CHECKPOINT_NAME))


def train(objective: Objective, dataset: TrainingDataset, config: TrainConfig,
          val_dataset: TrainingDataset | None = None, progress: bool = True) -> TrainResult:
    """Train ``objective``'s model on ``dataset`` (see the module docstring); returns a :class:`TrainResult`."""
    if config.epochs < 1 or config.batch_size < 1 or config.log_every_steps < 1:
        raise CryolibError(f"epochs, batch_size and log_every_steps must be >= 1: {config}")
    if config.resume and config.out_dir is None:
        raise CryolibError("resume=True needs out_dir (where the checkpoint lives)")
    if not isinstance(dataset, TrainingDataset):
        missing = [n for n in ("__len__", "__getitem__", "stats") if not hasattr(dataset, n)]
        raise CryolibError(f"the training dataset ({type(dataset).__name__}) lacks {', '.join(missing)}; "
                           "see cryolib.training.data.TrainingDataset")
    dist_info = setup_distributed(config.device)
    try:
        run = _Run(objective, dataset, config, val_dataset, dist_info)
        run.fit(progress)
    finally:
        if dist_info.owns_group and dist.is_initialized():
            dist.destroy_process_group()
    return run.result()
