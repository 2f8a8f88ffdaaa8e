"""Training Topaz pickers from random weights: on a labelled set, or on ONE annotated micrograph.

Each setting and why (measured on real-10028/10059 and the default-profile analogs; see the
``topaz`` section of the report):

* ``-n`` is the expected number of particles per micrograph, i.e. an estimate of the TRUE count.
  When it does not exceed the labelled count, the labels are taken as complete and the objective is
  PN (Topaz itself switches GE-binomial to PN then); above it, the unlabelled part is learnt with
  GE-binomial (positive-unlabelled). The default is the labelled count: right for simulated analogs
  (labels are complete) and for a fully annotated reference micrograph.
* pi is computed from that count with the label disk counted right (the launcher in
  :mod:`cryolib.pick.topaz` corrects Topaz 0.3.20's ``pixels_given_radius``); a PN model's logit 0
  is then p = 0.5, :data:`~cryolib.pick.topaz.TRAINED_THRESHOLD`. Before the fix, logits were
  shifted by about +2 (log 7) and F1 at score 0 was 0.27-0.44 instead of 0.71 on real-10028.
* ``--radius 3`` (:data:`~cryolib.pick.topaz.LABEL_RADIUS_PX`, Topaz's default) at the scale of
  :func:`~cryolib.pick.topaz.topaz_scale_factor` (particle radius ~8 px, that of Topaz's
  pretrained models; ResNet8's receptive field is 71 px, so the whole particle is seen).
* ResNet8 with 32 units (Topaz's defaults; Cryo-EMMAE §4.1), Adam at Topaz's 2e-4, minibatches of
  crops with 1/16 positives (Topaz's balance). The budget (epochs x minibatches x crops) is the
  caller's; a crop costs about 4-10 ms on one of 2 loaded CPU cores, so Topaz's own default of
  10 x 1000 x 256 (2.6 M crops) is hours on a laptop.
* The saved epoch with the best validation AUPRC when a validation set is given, else the last one
  (or the last one finished within ``max_minutes``).
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from tqdm import tqdm

from cryolib.core.atomic import atomic_path, atomic_write_text
from cryolib.core.errors import CryolibError
from cryolib.io.micrographs import micrograph_stem, read_micrograph
from cryolib.pick.topaz_prep import _check_diameter, _load_images, _workdir, prepare_micrographs

__all__ = ["TRAINABLE_MODELS", "TRAINED_THRESHOLD", "LABEL_RADIUS_PX", "REFERENCE_SCHEDULE", "label_subset", "train_from_scratch", "train_on_reference", "validation_curve"]

log = logging.getLogger(__name__)

TRAINABLE_MODELS = ("resnet6", "resnet8", "resnet16", "conv31", "conv63", "conv127")
#: The operating point of models from :func:`train_from_scratch` / :func:`train_on_reference` when no
#: annotated micrograph is left to calibrate on: logit 0, p = 0.5 that a pixel is within
#: ``LABEL_RADIUS_PX`` of a centre (meaningful once pi is counted right, see the module docstring).
TRAINED_THRESHOLD = 0.0
#: ``topaz train --radius`` (Topaz's default): label pixels within 3 px of a centre at the 1/factor
#: scale, i.e. about 3/8 of the particle radius, so that score maxima sit on the centres.
LABEL_RADIUS_PX = 3
# The label-disk pixel count Topaz 0.3.20 should use (exec'd by the launcher; tests check it).
_DISK_PIXELS = (
    "def disk_pixels(radius, dims=2):\n"
    "    g = np.arange(-int(radius), int(radius) + 1) ** 2\n"
    "    return int((sum(np.meshgrid(*[g] * dims, indexing='ij')) <= radius ** 2).sum())\n"
)
# Runs `topaz <argv>` after seeding and correcting pixels_given_radius; argv[1] is the seed.
_SEEDED_TOPAZ = (
    "import itertools, sys, random, numpy as np, torch\n"
    "_seed = int(sys.argv.pop(1)); _calls = itertools.count()\n"
    "random.seed(_seed); np.random.seed(_seed % 2**32); torch.manual_seed(_seed)\n"
    "_rng = np.random.default_rng\n"
    "np.random.default_rng = lambda seed=None: _rng([_seed, next(_calls)] if seed is None else seed)\n"
    + _DISK_PIXELS +
    "import topaz.stats, topaz.training\n"
    "topaz.stats.pixels_given_radius = topaz.training.pixels_given_radius = disk_pixels\n"
    "from topaz.main import main\n"
    "sys.argv[0] = 'topaz'\n"
    "main()\n"
)


#: :func:`train_on_reference`'s default budget: (epochs, minibatches per epoch, crops per minibatch).
REFERENCE_SCHEDULE = (4, 50, 64)


def _run_topaz(argv: list[str], seed: int, log_path: Path, epoch_glob: str | None = None,
               num_epochs: int = 0, max_seconds: float | None = None) -> bool:
    """Run ``topaz <argv>`` seeded in a subprocess; stdout+stderr to ``log_path``; CryolibError on failure.

    ``max_seconds``: stop Topaz after this wall time (it saves a model after every epoch); returns
    True when it was stopped, False when it finished.
    """
    cmd = [sys.executable, "-c", _SEEDED_TOPAZ, str(seed), *argv]
    shown = "topaz " + " ".join(argv)
    log.info("running (seed %d): %s", seed, shown)
    t0 = time.perf_counter()
    stopped = False
    with open(log_path, "w") as out, tqdm(total=num_epochs, desc="topaz train", unit="epoch",
                                          disable=num_epochs < 2) as bar:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        while True:
            try:
                proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if epoch_glob:
                    bar.update(len(list(log_path.parent.glob(epoch_glob))) - bar.n)
                if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                    proc.terminate()
                    proc.wait()
                    stopped = True
                    break
    if proc.returncode != 0 and not stopped:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise CryolibError(f"`{shown}` failed with exit code {proc.returncode} (full log: {log_path}):\n{tail}")
    log.info("topaz %s %s after %.1f s", argv[0], "stopped at the time limit" if stopped else "finished",
             time.perf_counter() - t0)
    return stopped


def _write_targets(path: Path, coords: Mapping[str, pd.DataFrame], shapes: Mapping[str, tuple[int, int]],
                   factor: int) -> None:
    """Topaz targets file (``image_name  x_coord  y_coord``, tab-separated) at the downsampled scale."""
    rows = []
    for name, df in coords.items():
        height, width = shapes[name]
        h_ds, w_ds = int(height / factor), int(width / factor)
        x = np.clip(np.round(df["x"].to_numpy(float) * w_ds / width), 0, w_ds - 1).astype(int)
        y = np.clip(np.round(df["y"].to_numpy(float) * h_ds / height), 0, h_ds - 1).astype(int)
        rows.append(pd.DataFrame({"image_name": name, "x_coord": x, "y_coord": y}))
    table = pd.concat(rows, ignore_index=True)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def _validation_rows(curve: pd.DataFrame) -> pd.DataFrame:
    """``[epoch, loss, auprc]`` of the test (validation) rows of Topaz's train/test curve."""
    test = curve[curve["split"] == "test"]
    auprc = test["auprc"] if "auprc" in test else pd.Series(np.nan, index=test.index)  # no column without validation
    return pd.DataFrame({"epoch": test["epoch"].astype(int).to_numpy(),
                         "loss": pd.to_numeric(test["loss"], errors="coerce").to_numpy(),
                         "auprc": pd.to_numeric(auprc, errors="coerce").to_numpy()})


