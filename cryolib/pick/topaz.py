"""Topaz (topaz-em 0.3.20) as a real peer picker: pretrained and trained from scratch.

Scale convention (methods.md, Topaz section): Topaz's pickers work at ~4–8 Å/px with a
particle radius of ~8 px, so micrographs are Fourier-downsampled by an integer factor
(:func:`topaz_scale_factor`) and GMM-normalised exactly as ``topaz preprocess -s FACTOR``
does, and picks are scaled back to input pixels. Scores are Topaz's logits
(threshold 0 ⇔ p ≥ 0.5).

How Topaz is driven: preprocessing and scoring + non-maximum suppression (the body of
``topaz extract``) call topaz's Python functions in-process; training runs
``topaz train`` in a subprocess through a small seeded launcher (Topaz has no seed flag,
and its crop sampler draws an unseeded ``np.random.default_rng()``; the launcher seeds
Python/NumPy/torch and that generator so that the same seed gives the same model).
Topaz-Denoise lives in :mod:`cryolib.denoise.topaz`. The pretrained picker is registered as
``topaz`` (:class:`TopazMethod`, :mod:`cryolib.pick.registry`), at score 0 without a reference.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, Union

import numpy as np
import pandas as pd
from tqdm import tqdm

from cryolib.core.atomic import atomic_path, atomic_write_text
from cryolib.core.errors import CryolibError
from cryolib.io.micrographs import COORDINATE_COLUMNS, micrograph_stem, read_micrograph, write_mrc
from cryolib.pick.registry import CheckedReference, Picker, register_picker

__all__ = [
    "PRETRAINED_PICKERS", "TRAINABLE_MODELS", "topaz_version", "topaz_scale_factor",
    "prepare_micrographs", "pick_pretrained", "pick_with_model", "TopazMethod", "train_from_scratch",
    "validation_curve",
]

log = logging.getLogger(__name__)

Images = Union[Mapping[str, np.ndarray], Sequence[Union[str, os.PathLike]]]

PRETRAINED_PICKERS = ("resnet8_u32", "resnet8_u64", "resnet16_u32", "resnet16_u64")
TRAINABLE_MODELS = ("resnet6", "resnet8", "resnet16", "conv31", "conv63", "conv127")
# Runs `topaz <argv>` after seeding; argv[1] is the seed (see module docstring).
_SEEDED_TOPAZ = (
    "import itertools, sys, random, numpy as np, torch\n"
    "_seed = int(sys.argv.pop(1)); _calls = itertools.count()\n"
    "random.seed(_seed); np.random.seed(_seed % 2**32); torch.manual_seed(_seed)\n"
    "_rng = np.random.default_rng\n"
    "np.random.default_rng = lambda seed=None: _rng([_seed, next(_calls)] if seed is None else seed)\n"
    "from topaz.main import main\n"
    "sys.argv[0] = 'topaz'\n"
    "main()\n"
)


def topaz_version() -> str:
    """The installed Topaz version, e.g. ``"0.3.20"``."""
    import topaz

    return str(topaz.__version__)


def topaz_scale_factor(diameter_px: float, target_radius_px: float = 8.0) -> int:
    """Integer downsampling factor that brings the particle radius closest to ``target_radius_px``.

    Closest in log scale, so 20 px radius -> factor 3 (6.7 px) rather than 2 (10 px); never < 1
    (small particles are not upsampled). ``diameter_px`` is in input pixels.
    """
    _check_diameter(diameter_px)
    if not target_radius_px > 0:
        raise CryolibError(f"target_radius_px={target_radius_px} must be > 0 (pixels)")
    ratio = diameter_px / 2.0 / target_radius_px
    candidates = {max(1, math.floor(ratio)), max(1, math.ceil(ratio))}
    return min(sorted(candidates), key=lambda f: abs(math.log(ratio / f)))


def _check_diameter(diameter_px: float) -> None:
    if not (isinstance(diameter_px, (int, float, np.number)) and np.isfinite(diameter_px) and diameter_px > 0):
        raise CryolibError(f"diameter_px={diameter_px!r} must be a finite number > 0 (particle diameter in pixels)")


def _load_images(images: Images) -> dict[str, np.ndarray]:
    """Name -> float32 (H, W) image, from a dict of arrays or a list of micrograph paths."""
    if isinstance(images, Mapping):
        loaded = {str(k): np.asarray(v, dtype=np.float32) for k, v in images.items()}
    elif isinstance(images, (str, os.PathLike)):
        raise CryolibError(f"images={images!r} is a single path; pass a list of paths or a dict of arrays")
    else:
        paths = [Path(p) for p in images]
        stems = [micrograph_stem(p) for p in paths]
        if len(set(stems)) != len(stems):
            raise CryolibError(f"micrograph names are not unique: {stems}; Topaz matches files by name")
        loaded = {stem: read_micrograph(p)[0] for stem, p in zip(stems, paths)}
    if not loaded:
        raise CryolibError("no micrographs given; pass at least one image (dict of arrays or list of paths)")
    for name, image in loaded.items():
        if image.ndim != 2 or min(image.shape) < 16 or not np.isfinite(image).all():
            raise CryolibError(f"micrograph {name!r}: need a finite 2-D image of at least 16x16 px, "
                               f"got shape {image.shape}")
        if os.sep in name or name in ("", ".", ".."):
            raise CryolibError(f"micrograph name {name!r} cannot be used as a file name")
    return loaded


def _topaz_preprocess(image: np.ndarray, factor: int, seed: int) -> np.ndarray:
    """``topaz preprocess -s factor`` on one image: Fourier crop, then 2-component GMM normalisation."""
    from topaz.stats import normalize
    from topaz.utils.image import downsample

    x = downsample(image.astype(np.float32), factor) if factor > 1 else image.astype(np.float32)
    state = np.random.get_state()  # normalize() subsamples pixels with the global NumPy RNG
    np.random.seed(seed % 2**32)
    try:
        x, _ = normalize(x, alpha=900, beta=1, num_iters=100, sample=10, method="gmm")
    finally:
        np.random.set_state(state)
    return x.astype(np.float32)


def prepare_micrographs(images: Images, diameter_px: float, workdir: str | os.PathLike,
                        seed: int = 0) -> tuple[Path, int]:
    """Downsample + normalise micrographs as ``topaz preprocess`` and write ``workdir/<name>.mrc``.

    Returns the folder and the integer downsampling factor (:func:`topaz_scale_factor`).
    """
    factor = topaz_scale_factor(diameter_px)
    loaded = _load_images(images)
    out = Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for name, image in tqdm(loaded.items(), desc="topaz preprocess", disable=len(loaded) < 8):
        write_mrc(out / f"{name}.mrc", _topaz_preprocess(image, factor, seed), 0.0)
    log.info("topaz preprocess: %d micrograph(s), factor %d, %.2f s", len(loaded), factor,
             time.perf_counter() - t0)
    return out, factor


@contextlib.contextmanager
def _workdir(workdir: str | os.PathLike | None) -> Iterator[Path]:
    """The caller's folder (kept), or a temporary one removed on exit."""
    if workdir is not None:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix="cryolib-topaz-") as tmp:
            yield Path(tmp)


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


