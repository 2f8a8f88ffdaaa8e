"""Notebook 01's study functions (cryolib.studies.datasets) on a tiny simulated analog."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryolib.core.errors import CryolibError
from cryolib.io.datasets import load_registry
from cryolib.studies import datasets as sd

NAME = "sim-10291"


def test_analog_names_default_to_the_registry_and_reject_unknown_names():
    assert sd.analog_names() == list(load_registry())
    assert sd.analog_names([NAME]) == [NAME]
    with pytest.raises(CryolibError, match="unknown datasets"):
        sd.analog_names(["sim-99999"])


def test_summary_gallery_and_metrics(tiny_sim_10291):
    built = {NAME: tiny_sim_10291}
    summary = sd.summary_table(built)
    assert summary["dataset"].tolist() == [NAME] and summary["micrographs"].iloc[0] == 3
    m = sd.dataset_metrics(summary)
    assert m["n_datasets"] == 1 and m["n_micrographs"] == 3
    assert m["snr_db"][NAME] == pytest.approx(summary["snr_db"].iloc[0]) and -40 < m["snr_db"][NAME] < 10
    item = sd.gallery(built)[0]
    good = tiny_sim_10291.metadata.loc[tiny_sim_10291.metadata["quality"] == "good", "micrograph"].iloc[0]
    assert item["image"].shape == (192, 192) and len(item["truth"]) == len(tiny_sim_10291.coordinates(good))


def test_thon_ring_zeros_lie_inside_the_measured_band(tiny_sim_10291):
    rings = sd.thon_ring_examples({NAME: tiny_sim_10291}, n=3)
    assert len(rings) == 1
    r = rings[0]
    assert (r["freq_per_A"] > sd.THON_MIN_FREQ_PER_A).all() and len(r["profile"]) == len(r["freq_per_A"])
    assert len(r["zeros_per_A"]) >= 1 and (np.diff(r["zeros_per_A"]) > 0).all()
    assert r["zeros_per_A"].max() < r["freq_per_A"].max() + 1e-9


def test_triplet_full_is_odd_plus_even(tiny_sim_10291):
    t = sd.triplet(tiny_sim_10291)
    assert t["stem"] == tiny_sim_10291.stems[0]
    np.testing.assert_allclose(t["full"], t["odd"] + t["even"], atol=1e-3 * np.abs(t["full"]).max())


def test_composition_and_quality_labels(tiny_sim_10291):
    meta = sd.composition({NAME: tiny_sim_10291})
    assert len(meta) == 3 and (meta["dataset"] == NAME).all() and (meta["family"] == tiny_sim_10291.spec.family).all()
    labels = sd.quality_labels(pd.DataFrame({"defect": [None, "", "ice", "ice", "empty"]}))
    assert labels.to_dict() == {"good": 2, "ice": 2, "empty": 1}
