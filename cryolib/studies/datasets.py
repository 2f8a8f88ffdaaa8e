"""Notebook 01's study: build every simulated analog and describe it (sizes, optics, SNR, quality).

The figures of notebook 01 are drawn by :mod:`cryolib.studies.plots_datasets` from what these
functions return.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from cryolib.core.errors import CryolibError
from cryolib.core.profiles import get_profile
from cryolib.io.datasets import Dataset, dataset_dir, dataset_summary, load_dataset, load_registry
from cryolib.io.micrographs import read_micrograph
from cryolib.simulate.dataset import build_dataset
from cryolib.simulate.optics import ctf_zero_frequencies, power_spectrum, radial_average

#: Thon-ring display: radial profile shown above this spatial frequency (1/Å), CTF zeros drawn.
THON_MIN_FREQ_PER_A = 1 / 60
THON_N_ZEROS = 6


def analog_names(datasets: Sequence[str] | None = None) -> list[str]:
    """The analogs to build: every registry entry (None) or the named ones (checked against the registry)."""
    registry = load_registry()
    names = list(registry) if datasets is None else list(datasets)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise CryolibError(f"unknown datasets {unknown}; choose from cryolib/io/datasets.yaml: {', '.join(registry)}")
    return names


def build_analogs(names: Sequence[str], profile: str, data_root: str | Path | None = None, seed: int = 0,
                  progress: bool = True) -> dict[str, Dataset]:
    """Build (or reuse, when on disk with the same settings) each analog at the profile's size.

    Training analogs get more micrographs than evaluation-only ones
    (:meth:`cryolib.core.profiles.SimulationSizes.micrographs_for`).
    """
    sim = get_profile(profile).simulation
    registry = load_registry()
    return {name: build_dataset(name, sim.micrographs_for(registry[name].roles), dataset_dir(name, profile, data_root),
                                size_px=sim.micrograph_px, n_frames=sim.n_frames, seed=seed, overwrite="if-stale",
                                progress=progress)
            for name in names}


def open_analogs(names: Sequence[str], profile: str, data_root: str | Path | None = None) -> dict[str, Dataset]:
    """Open analogs that notebook 01 built: {name: Dataset}."""
    return {name: load_dataset(dataset_dir(name, profile, data_root)) for name in names}


def summary_table(built: Mapping[str, Dataset]) -> pd.DataFrame:
    """One row per analog (:func:`cryolib.io.datasets.dataset_summary`)."""
    return pd.DataFrame([dataset_summary(ds) for ds in built.values()])


def first_good(ds: Dataset) -> pd.Series:
    """The metadata row of the first good micrograph (the first micrograph when none is labelled good)."""
    meta = ds.metadata
    good = meta[meta["quality"] == "good"] if "quality" in meta else meta
    return (good if len(good) else meta).iloc[0]


def gallery(built: Mapping[str, Dataset]) -> list[dict]:
    """One good micrograph per analog with its ground truth: [{"name", "image", "truth", "diameter_px", "title"}]."""
    items = []
    for name, ds in built.items():
        stem = first_good(ds)["micrograph"]
        title = f"{name} ({ds.spec.family}, {ds.spec.diameter_A:.0f} Å)" if ds.spec else name
        items.append({"name": name, "image": read_micrograph(ds.path_of(stem))[0], "truth": ds.coordinates(stem),
                      "diameter_px": ds.diameter_px, "title": title})
    return items


def thon_rings(ds: Dataset) -> dict:
    """The power spectrum of one good micrograph, its radial average and the CTF zeros its defocus predicts.

    Returns {"name", "image", "freq_per_A", "profile", "zeros_per_A", "defocus_um"}: the profile above
    :data:`THON_MIN_FREQ_PER_A`, zeros below the Nyquist frequency.
    """
    row = first_good(ds)
    img, px = read_micrograph(ds.path_of(row["micrograph"]))
    freq, prof = radial_average(power_spectrum(img), px)
    keep = freq > THON_MIN_FREQ_PER_A
    defocus = (row["defocus_u_um"] + row["defocus_v_um"]) / 2
    zeros = np.asarray(ctf_zero_frequencies(THON_N_ZEROS, defocus, row["voltage_kV"], row["cs_mm"],
                                            row["amplitude_contrast"]))
    return {"name": ds.name, "image": img, "freq_per_A": freq[keep], "profile": prof[keep],
            "zeros_per_A": zeros[zeros < freq.max()], "defocus_um": (row["defocus_u_um"], row["defocus_v_um"])}


def thon_ring_examples(built: Mapping[str, Dataset], n: int = 3) -> list[dict]:
    """:func:`thon_rings` of the first ``n`` analogs of ``built``."""
    return [thon_rings(ds) for ds in list(built.values())[:n]]


def triplet(ds: Dataset, stem: str | None = None) -> dict[str, np.ndarray]:
    """The DRACO triplet of one micrograph (full, odd, even sums of its motion-corrected movie) and the
    noise-free image: {"stem", "full", "odd", "even", "clean"}."""
    stem = stem or ds.stems[0]
    return {"stem": stem, **{k: read_micrograph(ds.path_of(stem, k))[0] for k in ("full", "odd", "even", "clean")}}


def composition(built: Mapping[str, Dataset]) -> pd.DataFrame:
    """Every micrograph's metadata with its dataset and particle family (DRACO Fig. 1's breakdown)."""
    return pd.concat([ds.metadata.assign(dataset=n, family=ds.spec.family if ds.spec else "")
                      for n, ds in built.items()], ignore_index=True)


def quality_labels(meta: pd.DataFrame) -> pd.Series:
    """Micrographs per quality label: ``good`` or the defect name, most frequent first."""
    return meta["defect"].fillna("").replace("", "good").value_counts()


def dataset_metrics(summary: pd.DataFrame) -> dict:
    """Notebook 01's ``metrics.json`` section: counts, crowding, true SNR (dB) per analog, motion error."""
    return {
        "n_datasets": int(len(summary)),
        "n_micrographs": int(summary["micrographs"].sum()),
        "mean_particles_per_micrograph": float(summary["particles_per_micrograph"].mean()),
        "snr_db": {str(k): float(v) for k, v in zip(summary["dataset"], summary["snr_db"])},
        "max_shift_error_rms_px": float(summary["shift_error_rms_px"].max()),
    }
