"""cryolib.pick.cryoemmae end to end on a tiny simulated dataset: pretrain -> fit -> save -> load -> pick.

cpu-tiny model, 192 px micrographs, one short epoch: this checks the plumbing, not picking quality.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from cryolib.pick import cryoemmae as ce
from cryolib.pick import pick_micrographs
from cryolib.core.errors import CryolibError
from cryolib.io.micrographs import read_micrograph, write_mrc
from cryolib.pick.cryoemmae_picker import PickerConfig
from cryolib.training.loop import load_checkpoint


@pytest.fixture(scope="module")
def ds(tiny_sim_10291):
    """3 micrographs of 192 px (2 train, 1 test); see conftest.py."""
    return tiny_sim_10291


@pytest.fixture(scope="module")
def trained(ds, tmp_path_factory):
    """(checkpoint, fitted picker, picker file, test image, its picks)."""
    out = tmp_path_factory.mktemp("pretrain")
    train = ds.split("train")
    ckpt = ce.pretrain_mae(train, ds.diameter_px, out, profile="smoke", seed=0, progress=False)
    ref = train[0]
    picker = ce.fit_picker(ckpt, train, ref, ds.coordinates(ref.stem), ds.diameter_px, seed=0)
    path = ce.save_picker(out / "picker.pt", picker, "cpu-tiny", {"trained_on": "sim-10291"})
    image = read_micrograph(ds.split("test")[0])[0]
    return ckpt, picker, path, image, picker.pick(image, ds.diameter_px)


def test_pretrain_writes_checkpoint_log_and_stats(trained):
    ckpt, *_ = trained
    state = load_checkpoint(ckpt)
    assert (ckpt.parent / "train_log.csv").is_file()
    stats = state["data_stats"]
    assert 0 < stats["std"] < 1 and 0 < stats["mean"] < 1 and stats["tile_px"] == 64
    assert stats["picker_config"]["scale_mode"] == "diameter"
    assert state["model_config"]["name"] == "cpu-tiny" and state["objective"] == "cryoemmae"


def test_fit_picker_overrides(trained, ds):
    ckpt, *_ = trained
    train = ds.split("train")[:2]
    coords = ds.coordinates(train[0].stem)
    repo = ce.fit_picker(ckpt, train, train[0], coords, ds.diameter_px,
                         overrides={"standardize_tokens": False, "reference_cluster_rule": "count"})
    assert not repo.config.standardize_tokens and repo.config.reference_cluster_rule == "count"
    measured = ce.fit_picker(ckpt, train, train[0], coords, ds.diameter_px, overrides={"particle_fraction": None})
    assert measured.particle_fraction == pytest.approx(measured.reference_fraction)
    with pytest.raises(CryolibError, match="unknown picker settings"):
        ce.fit_picker(ckpt, train, train[0], coords, ds.diameter_px, overrides={"fraction": 0.1})


def test_save_load_gives_identical_picks(trained, ds):
    _, picker, path, image, picks = trained
    loaded = ce.load_picker(path)
    assert loaded.particle_cluster == picker.particle_cluster
    np.testing.assert_array_equal(loaded.kmeans.cluster_centers_, picker.kmeans.cluster_centers_)
    assert (loaded.mean, loaded.std) == (picker.mean, picker.std)
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    pd.testing.assert_frame_equal(loaded.pick(image, ds.diameter_px), picks)
    assert {"x", "y", "diameter", "score"} <= set(picks.columns)


def test_picker_file_is_encoder_only_and_small(trained, tmp_path):
    ckpt, picker, path, *_ = trained
    obj = torch.load(path, weights_only=True)
    assert obj["format"] == ce.PICKER_FORMAT and obj["model_name"] == "cpu-tiny"
    assert obj["encoder"] and all(k.startswith("encoder.") for k in obj["encoder"])
    assert obj["card"] == {"trained_on": "sim-10291"} and obj["provenance"]["cryolib_version"]
    assert path.stat().st_size < 0.5 * ckpt.stat().st_size and path.stat().st_size < 1_000_000
    half = ce.save_picker(tmp_path / "half.pt", picker, None, dtype="float16")
    assert half.stat().st_size < 0.7 * path.stat().st_size
    assert all(p.dtype == torch.float32 for p in ce.load_picker(half).model.parameters())


def test_load_picker_errors(trained, tmp_path):
    ckpt, _, path, *_ = trained
    with pytest.raises(CryolibError, match="not found"):
        ce.load_picker(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(CryolibError, match="could not be read"):
        ce.load_picker(bad)
    with pytest.raises(CryolibError, match="pretraining checkpoint"):
        ce.load_picker(ckpt)
    obj = torch.load(path, weights_only=True)
    obj["encoder"].pop(next(iter(obj["encoder"])))
    torch.save(obj, tmp_path / "short.pt")
    with pytest.raises(CryolibError, match="does not fit"):
        ce.load_picker(tmp_path / "short.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CryolibError, match="not a cryolib-cryoemmae-picker"):
        ce.load_picker(tmp_path / "other.pt")


def test_set_reference_returns_a_refitted_copy(trained, ds):
    _, picker, *_ = trained
    stem = ds.split("train")[1].stem
    image = read_micrograph(ds.path_of(stem))[0]
    new = ce.set_reference(picker, image, ds.coordinates(stem), ds.diameter_px)
    assert new is not picker and 0 <= new.particle_cluster < picker.config.global_k
    assert new.kmeans is picker.kmeans
    truth = ds.coordinates(stem)
    assert new.reference_fraction == pytest.approx(len(truth) * math.pi * ds.diameter_px**2 / 4 / image.size)
    with pytest.raises(CryolibError, match="at least one particle"):
        ce.set_reference(picker, image, ds.coordinates(stem).iloc[:0], ds.diameter_px)


def test_pick_micrographs_methods(trained, ds):
    ckpt, _, path, *_ = trained
    mics = ds.micrographs
    for method, kwargs in (("cryoemmae", {"checkpoint": path}), ("blob", {})):
        picks = ce.pick_micrographs(method, mics, ds.diameter_px, progress=False, **kwargs)
        assert list(picks) == ds.stems
        assert all({"x", "y", "score"} <= set(df.columns) for df in picks.values())
        assert all(df.attrs["threshold"] == (None if method == "cryoemmae" else 3.5) for df in picks.values())
    assert ce.pick_micrographs is pick_micrographs  # the notebooks' import path is the registry's function
    ref = ds.split("train")[0]
    fitted = ce.pick_micrographs("cryoemmae", mics[:2], ds.diameter_px, checkpoint=ckpt,
                                 reference=(ref, ds.coordinates(ref.stem)), threshold=0.0, progress=False)
    assert list(fitted) == ds.stems[:2]
    renamed = ce.pick_micrographs("cryoemmae", mics[2:], ds.diameter_px, checkpoint=path,
                                  reference=(ref, ds.coordinates(ref.stem)), progress=False)
    assert list(renamed) == ds.stems[2:]


def test_pick_micrographs_bad_inputs(trained, ds, tmp_path, monkeypatch):
    ckpt, _, path, *_ = trained
    mics = ds.micrographs
    with pytest.raises(CryolibError, match="unknown picking method"):
        ce.pick_micrographs("crYOLO", mics, ds.diameter_px)
    with pytest.raises(CryolibError, match="> 0"):
        ce.pick_micrographs("blob", mics, 0.0)
    with pytest.raises(CryolibError, match="--reference-coords"):
        ce.pick_micrographs("cryoemmae", mics, ds.diameter_px, checkpoint=ckpt)
    monkeypatch.setattr(ce, "DEFAULT_CHECKPOINT", tmp_path / "absent.pt")
    with pytest.raises(CryolibError, match="default checkpoint is not installed at"):
        ce.pick_micrographs("cryoemmae", mics, ds.diameter_px)
    small = write_mrc(tmp_path / "small.mrc", np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32), 1.0)
    with pytest.raises(CryolibError, match=r"at least 96 x 96 px"):
        ce.pick_micrographs("cryoemmae", [mics[0], small], 60.0, checkpoint=path)


def test_min_micrograph_px_matches_working_shape():
    cfg = PickerConfig()
    for d in (10.0, 35.9, 60.0, 130.0):
        n = ce.min_micrograph_px(cfg, d)
        assert min(cfg.working_shape((n, n), d)) >= cfg.tile_px > min(cfg.working_shape((n - 1, n - 1), d))


def test_per_path_diameters_and_missing_one(ds, tmp_path):
    cfg = PickerConfig()
    train = ds.split("train")
    by_stem = {p.stem: ds.diameter_px for p in train}
    images = ce.preprocess_for_training(train, by_stem, cfg, progress=False)
    assert len(images) == 2 and all(0 <= im.min() and im.max() <= 1 for im in images)
    with pytest.raises(CryolibError, match="no particle diameter given"):
        ce.preprocess_for_training(train, {train[0].stem: ds.diameter_px}, cfg, progress=False)
