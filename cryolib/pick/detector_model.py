"""The detector's objective for the one training loop, its initialisation, checkpoints and tiled inference.

* :class:`DetectorObjective`: the :class:`~cryolib.models.objectives.Objective` of fine-tuning: a batch of
  :class:`~cryolib.pick.detector_data.DetectionCrops` becomes detectron2's inputs (a list of dicts with
  ``image`` and ``instances``: ``gt_boxes``, ``gt_classes``), the model runs in training mode inside an
  ``EventStorage`` and the loss is the sum of detectron2's four losses (parts: ``loss_rpn_cls``,
  ``loss_rpn_loc``, ``loss_cls``, ``loss_box_reg``). Boxes of class −1 are ignored by the box classifier:
  detectron2's ROI sampler drops proposals whose matched class is −1 (neither foreground nor background);
  the RPN counts them as objects.
* Initialisation (``init``): "draco" (the shipped DRACO encoder, ``cryolib/assets/draco_default.pt``),
  "mae" (the DRACO study's patch-16 MAE baseline, ``runs/<profile>/draco/mae/checkpoint.pt`` from notebook 04),
  "scratch" (random encoder of the profile's size), a path to any cryolib checkpoint or picker file that
  holds a patch-16 ``encoder.*``, or a detector checkpoint (all weights, e.g. stage 1 for stage 2).
* :func:`detect`: a working-scale image in overlapping ``crop_px`` tiles (the training crop size, so the
  position embedding sees the grid it was trained on), detections kept in each tile's core, one NMS.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from cryolib.core.errors import CryolibError
from cryolib.core.files import load_torch_file
from cryolib.models.objectives import OptimConfig
from cryolib.models.vit import ViTConfig, ViTEncoder, get_config
from cryolib.models.vitdet import (DetectorSize, build_detector, detector_size, require_detectron2, size_as_dict,
                                   size_from_dict)
from cryolib.pick.detector_data import WORKING_DIAMETER_PX

__all__ = ["OBJECTIVE_NAME", "ASSETS", "DetectorObjective", "resolve_init", "encoder_from", "load_detector",
           "detect", "to_detectron2"]

log = logging.getLogger(__name__)

OBJECTIVE_NAME = "detector"
ASSETS = Path(__file__).resolve().parents[1] / "assets"


def resolve_init(init: str | Path, profile: str = "default") -> str | Path:
    """"scratch" stays; "draco" / "mae" become their checkpoint paths (CryolibError when absent); paths stay."""
    if isinstance(init, str) and init == "scratch":
        return init
    if isinstance(init, str) and init == "draco":
        path = ASSETS / "draco_default.pt"
        fix = "run notebooks/04_pretrain_draco.ipynb (it ships the DRACO model) or pass a checkpoint path"
    elif isinstance(init, str) and init == "mae":
        from cryolib.core.results import run_dir

        path = run_dir(profile) / "draco" / "mae" / "checkpoint.pt"
        fix = "run notebooks/04_pretrain_draco.ipynb (its patch-16 MAE baseline) or pass an MAE checkpoint path"
    else:
        path = Path(init)
        fix = "pass 'draco', 'mae', 'scratch' or an existing checkpoint"
    if not path.is_file():
        raise CryolibError(f"detector initialisation {init!r}: {path} not found; {fix}")
    return path


def _read(path: Path) -> dict:
    obj = load_torch_file(path, "checkpoint", "pass an existing checkpoint", "cryolib checkpoint")
    if not isinstance(obj, dict) or "model_config" not in obj:
        raise CryolibError(f"{path} holds no model_config: not a cryolib checkpoint, detector or picker file")
    return obj


def encoder_from(path: Path) -> ViTEncoder:
    """The ``encoder.*`` weights of a cryolib checkpoint (DRACO, MAE) or picker file as a :class:`ViTEncoder`."""
    obj = _read(path)
    state = obj.get("model") or obj.get("encoder") or {}
    enc = {k.removeprefix("encoder."): v.float() for k, v in state.items() if k.startswith("encoder.")}
    if not enc:
        raise CryolibError(f"{path} holds no encoder weights (encoder.*); pass a DRACO/MAE checkpoint")
    encoder = ViTEncoder(ViTConfig(**obj["model_config"]))
    missing, unexpected = encoder.load_state_dict(enc, strict=False)
    if missing or unexpected:
        raise CryolibError(f"{path}: encoder keys missing {missing[:4]}, unexpected {unexpected[:4]}")
    return encoder


class DetectorObjective:
    """Fine-tuning objective of the ViTDet detector (see the module docstring)."""

    def __init__(self, init: str | Path, size: str | DetectorSize = "cpu", encoder: str | ViTConfig = "draco-cpu-b",
                 optim: OptimConfig | None = None, working_diameter_px: float = WORKING_DIAMETER_PX):
        require_detectron2()
        self.name = OBJECTIVE_NAME
        self.init = init if init == "scratch" else Path(init)
        self.optim = optim or OptimConfig(base_lr=1.28e-2, weight_decay=0.1, warmup_epochs=0.05, min_lr=0.0)
        self.working_diameter_px = float(working_diameter_px)
        self._detector_state: dict | None = None
        if self.init == "scratch":
            self.size, self.model_config = detector_size(size), get_config(encoder)
        else:
            obj = _read(self.init)
            desc = obj.get("objective_config") or {}
            if obj.get("objective") == OBJECTIVE_NAME:  # a detector: continue from all its weights
                self.size, self._detector_state = size_from_dict(desc["detector_size"]), obj["model"]
                self.working_diameter_px = float(desc["working_diameter_px"])
            else:
                self.size = detector_size(size)
            self.model_config = ViTConfig(**obj["model_config"])

    @property
    def from_detector(self) -> bool:
        """True when ``init`` is a detector checkpoint (all weights trained), not an encoder or "scratch"."""
        return self._detector_state is not None

    def build_model(self) -> nn.Module:
        """The detector, initialised from ``init`` (call after seeding)."""
        if self.init == "scratch" or self._detector_state is not None:
            encoder = ViTEncoder(self.model_config)
        else:
            encoder = encoder_from(self.init)
        model = build_detector(encoder, self.working_diameter_px, self.size)
        if self._detector_state is not None:
            model.load_state_dict({k: v.float() for k, v in self._detector_state.items()})
        return model

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Sum of detectron2's RPN and box losses on one batch of crops; parts: each loss."""
        from detectron2.utils.events import EventStorage

        with EventStorage():
            losses = model(to_detectron2(batch))
        total = sum(losses.values())
        return total, {k: float(v.detach()) for k, v in losses.items()}

    def optimizer_config(self) -> OptimConfig:
        return self.optim

    def describe(self) -> dict:
        return {"name": self.name, "model_config": self.model_config.as_dict(),
                "detector_size": size_as_dict(self.size), "working_diameter_px": self.working_diameter_px,
                "init": str(self.init), "optim": dataclasses.asdict(self.optim)}


