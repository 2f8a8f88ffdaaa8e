"""DRACO's picking head as a registered picker: ``cryolib pick --method detector``.

A detectron2 ViTDet (simple feature pyramid p2–p6 + Faster R-CNN, :mod:`cryolib.models.vitdet`) on the
shared ViT encoder, fine-tuned in two stages (:mod:`cryolib.pick.detector_training`):

* without ``--checkpoint`` it uses the shipped general detector :data:`DEFAULT_CHECKPOINT`
  (``cryolib/assets/detector_default.pt``, written by :func:`ship_detector` from a stage-1 checkpoint);
* with ``--reference-coords`` it first adapts the detector to that ONE annotated micrograph
  (:func:`~cryolib.pick.detector_training.adapt_detector`, seeded by ``--seed``, its profile's fixed step
  schedule: about 2 minutes on 2 cores, the same detector on any machine),
  then picks; the default threshold is then the best-F1 score on the quarter of the reference that
  adaptation held out (:func:`calibrate_detector`: scores on the crops it trained on are optimistic);
* without a reference the operating point is :data:`DEFAULT_THRESHOLD` (a Faster R-CNN class probability).

Scores (class probabilities in [0, 1]) go into the output files. Micrographs are picked at the working scale
(:mod:`cryolib.pick.detector_data`: diameter 32 px, per-micrograph robust normalisation) in overlapping tiles,
and the picks are mapped back to input px.
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from cryolib.core.atomic import atomic_write_bytes, atomic_write_text, install_files
from cryolib.core.errors import CryolibError
from cryolib.core.jsonable import to_jsonable
from cryolib.core.provenance import git_commit
from cryolib.io.micrographs import micrograph_stem, read_micrograph
from cryolib.pick.detector_data import from_working, working_image
from cryolib.pick.detector_model import ASSETS, detect, load_detector
from cryolib.pick.registry import CheckedReference, Picker, best_f1_threshold_on, register_picker
from cryolib.training.checkpoint import CHECKPOINT_FORMAT

__all__ = ["DEFAULT_CHECKPOINT", "DEFAULT_THRESHOLD", "DetectorPicker", "pick_detector", "calibrate_detector",
           "ship_detector", "shipped_detector"]

log = logging.getLogger(__name__)

DEFAULT_NAME = "detector_default"
DEFAULT_CHECKPOINT = ASSETS / f"{DEFAULT_NAME}.pt"
DEFAULT_THRESHOLD = 0.5  # class probability: the detector's operating point without a reference
#: What the shipped file keeps of a training checkpoint (no optimiser, scaler, RNG or history).
KEPT = ("objective", "objective_config", "model_config", "data_stats", "step", "epoch", "torch_version")


def shipped_detector(path: str | Path | None = None) -> Path:
    """The shipped general detector (or ``path``); a one-line CryolibError that says how to make it when absent."""
    target = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not target.is_file():
        if path is not None:
            raise CryolibError(f"detector checkpoint {target} not found; pass an existing file written by "
                               "finetune_detector, adapt_detector or ship_detector")
        raise CryolibError(f"the general detector is not installed at {target}; run notebooks/07_draco_picking.ipynb "
                           "at the default profile (it fine-tunes and ships it with "
                           "cryolib.pick.detector.ship_detector), or pass --checkpoint")
    return target


def pick_detector(model: torch.nn.Module, desc: dict, image: Any, diameter_px: float) -> pd.DataFrame:
    """Every detection on one micrograph (array, input px) -> DataFrame[x, y, diameter, score] in input px.

    ``desc``: the detector's description from :func:`~cryolib.pick.detector_model.load_detector`."""
    d_work = float(desc["working_diameter_px"])
    work = working_image(image, diameter_px, d_work)
    xy, scores = detect(model, work.image, crop_px=int(desc.get("crop_px", 256)), overlap_px=int(round(2 * d_work)))
    return from_working(xy, scores, work)


def calibrate_detector(picks: pd.DataFrame, coords: pd.DataFrame, diameter_px: float, desc: dict) -> float:
    """The best-F1 threshold (overlap60) of the reference's ``picks`` against its ``coords``, on the part of the
    reference that adaptation held out (x >= ``desc["calibration_x_min_px"]``) when it holds a labelled
    particle, else on the whole micrograph."""
    x_min = desc.get("calibration_x_min_px")
    if x_min is not None and (coords["x"] >= x_min).any():
        picks = picks[picks["x"] >= x_min].reset_index(drop=True)
        coords = coords[coords["x"] >= x_min].reset_index(drop=True)
    return best_f1_threshold_on(picks, coords, diameter_px, DetectorPicker.name)