def _run_topaz(argv: list[str], seed: int, log_path: Path, epoch_glob: str | None = None,
               num_epochs: int = 0) -> None:
    """Run ``topaz <argv>`` seeded in a subprocess; stdout+stderr to ``log_path``; CryolibError on failure."""
    cmd = [sys.executable, "-c", _SEEDED_TOPAZ, str(seed), *argv]
    shown = "topaz " + " ".join(argv)
    log.info("running (seed %d): %s", seed, shown)
    t0 = time.perf_counter()
    with open(log_path, "w") as out, tqdm(total=num_epochs, desc="topaz train", unit="epoch",
                                          disable=num_epochs < 2) as bar:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        while True:
            try:
                proc.wait(timeout=2.0)
                break
            except subprocess.TimeoutExpired:
                if epoch_glob:
                    bar.update(len(list(log_path.parent.glob(epoch_glob))) - bar.n)
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise CryolibError(f"`{shown}` failed with exit code {proc.returncode} (full log: {log_path}):\n{tail}")
    log.info("topaz %s finished in %.1f s", argv[0], time.perf_counter() - t0)


def _validation_rows(curve: pd.DataFrame) -> pd.DataFrame:
    """``[epoch, loss, auprc]`` of the test (validation) rows of Topaz's train/test curve."""
    test = curve[curve["split"] == "test"]
    return pd.DataFrame({"epoch": test["epoch"].astype(int).to_numpy(),
                         "loss": pd.to_numeric(test["loss"], errors="coerce").to_numpy(),
                         "auprc": pd.to_numeric(test["auprc"], errors="coerce").to_numpy()})