def to_detectron2(batch: dict[str, torch.Tensor]) -> list[dict]:
    """A collated crop batch -> detectron2's list of {"image": [1, S, S], "instances": Instances}."""
    from detectron2.structures import Boxes, Instances

    out = []
    for i in range(batch["image"].shape[0]):
        n = int(batch["n_boxes"][i])
        image = batch["image"][i]
        inst = Instances(tuple(image.shape[-2:]))
        inst.gt_boxes = Boxes(batch["boxes"][i, :n].float())
        inst.gt_classes = batch["classes"][i, :n].long()
        out.append({"image": image, "instances": inst})
    return out


def load_detector(path: str | Path) -> tuple[nn.Module, dict]:
    """A detector checkpoint (training or shipped) -> (model in eval mode, its objective_config plus ``crop_px``,
    ``calibration_x_min_px`` and ``profile`` (the scale it was trained at; its adaptation uses the same) from its
    data_stats)."""
    path = Path(path)
    obj = load_torch_file(path, "detector checkpoint", "train one with cryolib.pick.detector_training."
                          "finetune_detector, or pass an existing file", "cryolib detector checkpoint")
    if not isinstance(obj, dict) or obj.get("objective") != OBJECTIVE_NAME:
        found = obj.get("objective") if isinstance(obj, dict) else None
        raise CryolibError(f"{path} is not a detector checkpoint (objective {found!r}); "
                           "pass one written by finetune_detector, adapt_detector or ship_detector")
    stats = obj.get("data_stats") or {}
    desc = {**obj["objective_config"], "crop_px": int(stats.get("crop_px", 256)),
            "calibration_x_min_px": stats.get("calibration_x_min_px"), "profile": stats.get("profile", "default")}
    require_detectron2()
    with torch.random.fork_rng(devices=[]):  # building must not move the caller's RNG
        model = build_detector(ViTEncoder(ViTConfig(**obj["model_config"])), float(desc["working_diameter_px"]),
                               size_from_dict(desc["detector_size"]))
    try:
        model.load_state_dict({k: v.float() for k, v in obj["model"].items()})
    except RuntimeError as err:
        raise CryolibError(f"{path} does not fit this cryolib's detector ({str(err)[:200]})") from err
    return model.eval(), desc


