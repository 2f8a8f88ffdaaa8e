"""The detector's two fine-tuning stages, both through the one loop (:func:`cryolib.training.loop.train`).

1. :func:`finetune_detector`: general fine-tuning on annotated training micrographs (possibly several
   datasets, a diameter per micrograph); its checkpoint is what :func:`cryolib.pick.detector.ship_detector`
   ships as ``cryolib/assets/detector_default.pt``.
2. :func:`adapt_detector`: few-shot adaptation to ONE annotated micrograph, bounded in time, with
   dihedral augmentation, deterministic under ``seed``. Robust to incomplete labels: before training,
   the current detector picks the reference; its confident detections (score >= :data:`IGNORE_SCORE`)
   farther than half a diameter from every label are probably unlabelled particles, so their boxes are
   IGNORED by the box classifier instead of being taught as background (see
   :mod:`cryolib.pick.detector_model`). ``n_particles`` keeps a seeded subset of the labels (few-shot curve).

Both run a fixed number of steps (:data:`SCHEDULES`, by profile; one epoch over freshly drawn crops, so the
cosine schedule spans the run). The fixed schedule is what bounds the time (stage 2 at default: 120 steps,
about 2 min on 2 cores), so a seed gives the same detector on any machine. ``max_minutes`` (off by default)
times one probe step first and lowers the step count when the run would not fit; only then does the result
depend on the machine's speed (logged). Notebook 07 ran the adaptation under a 3-min cap once, on a loaded
machine, and the adapted rows moved by up to 0.08 F1 between two runs: hence no cap by default.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import pandas as pd
import torch

from cryolib.core.errors import CryolibError
from cryolib.io.micrographs import read_micrograph
from cryolib.models.objectives import OptimConfig
from cryolib.models.vitdet import PROFILE_DETECTOR_SIZE
from cryolib.pick.detector_data import DetectionCrops, to_working, working_image
from cryolib.processing import preprocess as pp
from cryolib.pick.detector_model import DetectorObjective, detect, load_detector, resolve_init
from cryolib.training.data import batch_size_of
from cryolib.training.loop import TrainConfig, train

__all__ = ["Schedule", "SCHEDULES", "IGNORE_SCORE", "HOLDOUT_FRAC", "MIN_LABELS_FOR_HOLDOUT", "finetune_detector",
           "adapt_detector", "confident_unlabelled"]

log = logging.getLogger(__name__)

Image = Union[str, Path, np.ndarray]
IGNORE_SCORE = 0.5  # stage 2: unlabelled detections of the current model at or above this score are ignored
HOLDOUT_FRAC = 0.25  # stage 2: right-hand part of the reference kept out of training, for calibration
MIN_LABELS_FOR_HOLDOUT = 80  # ... when the reference has at least this many labels (about 20 held out)


@dataclass(frozen=True)
class Schedule:
    """Steps, batch (crops per step), crop side (working px) and peak learning rate of one stage."""

    steps: int
    batch_size: int
    peak_lr: float
    crop_px: int = 256

    def optim(self) -> OptimConfig:
        """AdamW, wd 0.1 (ViTDet), 5 % linear warm-up, cosine to 0; base_lr so that the peak is ``peak_lr``."""
        return OptimConfig(base_lr=self.peak_lr * 256.0 / self.batch_size, weight_decay=0.1, warmup_epochs=0.05)


#: (stage-1 fine-tuning, stage-2 adaptation) per profile. default: ~1 step/s at batch 4 on 2 cores
#: (draco-cpu-b + the "cpu" heads), so stage 1 takes ~4 min and stage 2 ~2 min. Stage 1 at default was
#: 360 steps in development (F1 on real-10028 0.81, real-10059 0.62); 240 keeps notebook 07's four backbones
#: plus Table 6's three within the CPU budget.
SCHEDULES: dict[str, tuple[Schedule, Schedule]] = {
    "smoke": (Schedule(30, 2, 3e-4, 128), Schedule(12, 2, 1e-4, 128)),
    "default": (Schedule(240, 4, 2e-4), Schedule(120, 4, 1e-4)),
    "full": (Schedule(20000, 16, 1e-4, 512), Schedule(1000, 8, 5e-5, 512)),
}


def _schedule(profile: str, stage: int, steps: int | None, batch_size: int | None) -> Schedule:
    if profile not in SCHEDULES:
        raise CryolibError(f"unknown profile {profile!r} for the detector; choose one of {', '.join(SCHEDULES)}")
    s = SCHEDULES[profile][stage]
    s = Schedule(int(steps) if steps is not None else s.steps, int(batch_size) if batch_size else s.batch_size,
                 s.peak_lr, s.crop_px)
    if s.steps < 1 or s.batch_size < 1:
        raise CryolibError(f"detector steps and batch size must be >= 1, got {s.steps} and {s.batch_size}")
    return s


def _image(item: Image) -> np.ndarray:
    return read_micrograph(item)[0] if isinstance(item, (str, Path)) else np.asarray(item, np.float32)


def _steps_within(objective: DetectorObjective, data: DetectionCrops, sched: Schedule, max_minutes: float | None,
                  seed: int) -> int:
    """``sched.steps``, or fewer when one probe step says the run would take more than ``max_minutes``."""
    if max_minutes is None:
        return sched.steps
    from torch.utils.data import default_collate

    with torch.random.fork_rng(devices=[]):  # the probe must not move any RNG
        torch.manual_seed(seed)
        model = objective.build_model().train()
        batch = default_collate([data[i] for i in range(min(sched.batch_size, len(data)))])
        times = []
        for _ in range(2):  # the first step pays one-off costs
            t0 = time.perf_counter()
            loss, _ = objective.loss(model, batch)
            loss.backward()
            times.append(time.perf_counter() - t0)
    per_step = times[-1] * sched.batch_size / batch_size_of(batch)
    fit = max(1, int(max_minutes * 60.0 * 0.9 / per_step))
    if fit < sched.steps:
        log.warning("detector: %.2f s per step, so %d of %d steps fit in %.1f min; the result now depends on "
                    "this machine's speed", per_step, fit, sched.steps, max_minutes)
        return fit
    return sched.steps


def _run(objective: DetectorObjective, data_args: dict, sched: Schedule, out_dir: Path, seed: int,
         max_minutes: float | None, resume: bool, progress: bool) -> Path:
    probe = DetectionCrops(**data_args, n_crops=sched.batch_size, crop_px=sched.crop_px, seed=seed)
    steps = _steps_within(objective, probe, sched, max_minutes, seed)
    data = DetectionCrops(**data_args, n_crops=steps * sched.batch_size, crop_px=sched.crop_px, seed=seed)
    config = TrainConfig(epochs=1, batch_size=sched.batch_size, seed=seed, out_dir=out_dir, resume=resume,
                         log_every_steps=max(1, min(10, steps // 10)), checkpoint_every_steps=max(50, steps // 4),
                         device="auto")
    t0 = time.perf_counter()
    result = train(objective, data, config, progress=progress)
    dt = time.perf_counter() - t0
    log.info("detector: %d steps of %d crops in %.1f s (%.2f steps/s)", steps, sched.batch_size, dt, steps / dt)
    return Path(result.checkpoint)


def finetune_detector(micrographs: Sequence[Image], coords: Sequence[pd.DataFrame],
                      diameter_px: float | Sequence[float], out_dir: str | Path, *, init: str | Path = "draco",
                      profile: str = "default", size: str | None = None, steps: int | None = None,
                      batch_size: int | None = None, seed: int = 0, max_minutes: float | None = None,
                      resume: bool = False, progress: bool = True) -> Path:
    """Stage 1: fine-tune the detector on annotated micrographs -> ``out_dir/checkpoint.pt``.

    ``micrographs``: paths or arrays; ``coords``: their particles (x, y input px); ``diameter_px``: px, one
    value or one per micrograph. ``init``: "draco", "mae", "scratch" or a checkpoint path (see
    :mod:`cryolib.pick.detector_model`). ``size``: a :data:`~cryolib.models.vitdet.DETECTOR_SIZES` name
    (default: the profile's). ``steps``/``batch_size`` override the profile's :data:`SCHEDULES`.
    """
    if len(micrographs) == 0 or len(micrographs) != len(coords):
        raise CryolibError(f"finetune_detector needs one coordinate table per micrograph, got {len(micrographs)} "
                           f"micrographs and {len(coords)} tables")
    diams = [float(diameter_px)] * len(micrographs) if np.isscalar(diameter_px) else [float(d) for d in diameter_px]
    if len(diams) != len(micrographs):
        raise CryolibError(f"{len(diams)} diameters for {len(micrographs)} micrographs; give one or one each")
    sched = _schedule(profile, 0, steps, batch_size)
    det_size, enc_size = PROFILE_DETECTOR_SIZE.get(profile, ("cpu", "draco-cpu-b"))
    objective = DetectorObjective(resolve_init(init, profile), size or det_size, enc_size, sched.optim())
    images, centres = [], []
    for item, table, d in zip(micrographs, coords, diams):
        work = working_image(_image(item), d, objective.working_diameter_px, str(item)[:80])
        images.append(work.image)
        centres.append(to_working(table, work))
    data_args = dict(images=images, centres=centres, diameter_px=objective.working_diameter_px,
                     stats={"stage": "finetune", "init": str(init), "profile": profile})
    log.info("detector stage 1: %d micrographs, %d particles, init %s", len(images),
             sum(len(c) for c in centres), init)
    return _run(objective, data_args, sched, Path(out_dir), seed, max_minutes, resume, progress)


def confident_unlabelled(model: torch.nn.Module, image: np.ndarray, labels_xy: np.ndarray, diameter_px: float,
                         crop_px: int, min_score: float = IGNORE_SCORE) -> np.ndarray:
    """Centres [K, 2] (working px) of ``model``'s detections with score >= ``min_score`` that lie farther
    than half a diameter from every label: probably particles the annotation missed."""
    xy, scores = detect(model, image, crop_px=crop_px, overlap_px=int(2 * diameter_px))
    xy = xy[scores >= min_score]
    if len(xy) == 0 or len(labels_xy) == 0:
        return xy
    dist = np.hypot(xy[:, None, 0] - labels_xy[None, :, 0], xy[:, None, 1] - labels_xy[None, :, 1]).min(1)
    return xy[dist > diameter_px / 2]


def adapt_detector(checkpoint: str | Path, reference: tuple[Image, pd.DataFrame], diameter_px: float,
                   out_dir: str | Path, *, n_particles: int | None = None, seed: int = 0,
                   max_minutes: float | None = None, profile: str = "default", steps: int | None = None,
                   batch_size: int | None = None, ignore_unlabelled: bool = True,
                   holdout_frac: float | None = None, progress: bool = True) -> Path:
    """Stage 2: adapt a detector to ONE annotated micrograph -> ``out_dir/checkpoint.pt`` (see the module).

    ``checkpoint``: a detector checkpoint (stage 1 or shipped), or an ``init`` ("draco", "scratch", a
    DRACO/MAE path) for a fresh detector. ``reference``: (micrograph path or array, its particles x, y in
    input px). ``n_particles``: keep a seeded random subset of that many labels (None: all).
    ``holdout_frac``: the right-hand fraction of the reference that no training crop sees; the checkpoint's
    ``data_stats["calibration_x_min_px"]`` (input px) marks it, and the picker calibrates its threshold there
    (scores on the crops it was trained on are optimistic). 0 trains on the whole micrograph; None:
    :data:`HOLDOUT_FRAC` when the reference has at least :data:`MIN_LABELS_FOR_HOLDOUT` labels, else 0 (a
    held-out quarter of a few particles gives a noisy threshold and costs a quarter of the labels).
    """
    image, coords = reference
    if not isinstance(coords, pd.DataFrame) or not {"x", "y"} <= set(coords.columns) or len(coords) == 0:
        raise CryolibError("adapt_detector needs the reference's particles as a DataFrame with x, y (px)")
    if n_particles is not None and n_particles < len(coords):
        if n_particles < 1:
            raise CryolibError(f"n_particles must be >= 1 (or None for all), got {n_particles}")
        keep = np.sort(np.random.default_rng(seed).choice(len(coords), int(n_particles), replace=False))
        coords = coords.iloc[keep].reset_index(drop=True)
    if max_minutes is not None and not max_minutes > 0:
        raise CryolibError(f"max_minutes must be > 0 (or None), got {max_minutes}")
    if holdout_frac is None:
        holdout_frac = HOLDOUT_FRAC if len(coords) >= MIN_LABELS_FOR_HOLDOUT else 0.0
    if not 0.0 <= holdout_frac < 0.9:
        raise CryolibError(f"holdout_frac must be in [0, 0.9), got {holdout_frac}")
    sched = _schedule(profile, 1, steps, batch_size)
    det_size, enc_size = PROFILE_DETECTOR_SIZE.get(profile, ("cpu", "draco-cpu-b"))
    source = resolve_init(checkpoint, profile)
    objective = DetectorObjective(source, det_size, enc_size, sched.optim())
    work = working_image(_image(image), diameter_px, objective.working_diameter_px, "reference micrograph")
    labels = to_working(coords, work)
    ignored = np.zeros((0, 2), np.float32)
    if ignore_unlabelled and objective.from_detector:
        model, _ = load_detector(source)
        ignored = confident_unlabelled(model, work.image, labels, objective.working_diameter_px, sched.crop_px)
        log.info("adaptation: %d labels, %d confident unlabelled detections ignored", len(labels), len(ignored))
    x_cut = work.image.shape[1] - int(round(holdout_frac * work.image.shape[1]))  # training columns [0, x_cut)
    reach = x_cut - 0.5 + objective.working_diameter_px / 2  # boxes that reach into the training part
    x_min = None
    if x_cut < work.image.shape[1]:
        x_min = float(pp.map_coords(np.array([x_cut - 0.5]), np.array([0.0]), work.scale_xy, inverse=True)[0][0])
    data_args = dict(images=[work.image[:, :x_cut]], centres=[labels[labels[:, 0] < reach]],
                     ignored=[ignored[ignored[:, 0] < reach]], diameter_px=objective.working_diameter_px,
                     stats={"stage": "adapt", "source": str(source), "n_labels": len(labels),
                            "n_ignored": int(len(ignored)), "calibration_x_min_px": x_min, "profile": profile})
    return _run(objective, data_args, sched, Path(out_dir), seed, max_minutes, False, progress)
