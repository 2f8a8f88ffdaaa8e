"""Topaz (topaz-em 0.3.20) as a real peer picker: pretrained and trained from scratch.

Scale convention (methods.md, Topaz section): Topaz's pickers work at ~4–8 Å/px with a
particle radius of ~8 px, so micrographs are Fourier-downsampled by an integer factor
(:func:`topaz_scale_factor`) and GMM-normalised exactly as ``topaz preprocess -s FACTOR``
does, and picks are scaled back to input pixels. Scores are Topaz's logits.

How Topaz is driven: preprocessing and scoring + non-maximum suppression (the body of
``topaz extract``) call topaz's Python functions in-process; training runs
``topaz train`` in a subprocess through a small seeded launcher (Topaz has no seed flag,
and its crop sampler draws an unseeded ``np.random.default_rng()``; the launcher seeds
Python/NumPy/torch and that generator so that the same seed gives the same model).
The launcher also corrects Topaz 0.3.20's ``pixels_given_radius``, which counts a 2-D
label disk (2r+1) times over (a 3-D meshgrid summed over its third axis: 203 px for
r = 3 instead of 29). ``topaz train -n`` turns the expected particle count into the
positive fraction pi with it, so every trained model's logits were shifted up by about
log(2r+1) and score 0 meant nothing; with the count corrected a PN model's logit 0 is
p = 0.5 of a label pixel (:data:`TRAINED_THRESHOLD`).
Topaz-Denoise lives in :mod:`cryolib.denoise.topaz`. The pretrained picker is registered as
``topaz`` (:class:`TopazMethod`, :mod:`cryolib.pick.registry`), at score 0 without a reference.
Trained models: :func:`train_from_scratch` (a labelled training set) and
:func:`train_on_reference` (ONE annotated micrograph, the bar for few-shot pickers).
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from cryolib.core.errors import CryolibError
from cryolib.io.micrographs import COORDINATE_COLUMNS
from cryolib.pick.registry import CheckedReference, Picker, register_picker

# The input side and training live in their own modules (size); re-exported so callers keep one import.
from cryolib.pick.topaz_prep import (  # noqa: F401
    Images,
    _check_diameter,
    _load_images,
    _topaz_preprocess,
    _workdir,
    prepare_micrographs,
    topaz_scale_factor,
)
from cryolib.pick.topaz_training import (  # noqa: F401
    _DISK_PIXELS,
    _SEEDED_TOPAZ,
    LABEL_RADIUS_PX,
    REFERENCE_SCHEDULE,
    TRAINABLE_MODELS,
    TRAINED_THRESHOLD,
    _best_epoch,
    _run_topaz,
    label_subset,
    train_from_scratch,
    train_on_reference,
    validation_curve,
)

__all__ = [
    "PRETRAINED_PICKERS", "TRAINABLE_MODELS", "topaz_version", "topaz_scale_factor",
    "EXTRACT_THRESHOLD", "TRAINED_THRESHOLD", "LABEL_RADIUS_PX", "prepare_micrographs", "pick_pretrained",
    "pick_with_model", "TopazMethod", "train_from_scratch", "train_on_reference", "label_subset",
    "REFERENCE_SCHEDULE", "validation_curve",
]

log = logging.getLogger(__name__)


PRETRAINED_PICKERS = ("resnet8_u32", "resnet8_u64", "resnet16_u32", "resnet16_u64")
#: ``topaz extract``'s documented default threshold (logit -6, p >= 0.0025): a permissive cut meant
#: to be refined by the user; on real data it keeps 3-10x too many picks (report on real-10028/10059).
EXTRACT_THRESHOLD = -6.0
def topaz_version() -> str:
    """The installed Topaz version, e.g. ``"0.3.20"``."""
    import topaz

    return str(topaz.__version__)


def _extract(mic_dir: Path, shapes: dict[str, tuple[int, int]], factor: int, model: str,
             diameter_px: float, threshold: float, device: int) -> dict[str, pd.DataFrame]:
    """Score prepared micrographs with a Topaz model and run its NMS (body of ``topaz extract``)."""
    from topaz.extract import nms_iterator, score_images

    radius_ds = max(1, int(round(diameter_px / 2.0 / factor)))
    paths = [str(mic_dir / f"{name}.mrc") for name in shapes]
    picks: dict[str, pd.DataFrame] = {}
    t0 = time.perf_counter()
    try:
        stream = nms_iterator(score_images(model, paths, device=device), radius_ds, threshold)
        for path, scores, coords in tqdm(stream, total=len(paths), desc="topaz extract", disable=len(paths) < 4):
            name = Path(path).stem
            height, width = shapes[name]
            h_ds, w_ds = int(height / factor), int(width / factor)  # as topaz.utils.image.downsample
            coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
            # Fourier cropping samples the input at k * (W / W_ds), so scale each axis by that spacing.
            picks[name] = pd.DataFrame({"x": coords[:, 0] * (width / w_ds), "y": coords[:, 1] * (height / h_ds),
                                        "diameter": float(diameter_px),
                                        "score": np.asarray(scores, dtype=np.float64)})[list(COORDINATE_COLUMNS)]
    except Exception as err:  # topaz raises bare Exceptions / torch errors; report them as ours
        raise CryolibError(f"Topaz scoring with model {model!r} failed: {type(err).__name__}: {err}") from err
    seconds = time.perf_counter() - t0
    log.info("topaz extract (%s, radius %d px at 1/%d scale): %d micrograph(s), %.2f s (%.2f s each)",
             Path(model).name, radius_ds, factor, len(paths), seconds, seconds / max(1, len(paths)))
    return {name: picks[name] for name in shapes}


def _pick(images: Images, model: str, diameter_px: float, threshold: float,
          workdir: str | os.PathLike | None, device: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    _check_diameter(diameter_px)
    loaded = _load_images(images)
    shapes = {name: image.shape for name, image in loaded.items()}
    with _workdir(workdir) as work:
        mic_dir, factor = prepare_micrographs(loaded, diameter_px, work / "preprocessed", seed=seed)
        return _extract(mic_dir, shapes, factor, model, diameter_px, threshold, device)


def pick_pretrained(images: Images, diameter_px: float, model: str = "resnet16_u64",
                    threshold: float = -math.inf, workdir: str | os.PathLike | None = None,
                    device: int = -1, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Pick with Topaz's general pretrained model at its own scale; coordinates in input px.

    ``diameter_px`` (input px) sets the downsampling factor and the NMS radius (diameter/2
    at the downsampled scale). Picks with logit ``score <= threshold`` are dropped; the
    default keeps all. ``seed``: the pixel subsample of the GMM normalisation. The models
    ship inside the wheel and load offline.
    """
    if model not in PRETRAINED_PICKERS:
        raise CryolibError(f"unknown Topaz pretrained picker {model!r}; choose one of {', '.join(PRETRAINED_PICKERS)}")
    return _pick(images, model, diameter_px, threshold, workdir, device, seed)