def _best_epoch(curve_path: Path, models: dict[int, Path]) -> tuple[int, float]:
    """Saved epoch with the best validation AUPRC in Topaz's train/test curve (last saved without validation)."""
    val = _validation_rows(pd.read_csv(curve_path, sep="\t"))
    val = val[val["epoch"].isin(list(models))]
    auprc = val["auprc"].to_numpy()
    if not np.isfinite(auprc).any():  # no validation set (or NaN throughout): the last epoch
        return max(models), math.nan
    i = int(np.nanargmax(auprc))
    return int(val["epoch"].iloc[i]), float(auprc[i])


def _check_training_set(images: Mapping[str, np.ndarray], coords: Mapping[str, pd.DataFrame], what: str) -> None:
    if not images:
        raise CryolibError(f"no {what} micrographs given")
    if set(images) != set(coords):
        raise CryolibError(f"{what} images and coordinates name different micrographs: "
                           f"{sorted(set(images) ^ set(coords))}; pass one coordinate table per image")
    bad = [k for k, df in coords.items() if not isinstance(df, pd.DataFrame) or not {"x", "y"} <= set(df.columns)]
    if bad:
        raise CryolibError(f"{what} coordinates for {bad} must be DataFrames with columns x, y (px)")
    if sum(len(df) for df in coords.values()) == 0:
        raise CryolibError(f"the {what} coordinates hold no particles; Topaz needs labelled positives")


def _objective(expected: float | None, labelled: float) -> tuple[str, float]:
    """(``--method``, ``-n``): PN when the expected count per micrograph is at most the labelled one."""
    if expected is not None and not (np.isfinite(expected) and expected > 0):
        raise CryolibError(f"expected particles per micrograph = {expected!r} must be a number > 0")
    n = labelled if expected is None else float(expected)
    return ("PN" if n <= labelled * (1 + 1e-9) else "GE-binomial"), n