@register_picker
class DetectorPicker(Picker):
    """The ViTDet detector (DRACO's picking head). ``checkpoint``: a detector checkpoint (None: the shipped
    one). With a reference it is adapted to that micrograph first (seeded), then calibrated on it."""

    name = "detector"
    default_threshold = DEFAULT_THRESHOLD

    def prepare(self, paths: list[Path], diameter_px: float, shapes: dict[str, tuple[int, int]], *,
                checkpoint: Any = None, reference: CheckedReference | None = None, seed: int = 0) -> Any:
        """Load the detector (checked), then adapt it to the reference when one is given (last: the slow part)."""
        from cryolib.pick.detector_training import adapt_detector

        source = shipped_detector(checkpoint)
        model, desc = load_detector(source)
        if reference is None:
            return model, desc
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="cryolib-detector-") as tmp:
            adapted = adapt_detector(source, (reference.path, reference.coords), diameter_px, tmp, seed=seed,
                                     profile=desc["profile"])
            model, desc = load_detector(adapted)
        log.info("detector adapted to %s in %.1f s", reference.path.name, time.perf_counter() - t0)
        return model, desc

    def pick_all(self, paths: list[Path], diameter_px: float, state: Any, *, seed: int = 0,
                 progress: bool = True) -> dict[str, pd.DataFrame]:
        """Every detection with its score (class probability) per micrograph, in input px."""
        model, desc = state
        return {micrograph_stem(p): pick_detector(model, desc, read_micrograph(p)[0], diameter_px)
                for p in tqdm(paths, desc="pick (detector)", disable=None if progress else True)}

    def calibrate_prepared(self, ref: CheckedReference, diameter_px: float, state: Any, seed: int) -> float:
        """Best F1 on the reference's held-out part (see :func:`calibrate_detector`)."""
        picks = self.pick_all([ref.path], diameter_px, state, seed=seed, progress=False)[micrograph_stem(ref.path)]
        return calibrate_detector(picks, ref.coords, diameter_px, state[1])


def _slim(ckpt: dict, provenance: dict) -> bytes:
    slim = {"format": CHECKPOINT_FORMAT, **{k: ckpt[k] for k in KEPT if k in ckpt}, "model": ckpt["model"],
            "provenance": provenance, "history": [], "val_history": []}
    buffer = io.BytesIO()
    torch.save(slim, buffer)
    return buffer.getvalue()


def _relative(path: Any) -> str:
    """``path`` relative to the repository when it lies inside it (cards must not carry this machine's paths)."""
    root = ASSETS.parents[1]
    try:
        return str(Path(str(path)).resolve().relative_to(root))
    except ValueError:
        return str(path)


def _card(ckpt: dict, filename: str, size_mb: float, facts: dict, measured: pd.DataFrame | None) -> str:
    desc, cfg, stats = ckpt["objective_config"], ckpt["model_config"], ckpt.get("data_stats") or {}
    n_params = sum(v.numel() for v in ckpt["model"].values())
    lines = [f"# Model card: `{filename}` (ViTDet particle detector)", "",
             "**What it is.** DRACO's picking head: detectron2's simple feature pyramid (p2-p6) and Faster R-CNN",
             "(one class, no mask head) on the shared ViT encoder, fine-tuned on annotated micrographs (stage 1).",
             "`cryolib pick --method detector` uses it without `--checkpoint`; with `--reference-coords` it is first",
             "adapted to that one micrograph.", "",
             f"- Encoder `{cfg['name']}` ({cfg['embed_dim']} wide, {cfg['depth']} deep, patch {cfg['patch_size']} px), "
             f"heads `{desc['detector_size']['name']}`; {n_params:,} parameters ({size_mb:.1f} MB).",
             f"- Initialised from `{_relative(desc.get('init'))}`; {ckpt.get('step')} steps; working scale: particle "
             f"diameter {desc['working_diameter_px']:g} px, background-subtracted, normalised by median/MAD.",
             f"- Training data: {stats.get('n_images')} micrographs, {stats.get('n_particles')} particles.",
             *[f"- {k}: {v}" for k, v in facts.items()], ""]
    if measured is not None and len(measured):
        lines += ["**Measured**:", "", measured.to_markdown(index=False, floatfmt=".3f"), ""]
    return "\n".join(lines) + "\n"


def ship_detector(checkpoint: str | Path, out_dir: str | Path, install: bool = False, *,
                  facts: dict | None = None, measured: pd.DataFrame | None = None,
                  assets_dir: str | Path | None = None) -> dict[str, Path]:
    """Write ``out_dir/detector_default.pt`` (model only) and ``.md`` (card with ``facts`` and ``measured``);
    ``install`` also copies both into ``cryolib/assets`` (or ``assets_dir``) as one set."""
    load_detector(checkpoint)  # checks it is a detector that loads
    ckpt = torch.load(Path(checkpoint), map_location="cpu", weights_only=True)
    prov = {"source_checkpoint": to_jsonable(Path(checkpoint)), "git_commit": git_commit(),
            "shipped": time.strftime("%Y-%m-%dT%H:%M:%S")}
    blob = _slim(ckpt, prov)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pt, md = out / f"{DEFAULT_NAME}.pt", out / f"{DEFAULT_NAME}.md"
    atomic_write_bytes(pt, blob)
    atomic_write_text(md, _card(ckpt, pt.name, len(blob) / 2**20, dict(facts or {}), measured))
    paths = {"checkpoint": pt, "card": md}
    if install:
        paths["installed"] = install_files([pt, md], Path(assets_dir) if assets_dir else ASSETS)[0]
    return paths