def pick_with_model(images: Images, model_path: str | os.PathLike, diameter_px: float,
                    threshold: float = -math.inf, workdir: str | os.PathLike | None = None,
                    device: int = -1, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Pick with a Topaz model file from :func:`train_from_scratch` (same ``diameter_px`` and scale)."""
    path = Path(model_path)
    if not path.is_file():
        raise CryolibError(f"Topaz model file {path} does not exist; pass the .sav path train_from_scratch returned")
    return _pick(images, str(path), diameter_px, threshold, workdir, device, seed)


@register_picker
class TopazMethod(Picker):
    """Topaz's general pretrained picker (``resnet16_u64``, :func:`pick_pretrained`) on micrograph files.

    Scores are logits: the default threshold 0 is p = 0.5, the operating point the study scores it at.
    """

    name = "topaz"
    default_threshold = 0.0

    def prepare(self, paths: list[Path], diameter_px: float, shapes: dict[str, tuple[int, int]], *,
                checkpoint: Any = None, reference: CheckedReference | None = None, seed: int = 0) -> None:
        """Each micrograph (and the reference) must be at least 16 x 16 px."""
        super().prepare(paths, diameter_px, shapes, checkpoint=checkpoint, reference=reference, seed=seed)
        named = list(zip(paths, shapes.values())) + ([(reference.path, reference.shape)] if reference else [])
        for path, shape in named:
            if min(shape) < 16:
                raise CryolibError(f"micrograph {path} is {shape[1]} x {shape[0]} px; Topaz needs at least 16 x 16")

    def pick_all(self, paths: list[Path], diameter_px: float, state: None, *, seed: int = 0,
                 progress: bool = True) -> dict[str, pd.DataFrame]:
        """Every pick of Topaz's non-maximum suppression with its logit, in one pass over ``paths``."""
        return pick_pretrained(paths, diameter_px, threshold=-math.inf, seed=seed)