def train_from_scratch(train_images: Mapping[str, np.ndarray], train_coords: Mapping[str, pd.DataFrame],
                       diameter_px: float, out_dir: str | os.PathLike, epochs: int, epoch_size: int,
                       val_images: Mapping[str, np.ndarray] | None = None,
                       val_coords: Mapping[str, pd.DataFrame] | None = None, model: str = "resnet8",
                       expected_particles_per_micrograph: float | None = None, seed: int = 0,
                       minibatch_size: int = 64, units: int = 32, label_radius_px: int = LABEL_RADIUS_PX,
                       workdir: str | os.PathLike | None = None, max_minutes: float | None = None) -> Path:
    """Train a Topaz picker from random weights (``topaz train --no-pretrained``); return its .sav.

    Cryo-EMMAE §4.1 baseline: ResNet8, the epoch with the best validation AUPRC. Settings and why:
    module docstring. ``expected_particles_per_micrograph`` (Topaz ``-n``): the TRUE count per
    micrograph; None = the mean labelled count (labels complete: PN). ``label_radius_px``: Topaz
    ``--radius`` in downsampled px. ``max_minutes``: stop after this wall time and keep the epochs
    saved so far (results then depend on the machine). Writes ``training_curve.csv`` and
    ``topaz_train.log`` in ``out_dir``.
    """
    _check_diameter(diameter_px)
    if model not in TRAINABLE_MODELS:
        raise CryolibError(f"unknown Topaz architecture {model!r}; choose one of {', '.join(TRAINABLE_MODELS)}")
    if epochs < 1 or epoch_size < 1 or minibatch_size < 1:
        raise CryolibError(f"epochs={epochs}, epoch_size={epoch_size}, minibatch_size={minibatch_size} must be >= 1")
    if max_minutes is not None and not max_minutes > 0:
        raise CryolibError(f"max_minutes={max_minutes!r} must be > 0 (or None for no limit)")
    if (val_images is None) != (val_coords is None):
        raise CryolibError("pass both val_images and val_coords, or neither")
    train = _load_images(train_images)
    _check_training_set(train, train_coords, "training")
    method, n_expected = _objective(expected_particles_per_micrograph,
                                    float(np.mean([len(train_coords[k]) for k in train])))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = out / f"topaz_{model}"
    for stale in out.glob(f"{prefix.name}_epoch*.sav"):
        log.warning("removing %s from an earlier run", stale)
        stale.unlink()
    with _workdir(workdir) as work:
        train_dir, factor = prepare_micrographs(train, diameter_px, work / "train_images", seed=seed)
        _write_targets(work / "train_targets.txt", train_coords, {k: v.shape for k, v in train.items()}, factor)
        argv = ["train", "--no-pretrained", "--model", model, "--units", str(units), "--method", method,
                "-n", repr(n_expected), "--radius", str(label_radius_px), "--train-images", str(train_dir),
                "--train-targets", str(work / "train_targets.txt"), "--num-epochs", str(epochs),
                "--epoch-size", str(epoch_size), "--minibatch-size", str(minibatch_size),
                "--save-prefix", str(prefix), "-o", str(out / "training_curve.tsv"),
                "--device", "-1", "--num-workers", "0"]
        if val_images is not None:
            val = _load_images(val_images)
            _check_training_set(val, val_coords, "validation")
            val_dir, _ = prepare_micrographs(val, diameter_px, work / "val_images", seed=seed)
            _write_targets(work / "val_targets.txt", val_coords, {k: v.shape for k, v in val.items()}, factor)
            argv += ["--test-images", str(val_dir), "--test-targets", str(work / "val_targets.txt")]
        stopped = _run_topaz(argv, seed, out / "topaz_train.log", f"{prefix.name}_epoch*.sav", epochs,
                             max_seconds=None if max_minutes is None else 60.0 * max_minutes)
    return _select_model(out, prefix, epochs, stopped)


def _loads(path: Path) -> bool:
    """Whether a Topaz model file unpickles (one cut off by the time limit does not)."""
    import torch

    try:
        torch.load(path, weights_only=False, map_location="cpu")
        return True
    except Exception:  # noqa: BLE001  (any unpickling error means the file is incomplete)
        return False