def _best_epoch(curve_path: Path, models: dict[int, Path]) -> tuple[int, float]:
    """Epoch with the best validation AUPRC in Topaz's train/test curve (last epoch without validation)."""
    val = _validation_rows(pd.read_csv(curve_path, sep="\t"))
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


def train_from_scratch(train_images: Mapping[str, np.ndarray], train_coords: Mapping[str, pd.DataFrame],
                       diameter_px: float, out_dir: str | os.PathLike, epochs: int, epoch_size: int,
                       val_images: Mapping[str, np.ndarray] | None = None,
                       val_coords: Mapping[str, pd.DataFrame] | None = None, model: str = "resnet8",
                       expected_particles_per_micrograph: int | None = None, seed: int = 0,
                       minibatch_size: int = 256, units: int = 32, label_radius_px: int = 3,
                       workdir: str | os.PathLike | None = None) -> Path:
    """Train a Topaz picker from random weights (``topaz train --no-pretrained``); return its .sav.

    Cryo-EMMAE §4.1 baseline: ResNet8, 400 epochs, the epoch with the best validation AUPRC.
    Images are downsampled as in :func:`prepare_micrographs`; ``label_radius_px`` is Topaz's
    ``--radius`` (positive disk around each centre, downsampled px). ``expected_particles_per_micrograph``
    (Topaz ``-n``) defaults to the mean labelled count; Topaz then treats the labels as complete
    and switches GE-binomial to PN. Writes ``training_curve.csv`` and ``topaz_train.log`` in ``out_dir``.
    """
    _check_diameter(diameter_px)
    if model not in TRAINABLE_MODELS:
        raise CryolibError(f"unknown Topaz architecture {model!r}; choose one of {', '.join(TRAINABLE_MODELS)}")
    if epochs < 1 or epoch_size < 1 or minibatch_size < 1:
        raise CryolibError(f"epochs={epochs}, epoch_size={epoch_size}, minibatch_size={minibatch_size} must be >= 1")
    if (val_images is None) != (val_coords is None):
        raise CryolibError("pass both val_images and val_coords, or neither")
    train = _load_images(train_images)
    _check_training_set(train, train_coords, "training")
    if expected_particles_per_micrograph is not None and not expected_particles_per_micrograph > 0:
        raise CryolibError(f"expected_particles_per_micrograph={expected_particles_per_micrograph} must be > 0")
    n_expected = expected_particles_per_micrograph or max(1, round(np.mean([len(d) for d in train_coords.values()])))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = out / f"topaz_{model}"
    for stale in out.glob(f"{prefix.name}_epoch*.sav"):
        log.warning("removing %s from an earlier run", stale)
        stale.unlink()
    with _workdir(workdir) as work:
        train_dir, factor = prepare_micrographs(train, diameter_px, work / "train_images", seed=seed)
        _write_targets(work / "train_targets.txt", train_coords, {k: v.shape for k, v in train.items()}, factor)
        argv = ["train", "--no-pretrained", "--model", model, "--units", str(units), "--method", "GE-binomial",
                "-n", str(n_expected), "--radius", str(label_radius_px), "--train-images", str(train_dir),
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
        _run_topaz(argv, seed, out / "topaz_train.log", f"{prefix.name}_epoch*.sav", epochs)
    return _select_model(out, prefix, epochs)


def _select_model(out: Path, prefix: Path, epochs: int) -> Path:
    """Pick the saved epoch by validation AUPRC; write the curve as CSV beside it."""
    models = {int(p.stem.rsplit("_epoch", 1)[1]): p for p in out.glob(f"{prefix.name}_epoch*.sav")}
    if len(models) != epochs:
        raise CryolibError(f"topaz train saved {len(models)} of {epochs} epoch models under {out}; "
                           f"see {out / 'topaz_train.log'}")
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
