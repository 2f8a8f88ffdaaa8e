"""Pickers by name (``cryoemmae``, ``blob``, ``topaz``, ...): one interface and one entry point.

A method is a :class:`Picker` subclass decorated with :func:`register_picker` in its own module
under ``cryolib/pick/``; importing :mod:`cryolib.pick` imports every module there
(:func:`load_pickers`), so a new method is one new file. Notebooks, studies, ``cryolib pick``
and the benchmarks all call :func:`pick_micrographs`.

Thresholds: a picker keeps the picks with ``score >= threshold``. ``threshold=None`` means the
threshold calibrated on the reference micrograph when one is given (:meth:`Picker.calibrate`:
the best F1 under overlap60, Cryo-EMMAE §4.1), else the method's documented operating point
(:attr:`Picker.default_threshold`; None keeps every pick). ``threshold=-math.inf`` keeps every
pick with its score (the studies do that and apply thresholds while scoring). Each returned
DataFrame records the threshold it was cut at in ``df.attrs["threshold"]`` (None: not cut).
"""

from __future__ import annotations

import abc
import importlib
import logging
import math
import os
import pkgutil
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Sequence, Union

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cryolib.core.errors import CryolibError
from cryolib.evaluate.pr_curve import best_f1_threshold, precision_recall_curve
from cryolib.io.micrographs import micrograph_stem, read_micrograph
from cryolib.processing import preprocess as pp

__all__ = ["PICKERS", "CALIBRATION_RULE", "Picker", "CheckedReference", "register_picker", "picker_names",
           "get_picker", "load_pickers", "pick_micrographs", "micrograph_shapes", "check_reference",
           "best_f1_threshold_on", "keep_scores_from"]

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
CALIBRATION_RULE = "overlap60"  # Cryo-EMMAE §4.1
MAX_CALIBRATION_THRESHOLDS = 500  # thresholds tried on the reference (all distinct scores up to this many)


class CheckedReference(NamedTuple):
    """A validated reference: the micrograph's path, its particles (x, y in its px) and its (H, W)."""

    path: Path
    coords: pd.DataFrame
    shape: tuple[int, int]


# --------------------------------------------------------------------------- input checks
def micrograph_shapes(paths: Sequence[PathLike]) -> dict[str, tuple[int, int]]:
    """Read every micrograph once (readable, finite, 2-D) -> {stem: (H, W)} in path order; stems must be unique."""
    shapes: dict[str, tuple[int, int]] = {}
    for path in tqdm(paths, desc="check inputs", disable=None, leave=False):
        stem = micrograph_stem(path)
        if stem in shapes:
            raise CryolibError(f"two input micrographs are named {stem!r} ({path}); output files are named "
                               "by micrograph, so names must be unique")
        image = pp.check_image(read_micrograph(path)[0], str(path))
        shapes[stem] = (int(image.shape[0]), int(image.shape[1]))
    return shapes


def check_reference(reference: Any) -> CheckedReference:
    """Validate ``(micrograph_path, coords)``: a readable micrograph and at least one particle (x, y px) on it."""
    if not isinstance(reference, (tuple, list)) or len(reference) != 2:
        raise CryolibError("reference must be a pair (micrograph path, DataFrame of its particles' x, y in px)")
    path, coords = Path(reference[0]), reference[1]
    if not isinstance(coords, pd.DataFrame) or not {"x", "y"} <= set(coords.columns) or len(coords) == 0:
        raise CryolibError(f"reference coordinates for {path} need at least one particle with columns x, y (px)")
    xy = coords[["x", "y"]].to_numpy(np.float64)
    if not np.isfinite(xy).all():
        raise CryolibError(f"reference coordinates for {path} hold NaN/inf values; fix the coordinate file")
    image = pp.check_image(read_micrograph(path)[0], f"reference micrograph {path}")
    h, w = image.shape
    inside = (xy[:, 0] > -0.5) & (xy[:, 0] < w - 0.5) & (xy[:, 1] > -0.5) & (xy[:, 1] < h - 0.5)
    if not inside.any():
        raise CryolibError(f"no reference particle lies inside the {w} x {h} px reference micrograph {path}; "
                           "give x, y in that micrograph's px (top-left origin)")
    return CheckedReference(path, coords, (int(h), int(w)))


