"""Development checks on real micrographs (CryoPPP EMPIAR-10028 and 10059, ``../shared/realdata``).

A method that only works on our own simulator is not done, so every denoiser is also run on real
micrographs that no simulator made. These folders are optional: nothing in the notebooks needs them,
and ``benchmarks/realdata.py`` skips a folder that is absent.

Curation (:func:`real_curation_check`): the shipped curation head on every micrograph of a set, with
its most probable class and whether the micrograph lies inside the head's training range. CryoPPP
micrographs are curated data, so a working head accepts nearly all of them.

Real micrographs have no clean image, so only DRACO's Eq. 11 SNR is measured. Its regions come from
CryoPPP's picks: signal boxes on isolated picks, background boxes in pick-free ice whose standard
deviation in a blurred copy of the raw micrograph (σ = diameter/4 px, a stand-in for the clean image
that only ranks flatness) is at most the median (:func:`cryolib.evaluate.snr.region_pairs`). CryoPPP's
labels are incomplete, so a few background boxes may hold an unlabelled particle.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from cryolib.core.errors import CryolibError
from cryolib.denoise import denoise_micrograph
from cryolib.evaluate.snr import region_pairs, snr_eq11
from cryolib.io.datasets import load_dataset
from cryolib.io.micrographs import read_micrograph

__all__ = ["REAL_SETS", "REAL_METHODS", "extra_draco_rows", "real_denoising_check", "denoising_summary",
           "real_curation_check", "curation_summary"]

log = logging.getLogger(__name__)

#: name -> particle diameter in px (from the folders' README).
REAL_SETS = {"real-10028": 56.0, "real-10059": 36.0}
RAW = "Raw"
#: table label -> (registry method, options); pixel sizes are unknown (the header's 1 Å is a placeholder),
#: so no low-pass in Å can be applied. The shift ensemble is Table 2's own row (``--shifts 2``); the 16 px
#: block mean is DRACO's patch mosaic with nothing learned inside a patch (a reference, as in Table 2).
REAL_METHODS = {"Topaz-Denoise": ("topaz", {}), "DRACO (shipped)": ("draco", {}),
                "DRACO (shipped, 2 x 2 shifts)": ("draco", {"shifts": 2}),
                "Block mean (16 px)": ("blockmean", {"block_px": 16})}


def _pairs(image: np.ndarray, coords: pd.DataFrame, diameter_px: float, n_pairs: int, seed: int):
    flat = ndimage.gaussian_filter(image.astype(np.float64), diameter_px / 4)
    return region_pairs(flat, coords, diameter_px, n_pairs=n_pairs, seed=seed)


def extra_draco_rows(specs: list[str]) -> dict[str, tuple[str, dict]]:
    """``["LABEL=CHECKPOINT", ...]`` -> {LABEL: ("draco", {"checkpoint": CHECKPOINT})}; each file must exist."""
    rows = {}
    for spec in specs:
        label, sep, path = spec.partition("=")
        label = label.strip()
        if not sep or not label or not path:
            raise CryolibError(f"--draco wants LABEL=CHECKPOINT, got {spec!r}")
        if not Path(path).is_file():
            raise CryolibError(f"--draco {label}: no checkpoint at {path}")
        if label in REAL_METHODS or label in rows:
            raise CryolibError(f"--draco {label}: that label is already a row")
        rows[label] = ("draco", {"checkpoint": path})
    return rows


def real_denoising_check(folder: str | Path, diameter_px: float, n_micrographs: int = 5, n_pairs: int = 20,
                         seed: int = 0, checkpoint: str | Path | None = None,
                         methods: dict[str, tuple[str, dict]] | None = None) -> tuple[pd.DataFrame, dict]:
    """Eq. 11 SNR (dB) of raw and denoised real micrographs -> (rows per micrograph × method, examples).

    The first ``n_micrographs`` micrographs (sorted by name) are used, with the same region pairs for
    every method. ``methods``: label -> (registered denoiser, options); default :data:`REAL_METHODS`.
    ``checkpoint`` overrides the shipped DRACO model for every ``draco`` row whose options name no
    ``"checkpoint"`` of their own (a row with one, e.g. a longer-trained run, uses it). ``examples``
    holds the first micrograph's images per method, for a figure.
    """
    ds = load_dataset(folder)
    methods = dict(REAL_METHODS if methods is None else methods)
    rows, examples = [], {}
    for path in sorted(ds.micrographs)[:n_micrographs]:
        image = read_micrograph(path)[0].astype(np.float32)
        coords = ds.coordinates(path.stem)
        signal, background = _pairs(image, coords, diameter_px, n_pairs, seed)
        outputs = {RAW: image}
        for label, (name, opts) in methods.items():
            own = {"checkpoint": checkpoint if name == "draco" else None, **opts}
            outputs[label] = denoise_micrograph(name, image, None, **own)
        rows += [{"dataset": Path(folder).name, "micrograph": path.stem, "method": label, "n_pairs": len(signal),
                  "snr_eq11_db": snr_eq11(out, signal, background)} for label, out in outputs.items()]
        examples = examples or {"micrograph": path.stem, "images": outputs, "coords": coords}
    return pd.DataFrame(rows), examples


def denoising_summary(rows: pd.DataFrame, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean Eq. 11 SNR (dB) per dataset × method, with the gain over raw."""
    table = rows.pivot_table(index="dataset", columns="method", values="snr_eq11_db", aggfunc="mean")
    order = [RAW, *(methods or REAL_METHODS)]
    table = table[[m for m in order if m in table.columns]]
    long = table.reset_index().melt(id_vars="dataset", var_name="method", value_name="mean_snr_eq11_db")
    raw = long[long["method"] == RAW].set_index("dataset")["mean_snr_eq11_db"]
    long["gain_over_raw_db"] = long["mean_snr_eq11_db"] - long["dataset"].map(raw)
    return long


def real_curation_check(folder: str | Path, head=None) -> pd.DataFrame:
    """A curation head (default: the shipped one) on every micrograph of a real set -> one row per
    micrograph: dataset, micrograph, label, score, likeliest_class, out_of_range
    (:func:`cryolib.curate.select.curate_micrographs`). A head that counts particles counts them at the set's
    particle diameter (:mod:`cryolib.studies.curation_particles`)."""
    from cryolib.curate.head import CurationHead, load_curation_head
    from cryolib.curate.select import curate_micrographs
    from cryolib.studies.curation_particles import counter_for

    ds = load_dataset(folder)
    paths = sorted(ds.micrographs)
    head = head if isinstance(head, CurationHead) else load_curation_head(head)
    coverage_of = counter_for(head.features["particles"], ds.diameter_px) if head.needs_coverage else None
    table = curate_micrographs(paths, head, coverage_of=coverage_of)
    table.insert(0, "dataset", Path(folder).name)
    table["micrograph"] = [Path(p).stem for p in paths]
    return table


def curation_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: micrographs, accepted, outside the training range, median P(accept) and the likeliest
    classes with their counts (e.g. ``"severe_drift 10"``)."""
    out = []
    for name, g in rows.groupby("dataset", sort=False):
        counts = g["likeliest_class"].value_counts()
        out.append({"dataset": name, "micrographs": len(g), "accepted": int((g["label"] == "accept").sum()),
                    "outside_training_range": int((g["out_of_range"] != "").sum()),
                    "median_score": float(g["score"].median()),
                    "likeliest_classes": ", ".join(f"{c} {n}" for c, n in counts.items())})
    return pd.DataFrame(out)
