"""Curate micrographs with a curation head: scores, accept/reject labels and the files ``cryolib curate`` writes.

``quality.csv``: micrograph, label (accept/reject), score (P(accept)). A micrograph outside the head's
training range (:meth:`~cryolib.curate.head.CurationHead.out_of_range`) is logged as a warning, and
:func:`curate_micrographs` names the statistic in its ``out_of_range`` column (the CLI writes the list
to ``run.yaml``). ``selected_micrographs.star``:
a RELION-compatible selection, block ``data_micrographs`` with ``_rlnMicrographName`` of each accepted
micrograph (the path as given), the STAR file RELION's Select job writes and Import/CTF jobs read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from cryolib.core.atomic import atomic_path
from cryolib.core.errors import CryolibError
from cryolib.curate.head import CurationHead, load_curation_head
from cryolib.curate.probe import ACCEPT

log = logging.getLogger(__name__)

__all__ = ["MIN_SESSION_MICROGRAPHS", "curate_micrographs", "write_quality_csv", "write_selection_star",
           "read_selection_star"]

#: A session-relative head compares each micrograph with the median of the micrographs scored together; fewer
#: than this make a poor median (one micrograph is its own median), and a warning says so.
MIN_SESSION_MICROGRAPHS = 8


def curate_micrographs(paths: Sequence[str | os.PathLike], head: CurationHead | str | os.PathLike | None = None,
                       threshold: float | None = None,
                       coverage_of: Callable[[np.ndarray], float] | None = None) -> pd.DataFrame:
    """Score micrographs with a curation head (default: the shipped one) -> DataFrame with columns
    micrograph (path as given), label ("accept"/"reject"), score (P(accept)), likeliest_class (the head's
    most probable quality class), out_of_range ("" or the image statistic outside the head's training
    range); ``attrs["threshold"]``.

    Micrographs are read and featurised one at a time (memory stays at one micrograph), then scored
    together: a session-relative head (:mod:`cryolib.curate.features`) takes every input as one
    session, so pass one session's micrographs at a time. A file that cannot be read raises before
    the caller has written anything. ``coverage_of``: image -> log10 particle coverage
    (:func:`~cryolib.curate.features.particle_coverage` of a picker's count), for a head that uses it
    (:attr:`~cryolib.curate.head.CurationHead.needs_coverage`; ``cryolib.studies.curation_particles`` makes one).
    """
    from cryolib.io.micrographs import read_micrograph

    if threshold is not None and not (np.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise CryolibError(f"threshold must be a probability in [0, 1], got {threshold}")
    head = head if isinstance(head, CurationHead) else load_curation_head(head)
    if not paths:
        raise CryolibError("no micrographs to curate")
    if head.features.get("session_relative", False) and len(paths) < MIN_SESSION_MICROGRAPHS:
        log.warning("curation head %s judges each micrograph against the median of the micrographs curated together "
                    "(one session); %d make a poor median, so their scores mean little: curate a session of at least "
                    "%d micrographs at a time", head.name, len(paths), MIN_SESSION_MICROGRAPHS)
    if coverage_of is None:
        head.coverage_column(None, len(paths))  # a head that counts particles says what it needs, before any work
    absolute = np.vstack([_features_of(head, read_micrograph(p)[0], coverage_of) for p in paths])
    features = head.session_features(absolute)
    probabilities = head.probe.class_probabilities(features)  # [N, K]
    scores = probabilities[:, head.probe.classes.index(ACCEPT)]  # P(accept), as head.probe.scores gives it
    t = head.threshold if threshold is None else float(threshold)
    table = pd.DataFrame({"micrograph": [str(p) for p in paths],
                          "label": np.where(scores >= t, "accept", "reject"), "score": scores,
                          "likeliest_class": [head.probe.classes[k] for k in probabilities.argmax(axis=1)],
                          "out_of_range": head.out_of_range(absolute)})
    table.attrs["threshold"] = t
    outside = table[table["out_of_range"] != ""]
    if len(outside):
        log.warning("%d of %d micrographs lie outside the training range of curation head %s (e.g. %s: %s); their "
                    "scores mean little. The head expects motion-corrected sums in counts (e-/px), not 8-bit, "
                    "downsampled or normalised images", len(outside), len(table), head.name,
                    Path(outside["micrograph"].iloc[0]).name, outside["out_of_range"].iloc[0])
    log.info("curated %d micrographs with %s: %d accepted (threshold %.3g)", len(table), head.name,
             int((table["label"] == "accept").sum()), t)
    return table


def _features_of(head: CurationHead, image: np.ndarray,
                 coverage_of: Callable[[np.ndarray], float] | None) -> np.ndarray:
    """:meth:`CurationHead.absolute_features` of one micrograph, with its particle coverage when the head uses it."""
    coverage = [coverage_of(image)] if head.needs_coverage else None
    return head.absolute_features([image], coverage)


def write_quality_csv(path: str | os.PathLike, table: pd.DataFrame) -> Path:
    """``quality.csv`` (micrograph, label, score), atomically."""
    with atomic_path(path) as tmp:
        table[["micrograph", "label", "score"]].to_csv(tmp, index=False, float_format="%.6g")
    return Path(path)


def write_selection_star(path: str | os.PathLike, micrographs: Sequence[str]) -> Path:
    """A STAR selection (``data_micrographs`` loop of ``_rlnMicrographName``), atomically; may be empty."""
    lines = ["", "# version 30001", "", "data_micrographs", "", "loop_", "_rlnMicrographName #1"]
    for name in micrographs:
        name = str(name)
        if not name or any(c.isspace() for c in name):
            raise CryolibError(f"micrograph name {name!r} is empty or holds whitespace; STAR names cannot")
        lines.append(name)
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n\n")
    return Path(path)


def read_selection_star(path: str | os.PathLike) -> list[str]:
    """The ``_rlnMicrographName`` entries of a selection STAR file (starfile's parser)."""
    import starfile

    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as err:
        raise CryolibError(f"{path} is not a STAR file ({type(err).__name__}: {err})") from err
    block = blocks.get("micrographs")
    if block is None or "rlnMicrographName" not in getattr(block, "columns", []):
        return []
    return [str(v) for v in block["rlnMicrographName"]]
