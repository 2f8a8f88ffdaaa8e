"""The particle coverage of micrographs, for curation heads that use it (:mod:`cryolib.curate.head`).

A curation head may take one more feature: the log10 fraction of the micrograph that its particles cover
(:func:`cryolib.curate.features.particle_coverage`). An empty micrograph and a good one differ in little
else. Curation does not run pickers itself (``pick`` and ``curate`` are sibling layers), so this module,
above both, makes the counter: DRACO's detector (default: the shipped ``detector_default.pt``, the
picking head on the same DRACO backbone) picks at the particle diameter, and the picks scoring at least
``min_score`` are counted. ``min_score`` 0.7 (development check at 1024 px on the curation analogs: 71–129
such picks per good micrograph and 10–28 per empty one, mean per analog) is stricter than the picker's
F1-best threshold, so that an empty micrograph's false picks stay few.
"""

from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np

from cryolib.core.errors import CryolibError
from cryolib.curate.features import particle_coverage

__all__ = ["DEFAULT_MIN_SCORE", "particles_spec", "coverage_counter", "counter_for"]

DEFAULT_MIN_SCORE = 0.7  # detector score from which a pick counts (module docstring)


def particles_spec(checkpoint: str | os.PathLike | None = None, min_score: float = DEFAULT_MIN_SCORE) -> dict:
    """``features["particles"]`` of a curation head counted with the detector (``checkpoint`` None: the shipped
    one) at ``min_score``."""
    if not (math.isfinite(min_score) and 0.0 <= min_score <= 1.0):
        raise CryolibError(f"min_score must be a detector score in [0, 1], got {min_score}")
    return {"picker": "detector", "checkpoint": None if checkpoint is None else str(checkpoint),
            "min_score": float(min_score)}


def coverage_counter(diameter_px: float, checkpoint: str | os.PathLike | None = None,
                     min_score: float = DEFAULT_MIN_SCORE) -> Callable[[np.ndarray], float]:
    """image (counts, any size) -> log10 particle coverage: the detector's picks with score >= ``min_score`` at
    ``diameter_px`` (px), counted by :func:`~cryolib.curate.features.particle_coverage`. Loads the detector once."""
    from cryolib.pick.detector import pick_detector, shipped_detector
    from cryolib.pick.detector_model import load_detector

    if not (math.isfinite(diameter_px) and diameter_px > 0):
        raise CryolibError(f"the particle diameter must be a positive number of px, got {diameter_px}")
    particles_spec(checkpoint, min_score)  # checks min_score
    model, desc = load_detector(shipped_detector(checkpoint))

    def coverage(image: np.ndarray) -> float:
        picks = pick_detector(model, desc, np.asarray(image), float(diameter_px))
        return particle_coverage(int((picks["score"] >= min_score).sum()), np.shape(image), float(diameter_px))

    return coverage


def counter_for(spec: dict, diameter_px: float) -> Callable[[np.ndarray], float]:
    """The counter a head's ``features["particles"]`` (:func:`particles_spec`) asks for, at ``diameter_px``."""
    if spec.get("picker") != "detector":
        raise CryolibError(f"unknown particle picker {spec.get('picker')!r} in the curation head; this cryolib counts "
                           "particles with the detector")
    return coverage_counter(diameter_px, spec.get("checkpoint"), float(spec.get("min_score", DEFAULT_MIN_SCORE)))
