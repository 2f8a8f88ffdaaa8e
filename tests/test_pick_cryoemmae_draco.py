"""Cryo-EMMAE clustering on a DRACO encoder's features (the cross-paper comparison):
the raw-input working image, the settings read off a DRACO checkpoint, and the CLI path."""

from __future__ import annotations

import numpy as np
import pytest

from cryolib import cli
from cryolib.core.errors import CryolibError
from cryolib.io.coordinates import read_coordinates
from cryolib.io.micrographs import write_mrc
from cryolib.pick.cryoemmae import RAW_TOKENS_PER_DIAMETER, checkpoint_inputs
from cryolib.pick.cryoemmae_picker import PickerConfig
from cryolib.processing.preprocess import standardized_working_image
from pick_synthetic import synthetic_micrograph
from test_denoise_networks import tiny_checkpoint


def test_standardized_working_image_scale_and_moments():
    rng = np.random.default_rng(0)
    img = rng.normal(800.0, 30.0, (300, 200)).astype(np.float32)
    res = standardized_working_image(img, diameter_px=30.0, target_diameter_px=60.0)
    assert res.image.shape == (600, 400)  # the particle doubles, so the image does
    assert res.scale_xy == pytest.approx((2.0, 2.0))
    assert res.diameter_px_working == pytest.approx(60.0)
    assert float(res.image.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(res.image.std()) == pytest.approx(1.0, abs=1e-4)


def test_checkpoint_inputs_of_a_draco_checkpoint_use_raw_tiles_of_its_size():
    ckpt = {"objective": "draco", "model_config": {"img_size": 32, "patch_size": 8},
            "data_stats": {"mean": 855.0, "std": 92.0}}
    cfg, mean, std = checkpoint_inputs(ckpt, "draco.pt")
    assert (cfg.input_mode, cfg.tile_px, cfg.scale_mode) == ("raw", 32, "diameter")
    assert cfg.target_diameter_px == RAW_TOKENS_PER_DIAMETER * 8
    assert (mean, std) == (0.0, 1.0)  # the working image is already standardised per micrograph


def test_checkpoint_inputs_of_a_cryoemmae_checkpoint_keep_its_settings():
    ckpt = {"data_stats": {"mean": 0.4, "std": 0.2, "picker_config": {"tile_px": 64, "target_diameter_px": 40.0}}}
    cfg, mean, std = checkpoint_inputs(ckpt, "mae.pt")
    assert (cfg.input_mode, cfg.tile_px, cfg.target_diameter_px, mean, std) == ("cryoemmae", 64, 40.0, 0.4, 0.2)
    with pytest.raises(CryolibError, match="no tile mean/std"):
        checkpoint_inputs({"data_stats": {"picker_config": {}}}, "bad.pt")
    with pytest.raises(CryolibError, match="img_size"):
        checkpoint_inputs({"data_stats": {}}, "bad.pt")


def test_raw_mode_needs_the_diameter_scale_and_a_known_mode():
    with pytest.raises(CryolibError, match="diameter"):
        PickerConfig(input_mode="raw", scale_mode="fixed")
    with pytest.raises(CryolibError, match="input_mode"):
        PickerConfig(input_mode="filtered")


def test_cli_clusters_a_draco_checkpoints_features(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "draco", "draco")
    folder = tmp_path / "mics"
    truth = None
    for i in range(2):
        img, coords = synthetic_micrograph(i, size=256, d=16.0, n=12)
        write_mrc(folder / f"m{i}.mrc", img, 1.0)
        truth = coords if i == 0 else truth
    ref = tmp_path / "m0.csv"
    truth.to_csv(ref, index=False)
    out = tmp_path / "picks"
    assert cli.main(["pick", "--method", "cryoemmae", "--checkpoint", str(ckpt), "--reference-coords", str(ref),
                     "--reference-micrograph", str(folder / "m0.mrc"), "--input", str(folder),
                     "--diameter-px", "16", "--out", str(out), "--format", "csv"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["m0.csv", "m1.csv", "run.yaml"]
    for i in range(2):
        picks = read_coordinates(out / f"m{i}.csv")
        assert ((picks["x"] >= 0) & (picks["x"] < 256) & (picks["y"] >= 0) & (picks["y"] < 256)).all()
