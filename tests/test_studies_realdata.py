"""cryolib.studies.realdata on a tiny simulated CryoPPP folder (the real folders are optional)."""

import math

import numpy as np
import pytest

from cryolib.studies import realdata as rd


def test_real_denoising_check_scores_every_method_on_the_same_regions(tiny_sim_10291):
    d = tiny_sim_10291.diameter_px
    methods = {"Topaz-Denoise": ("topaz", {})}
    rows, examples = rd.real_denoising_check(tiny_sim_10291.root, d, n_micrographs=2, n_pairs=5, methods=methods)
    assert len(rows) == 2 * 2 and set(rows["method"]) == {rd.RAW, "Topaz-Denoise"}
    assert rows["snr_eq11_db"].map(math.isfinite).all()
    assert rows.groupby("micrograph")["n_pairs"].nunique().eq(1).all()  # same pairs for every method
    assert set(examples["images"]) == {rd.RAW, "Topaz-Denoise"}
    summary = rd.denoising_summary(rows, methods)
    raw = summary[summary["method"] == rd.RAW]
    assert np.allclose(raw["gain_over_raw_db"], 0.0)
    topaz = summary[summary["method"] == "Topaz-Denoise"]["mean_snr_eq11_db"].iloc[0]
    expected = rows[rows["method"] == "Topaz-Denoise"]["snr_eq11_db"].mean()
    assert topaz == pytest.approx(expected)


def test_every_real_method_is_a_registered_denoiser_with_known_options():
    from cryolib.denoise.registry import get_denoiser
    for label, (name, options) in rd.REAL_METHODS.items():
        assert set(options) <= set(get_denoiser(name).options), label
    assert rd.REAL_METHODS["Block mean (16 px)"] == ("blockmean", {"block_px": 16})