def _check_paths(paths: Sequence[PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        raise CryolibError(f"paths={paths!r} is a single path; pass a list of micrograph paths")
    out = [Path(p) for p in paths]
    if not out:
        raise CryolibError("no micrographs to pick; pass at least one micrograph path")
    return out


def _check_threshold(threshold: float | None) -> float | None:
    if threshold is None:
        return None
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise CryolibError(f"threshold must be a number (score units of the method), got {threshold!r}") from None
    if math.isnan(t):
        raise CryolibError("threshold is NaN; pass a number, -inf to keep every pick, or None for the default")
    return t


def keep_scores_from(picks: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    """The picks with ``score >= threshold`` (None or -inf: all, unchanged); records it in ``attrs["threshold"]``."""
    out = picks if threshold is None or threshold == -math.inf else (
        picks[picks["score"] >= threshold].reset_index(drop=True))
    out.attrs["threshold"] = threshold
    return out


# --------------------------------------------------------------------------- calibration
def best_f1_threshold_on(picks: pd.DataFrame, coords: pd.DataFrame, diameter_px: float, method: str = "") -> float:
    """The score threshold whose picks (score >= it) best match ``coords`` on ONE micrograph: max F1, overlap60.

    ``picks`` carry every candidate with its score; ``coords``: x, y (px) of the true particles.
    Ties go to the lowest threshold (more picks). Raises when no pick matches any particle.
    """
    who = f"the {method} picker" if method else "the picker"
    if len(picks) == 0:
        raise CryolibError(f"{who} found no candidates on the reference micrograph, so there is no threshold "
                           "to calibrate; check the particle diameter or pass --threshold")
    curve = precision_recall_curve({"reference": picks}, {"reference": coords}, diameter_px, CALIBRATION_RULE,
                                   max_thresholds=MAX_CALIBRATION_THRESHOLDS)
    best = best_f1_threshold(curve)
    if not best["f1"] > 0:
        raise CryolibError(f"none of the {len(picks)} picks of {who} on the reference micrograph matches one of "
                           f"its {len(coords)} particles ({CALIBRATION_RULE}); check that the coordinates are in "
                           "that micrograph's px and the diameter is right, or pass --threshold")
    log.info("calibrated %s on the reference: threshold %.4g (F1 %.3f, precision %.3f, recall %.3f, %d picks)",
             who, best["threshold"], best["f1"], best["precision"], best["recall"], best["n_picks"])
    return float(best["threshold"])


# --------------------------------------------------------------------------- the interface
class Picker(abc.ABC):
    """One picking method. Subclasses set ``name`` and ``default_threshold`` and implement
    :meth:`pick_all` (every candidate with its score); :meth:`prepare` checks their own inputs
    and fits what they need. :meth:`pick` checks every input before any work."""

    name: ClassVar[str] = ""
    #: The documented operating point without a reference (score units); None keeps every pick.
    default_threshold: ClassVar[float | None] = None

    def prepare(self, paths: list[Path], diameter_px: float, shapes: dict[str, tuple[int, int]], *,
                checkpoint: Any = None, reference: CheckedReference | None = None, seed: int = 0) -> Any:
        """Check the method's own inputs and return what :meth:`pick_all` needs (fitting, if any, last).

        ``shapes``: {stem: (H, W)} of ``paths``, already read and checked. The default takes no checkpoint.
        """
        if checkpoint is not None:
            raise CryolibError(f"{self.name!r} takes no checkpoint (only the cryoemmae and detector methods do)")
        return None

    @abc.abstractmethod
    def pick_all(self, paths: list[Path], diameter_px: float, state: Any, *, seed: int = 0,
                 progress: bool = True) -> dict[str, pd.DataFrame]:
        """Every candidate pick -> {stem: DataFrame[x, y, diameter, score]} in each micrograph's px."""

    def pick(self, paths: Sequence[PathLike], diameter_px: float, *, checkpoint: Any = None,
             reference: tuple[PathLike, pd.DataFrame] | None = None, threshold: float | None = None,
             seed: int = 0, progress: bool = True) -> dict[str, pd.DataFrame]:
        """Pick micrograph files -> {stem: DataFrame[x, y, diameter, score]} in each micrograph's px.

        ``diameter_px``: particle diameter in input px. ``reference``: (micrograph path, DataFrame of
        its particles' x, y in px). ``threshold``: see the module docstring. Every input (micrographs,
        reference, checkpoint, sizes) is checked before any calibration or picking.
        """
        d = pp.check_diameter(diameter_px)
        paths = _check_paths(paths)
        t = _check_threshold(threshold)
        shapes = micrograph_shapes(paths)
        ref = check_reference(reference) if reference is not None else None
        state = self.prepare(paths, d, shapes, checkpoint=checkpoint, reference=ref, seed=int(seed))
        if t is None:
            t = self.calibrate_prepared(ref, d, state, int(seed)) if ref is not None else self.default_threshold
        picks = self.pick_all(paths, d, state, seed=int(seed), progress=progress)
        return {stem: keep_scores_from(df, t) for stem, df in picks.items()}

    def calibrate(self, reference: tuple[PathLike, pd.DataFrame], diameter_px: float, *, checkpoint: Any = None,
                  seed: int = 0) -> float | None:
        """The score threshold that maximises F1 (overlap60) of this method's picks on the ONE reference
        micrograph against its coordinates; None for a method without a threshold."""
        d = pp.check_diameter(diameter_px)
        ref = check_reference(reference)
        state = self.prepare([ref.path], d, micrograph_shapes([ref.path]), checkpoint=checkpoint, reference=ref,
                             seed=int(seed))
        return self.calibrate_prepared(ref, d, state, int(seed))

    def calibrate_prepared(self, ref: CheckedReference, diameter_px: float, state: Any, seed: int) -> float | None:
        """The threshold of this method's rule on the reference, with ``state`` from :meth:`prepare` (so a
        study can fit once, then calibrate and pick): by default, the reference picked once with every
        score and the best-F1 threshold on it."""
        picks = self.pick_all([ref.path], diameter_px, state, seed=seed, progress=False)
        return best_f1_threshold_on(picks[micrograph_stem(ref.path)], ref.coords, diameter_px, self.name)


# --------------------------------------------------------------------------- the registry
PICKERS: dict[str, type[Picker]] = {}


def register_picker(cls: type[Picker]) -> type[Picker]:
    """Class decorator: register a :class:`Picker` subclass under its ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, Picker)):
        raise CryolibError(f"register_picker needs a Picker subclass, got {cls!r}")
    name = cls.name
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise CryolibError(f"picker {cls.__qualname__} needs a lower-case identifier as its name, got {name!r}")
    old = PICKERS.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise CryolibError(f"two pickers are named {name!r}: {old.__module__}.{old.__qualname__} and "
                           f"{cls.__module__}.{cls.__qualname__}; rename one")
    PICKERS[name] = cls
    return cls


def load_pickers() -> None:
    """Import every module of :mod:`cryolib.pick`, so each registers its pickers."""
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not info.name.startswith("_") and info.name != "registry":
            importlib.import_module(f"{__package__}.{info.name}")


def picker_names() -> tuple[str, ...]:
    """The registered picking methods, sorted."""
    return tuple(sorted(PICKERS))


def get_picker(name: str) -> Picker:
    """A fresh instance of the picker registered as ``name``."""
    if name not in PICKERS:
        raise CryolibError(f"unknown picking method {name!r}; choose one of {', '.join(picker_names())}")
    return PICKERS[name]()


def pick_micrographs(method: str, paths: Sequence[PathLike], diameter_px: float, checkpoint: Any = None,
                     reference: tuple[PathLike, pd.DataFrame] | None = None, threshold: float | None = None,
                     seed: int = 0, progress: bool = True) -> dict[str, pd.DataFrame]:
    """Pick micrograph files with the method registered as ``method`` (see :meth:`Picker.pick`).

    -> {stem: DataFrame[x, y, diameter, score]} in each micrograph's px. ``threshold=None``: the
    threshold calibrated on ``reference`` when given, else the method's ``default_threshold``;
    ``-math.inf``: every pick with its score.
    """
    return get_picker(method).pick(paths, diameter_px, checkpoint=checkpoint, reference=reference,
                                   threshold=threshold, seed=seed, progress=progress)