def _tile_starts(n: int, tile: int, stride: int) -> list[int]:
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile, stride)) + [n - tile]
    return sorted(set(starts))


@torch.no_grad()
def detect(model: nn.Module, image: np.ndarray, crop_px: int = 256, overlap_px: int = 64,
           batch: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Detections on a normalised working-scale image [H, W] -> (centres [N, 2] x, y working px, scores [N]).

    Tiles of ``crop_px`` overlap by ``overlap_px``; each keeps the detections whose centre lies in its
    core (half the overlap from an inner edge), then one NMS at the model's test threshold merges them.
    """
    from torchvision.ops import nms

    model.eval()
    h, w = image.shape
    stride = crop_px - overlap_px
    tiles = [(y, x) for y in _tile_starts(h, crop_px, stride) for x in _tile_starts(w, crop_px, stride)]
    device = next(model.parameters()).device
    boxes, scores = [], []
    for i in range(0, len(tiles), batch):
        inputs = []
        for y0, x0 in tiles[i:i + batch]:
            crop = np.zeros((crop_px, crop_px), np.float32)
            part = image[y0:y0 + crop_px, x0:x0 + crop_px]
            crop[:part.shape[0], :part.shape[1]] = part
            inputs.append({"image": torch.from_numpy(crop)[None].to(device)})
        results = model.inference(inputs, do_postprocess=False)
        for (y0, x0), res in zip(tiles[i:i + batch], results):
            b = res.pred_boxes.tensor.cpu().numpy().astype(np.float64)
            c = (b[:, :2] + b[:, 2:]) / 2
            half = overlap_px / 2
            lo_x, lo_y = (half if x0 > 0 else -np.inf), (half if y0 > 0 else -np.inf)
            hi_x = crop_px - half if x0 + crop_px < w else np.inf
            hi_y = crop_px - half if y0 + crop_px < h else np.inf
            keep = (c[:, 0] >= lo_x) & (c[:, 0] < hi_x) & (c[:, 1] >= lo_y) & (c[:, 1] < hi_y)
            keep &= (c[:, 0] + x0 < w) & (c[:, 1] + y0 < h)  # not in the padding
            boxes.append(b[keep] + np.array([x0, y0, x0, y0]))
            scores.append(res.scores.cpu().numpy()[keep])
    b = torch.from_numpy(np.concatenate(boxes)) if boxes else torch.zeros(0, 4, dtype=torch.float64)
    s = torch.from_numpy(np.concatenate(scores)).double() if scores else torch.zeros(0, dtype=torch.float64)
    keep = nms(b, s, model.roi_heads.box_predictor.test_nms_thresh).numpy()
    b, s = b.numpy()[keep], s.numpy()[keep]
    centres = (b[:, :2] + b[:, 2:]) / 2 - 0.5  # continuous -> pixel-centre convention
    return centres.astype(np.float32), s.astype(np.float32)