def _select_model(out: Path, prefix: Path, epochs: int, stopped: bool = False) -> Path:
    """Pick the saved epoch by validation AUPRC; write the curve as CSV beside it."""
    models = {int(p.stem.rsplit("_epoch", 1)[1]): p for p in out.glob(f"{prefix.name}_epoch*.sav")}
    if stopped and models and not _loads(models[max(models)]):
        models[max(models)].unlink()  # cut off while being written
        del models[max(models)]
    if not models or (len(models) != epochs and not stopped):
        raise CryolibError(f"topaz train saved {len(models)} of {epochs} epoch models under {out}"
                           + ("; no epoch finished within max_minutes, allow more time" if stopped else "")
                           + f"; see {out / 'topaz_train.log'}")
    curve_tsv = out / "training_curve.tsv"
    best, auprc = _best_epoch(curve_tsv, models)
    atomic_write_text(out / "training_curve.csv", pd.read_csv(curve_tsv, sep="\t").to_csv(index=False))
    curve_tsv.unlink()
    log.info("topaz train: chose epoch %d of %d (validation AUPRC %.4f): %s", best, epochs, auprc, models[best])
    return models[best]


def validation_curve(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Per-epoch validation loss and AUPRC ``[epoch, loss, auprc]`` of a :func:`train_from_scratch` run.

    Read from ``run_dir/training_curve.csv`` (Topaz's train/test curve); empty without a
    validation set. AUPRC is Topaz's per-pixel area under the precision-recall curve.
    """
    path = Path(run_dir) / "training_curve.csv"
    if not path.is_file():
        raise CryolibError(f"{path} does not exist; point at the out_dir of a finished train_from_scratch run")
    return _validation_rows(pd.read_csv(path))


def label_subset(coords: pd.DataFrame, n_particles: int | None, seed: int = 0) -> pd.DataFrame:
    """``n_particles`` of ``coords`` drawn at random with ``seed`` (all when None or at least their count)."""
    if n_particles is None or n_particles >= len(coords):
        return coords.reset_index(drop=True)
    rows = np.sort(np.random.default_rng(seed).choice(len(coords), size=int(n_particles), replace=False))
    return coords.iloc[rows].reset_index(drop=True)


def train_on_reference(reference_path: str | os.PathLike, coords: pd.DataFrame, diameter_px: float,
                       out_dir: str | os.PathLike, *, n_particles: int | None = None,
                       expected_particles: int | None = None, epochs: int = REFERENCE_SCHEDULE[0],
                       epoch_size: int = REFERENCE_SCHEDULE[1], minibatch_size: int = REFERENCE_SCHEDULE[2],
                       seed: int = 0, max_minutes: float | None = None) -> Path:
    """Topaz trained from scratch on ONE annotated micrograph; returns the .sav (pick with ``pick_with_model``).

    The bar a new few-shot picker is compared against ("Topaz trained on the same labels").
    ``coords``: x, y (px) of the micrograph's particles. ``n_particles``: train on a random subset of
    that many labels (seeded by ``seed``; None = all), for a few-shot curve. ``expected_particles``
    (Topaz ``-n``): the true count on the micrograph; None = ``len(coords)``, so a subset is learnt as
    positive-unlabelled (GE-binomial) and the full set as complete labels (PN). No validation
    micrograph: the last epoch (:data:`REFERENCE_SCHEDULE` by default, 12,800 crops, about 1.5-3
    minutes on 2 loaded CPU cores). ``max_minutes`` bounds the wall time. Writes ``labels_used.csv``
    (the subset) beside the model. Score at :data:`~cryolib.pick.topaz.TRAINED_THRESHOLD` or a
    calibrated threshold.
    """
    path = Path(reference_path)
    if not path.is_file():
        raise CryolibError(f"reference micrograph {path} does not exist; pass the annotated micrograph's path")
    if not isinstance(coords, pd.DataFrame) or not {"x", "y"} <= set(coords.columns) or len(coords) == 0:
        raise CryolibError(f"coordinates for {path} need at least one particle with columns x, y (px)")
    if not np.isfinite(coords[["x", "y"]].to_numpy(np.float64)).all():
        raise CryolibError(f"coordinates for {path} hold NaN/inf values; fix the coordinate file")
    for name, value in (("n_particles", n_particles), ("expected_particles", expected_particles)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise CryolibError(f"{name}={value!r} must be a whole number >= 1 (or None: all labels)")
    image = read_micrograph(path)[0]
    used = label_subset(coords[["x", "y"]], n_particles, seed)
    stem = micrograph_stem(path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "labels_used.csv", used.to_csv(index=False))
    t0 = time.perf_counter()
    model = train_from_scratch({stem: image}, {stem: used}, diameter_px, out, epochs, epoch_size,
                               expected_particles_per_micrograph=expected_particles or len(coords), seed=seed,
                               minibatch_size=minibatch_size, max_minutes=max_minutes)
    log.info("topaz on %s: %d of %d labels, %.1f s -> %s", path.name, len(used), len(coords),
             time.perf_counter() - t0, model.name)
    return model
