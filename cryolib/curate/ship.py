"""Ship a curation head: the head file and its Markdown model card, written by the same run.

The shipped head is ``cryolib/assets/draco_curation.pt`` (+ ``.md``), what ``cryolib curate`` uses
without ``--checkpoint``. It stores the probe only (a few kB) and names its encoder
``asset:draco_default.pt``, the shipped DRACO model; installing checks that the head was trained
on exactly that model's encoder weights (fingerprint), so the pair always agrees.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from cryolib.core.atomic import atomic_write_text, install_files
from cryolib.core.errors import CryolibError
from cryolib.curate.head import (
    ASSETS_DIR,
    DEFAULT_ENCODER,
    CurationHead,
    encoder_fingerprint,
    load_encoder,
    save_curation_head,
)

log = logging.getLogger(__name__)

__all__ = ["SHIPPED_HEAD_NAME", "MAX_HEAD_MB", "ship_curation_head", "write_curation_card"]

SHIPPED_HEAD_NAME = "draco_curation"
MAX_HEAD_MB = 20.0


def write_curation_card(head_path: str | os.PathLike, head: CurationHead, evaluation: pd.DataFrame,
                        per_class: pd.DataFrame | None = None, notes: str = "") -> Path:
    """Write ``<head>.md``: what the head is, its encoder, training data and measured evaluation."""
    path = Path(head_path)
    size_kb = path.stat().st_size / 1024
    lines = [
        f"# Model card: `{path.name}` (micrograph curation head)",
        "",
        "**What it is.** A linear head (logistic regression on standardised features) on the frozen encoder's",
        "mean-pooled patch embedding (DRACO 2024 §5.3, linear probing), with the image statistics beside it when the",
        "features say so. It scores the quality classes it was trained on (`classes` below); score = P(accept) =",
        "P(good); accept when score >= the threshold. `cryolib curate` uses the shipped head when no `--checkpoint`",
        "is given.",
        "",
        f"- Name: `{head.name}`; threshold {head.threshold:g}; file {size_kb:.1f} kB (the probe only).",
        f"- Features: { {k: v for k, v in head.features.items() if k != 'range'} }; classes: "
        f"{', '.join(head.probe.classes)}.",
        f"- Encoder: `{head.encoder}` (weights sha256 `{head.encoder_sha256}`).",
        f"- Trained on: {head.card}",
        "",
        "**Data.** Only simulated micrographs (`cryolib.simulate`, analogs of EMPIAR sets); the quality labels are the",
        "simulator's defects (empty, thick ice, crystalline ice, contamination, severe drift, carbon only). It has",
        "never seen a real micrograph; check it on a few labelled micrographs of your data and adjust `--threshold`.",
        "Its image statistics assume motion-corrected sums in counts (e-/px). With `session_relative: all` every",
        "feature is taken relative to the median of the micrographs curated together, so curate one session at a",
        "time (dose, pixel size and defocus range then matter less) and expect it to work when most of the session is",
        "usable. A micrograph far outside the training range of a statistic (mean counts relative to the session,",
        "the rest as measured) is flagged: `cryolib curate` warns and lists it in run.yaml. On CryoPPP's 8-bit,",
        "downsampled PNGs (`benchmarks/realdata_curation.py`) every micrograph is flagged.",
        *([f"It also counts particles ({head.features['particles']}): its last feature is the fraction of the",
           "micrograph that the confident picks cover, so `cryolib curate` needs the particle diameter",
           "(`--diameter-px`, in px, as for `cryolib pick`)."] if head.needs_coverage else []),
        "",
        "**Measured on held-out analogs** (particle families the training analogs lack; `cryolib.studies.draco_curation`):",
        "",
        evaluation.to_markdown(index=False, floatfmt=".3f"),
        "",
    ]
    if per_class is not None:
        lines += ["Per quality class (`correct`: accepted share for good, rejected share for a defect):", "",
                  per_class.to_markdown(index=False, floatfmt=".3f"), ""]
    lines.append(notes)
    return atomic_write_text(path.with_suffix(".md"), "\n".join(lines) + "\n")


def ship_curation_head(head: CurationHead, evaluation: pd.DataFrame, out_dir: str | os.PathLike,
                       per_class: pd.DataFrame | None = None, card: Mapping[str, Any] | None = None,
                       install: bool = False, name: str = SHIPPED_HEAD_NAME, notes: str = "") -> Path:
    """Write ``out_dir/<name>.pt`` (the head) and ``out_dir/<name>.md`` (its card); return the head file.

    ``install=True`` points the head at the shipped DRACO model (``asset:draco_default.pt``, which must
    exist and carry the same encoder weights the head was trained on) and copies both files into
    ``cryolib/assets/``. Raises before writing anything when that check fails.
    """
    if evaluation.empty:
        raise CryolibError("ship_curation_head needs the evaluation table for the model card")
    if head.features.get("kind") == "image_statistics":
        raise CryolibError("only a head on DRACO's encoder is shipped (the DRACO curation head)")
    head = dataclasses.replace(head, card={**head.card, **dict(card or {})}, _encoder_cache=None)
    if install:
        model, _ = load_encoder(DEFAULT_ENCODER)  # raises a clear error until the DRACO model is shipped
        if encoder_fingerprint(model) != head.encoder_sha256:
            raise CryolibError(f"the head was trained on {head.encoder}, not on the shipped DRACO model "
                               f"{ASSETS_DIR / 'draco_default.pt'}; train the head on that model before installing")
        head = dataclasses.replace(head, encoder=DEFAULT_ENCODER)
    pt = save_curation_head(Path(out_dir) / f"{name}.pt", head)
    if pt.stat().st_size > MAX_HEAD_MB * 2**20:
        raise CryolibError(f"{pt} is {pt.stat().st_size / 2**20:.1f} MB, over the {MAX_HEAD_MB:g} MB limit for a shipped head")
    md = write_curation_card(pt, head, evaluation, per_class, notes)
    if install:
        install_files([pt, md], ASSETS_DIR)
        log.info("installed %s and %s into %s", pt.name, md.name, ASSETS_DIR)
    return pt
