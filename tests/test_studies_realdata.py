"""cryolib.studies.realdata on a tiny simulated CryoPPP folder (the real folders are optional)."""

import math

import numpy as np
import pytest

from cryolib.core.errors import CryolibError
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


def test_a_draco_row_with_its_own_checkpoint_uses_it(tiny_sim_10291, tmp_path):
    from test_denoise_networks import tiny_checkpoint

    from cryolib.denoise import denoise_micrograph
    from cryolib.io.micrographs import read_micrograph
    ckpt = tiny_checkpoint(tmp_path / "run", "draco")
    methods = {"DRACO (tiny run)": ("draco", {"checkpoint": str(ckpt)}), "shipped": ("draco", {})}
    rows, examples = rd.real_denoising_check(tiny_sim_10291.root, tiny_sim_10291.diameter_px, n_micrographs=1,
                                             n_pairs=5, methods=methods)
    first = sorted(tiny_sim_10291.micrographs)[0]
    image = read_micrograph(first)[0].astype(np.float32)
    assert np.array_equal(examples["images"]["DRACO (tiny run)"], denoise_micrograph("draco", image, checkpoint=ckpt))
    assert np.array_equal(examples["images"]["shipped"], denoise_micrograph("draco", image))
    assert not np.array_equal(examples["images"]["shipped"], examples["images"]["DRACO (tiny run)"])


def test_extra_draco_rows_name_existing_checkpoints(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"x")
    assert rd.extra_draco_rows([f" long run ={ckpt}"]) == {"long run": ("draco", {"checkpoint": str(ckpt)})}
    for spec, message in (("no-equals", "LABEL=CHECKPOINT"), (f"={ckpt}", "LABEL=CHECKPOINT"),
                          ("a=", "LABEL=CHECKPOINT"), (f"a={tmp_path / 'missing.pt'}", "no checkpoint at"),
                          (f"DRACO (shipped)={ckpt}", "already a row")):
        with pytest.raises(CryolibError, match=message):
            rd.extra_draco_rows([spec])
    with pytest.raises(CryolibError, match="already a row"):
        rd.extra_draco_rows([f"a={ckpt}", f"a={ckpt}"])


def test_real_curation_check_scores_every_micrograph_and_summarises(tiny_sim_10291):
    from cryolib.curate.head import CurationHead
    from cryolib.curate.probe import LinearProbe
    from test_curate_features import blob_micrographs

    images = blob_micrographs(6, blobs=True, seed=1) + blob_micrographs(6, blobs=False, seed=2)
    head = CurationHead("stats", LinearProbe(), {"kind": "image_statistics", "n_bands": 4})
    head.probe.fit(head.featurise(images), ["good"] * 6 + ["empty"] * 6)
    rows = rd.real_curation_check(tiny_sim_10291.root, head)
    n = len(list((tiny_sim_10291.root / "micrographs").glob("*.mrc")))
    assert len(rows) == n and list(rows.columns) == ["dataset", "micrograph", "label", "score", "likeliest_class",
                                                     "out_of_range"]
    assert set(rows["likeliest_class"]) <= {"good", "empty"} and rows["score"].between(0, 1).all()
    summary = rd.curation_summary(rows).iloc[0]
    assert summary["micrographs"] == n and summary["accepted"] == int((rows["label"] == "accept").sum())
    assert summary["outside_training_range"] == int((rows["out_of_range"] != "").sum())
    counts = rows["likeliest_class"].value_counts()
    assert summary["likeliest_classes"] == ", ".join(f"{c} {k}" for c, k in counts.items())
