"""Tests for cryolib.pick.topaz: Topaz (topaz-em 0.3.20) driven on tiny CPU inputs."""

from __future__ import annotations

import logging
import math
import tempfile

import numpy as np
import pandas as pd
import pytest

from cryolib.core.errors import CryolibError
from cryolib.io.micrographs import write_mrc
from cryolib.pick import topaz as tp
from cryolib.pick import topaz_training as tt
from pick_synthetic import gaussian_blob_micrograph

log = logging.getLogger(__name__)

DIAMETER_PX = 40


def _disk_micrographs(n: int = 2, size: int = 256, n_disks: int = 6, seed: int = 0):
    """White-noise micrographs with dark Gaussian blobs (~40 px across); returns images and centres (x, y)."""
    rng = np.random.default_rng(seed)
    images, centres = {}, {}
    for i in range(n):
        images[f"mic{i}"], centres[f"mic{i}"] = gaussian_blob_micrograph(rng, size, n_disks, DIAMETER_PX, 1.3, 3.0)
    return images, centres


def _found(picks: pd.DataFrame, centres: np.ndarray, top: int, tol_px: float = 10.0) -> int:
    """How many true centres have one of the ``top`` highest-scoring picks within ``tol_px``."""
    best = picks.nlargest(top, "score")
    dist = np.hypot(centres[:, None, 0] - best["x"].to_numpy()[None], centres[:, None, 1] - best["y"].to_numpy()[None])
    return int((dist.min(axis=1) < tol_px).sum())


def _check_picks(picks: dict[str, pd.DataFrame], images: dict[str, np.ndarray]) -> None:
    assert set(picks) == set(images)
    for name, df in picks.items():
        height, width = images[name].shape
        assert list(df.columns) == ["x", "y", "diameter", "score"]
        assert len(df) > 0
        assert np.isfinite(df.to_numpy()).all()
        assert df["x"].between(0, width, inclusive="left").all() and df["y"].between(0, height, inclusive="left").all()
        assert (df["diameter"] == DIAMETER_PX).all()
        # Scaled back to input pixels, not left at the 1/3 scale (85 px wide).
        assert df["x"].max() > width / 2 and df["y"].max() > height / 2


# --------------------------------------------------------------------------- fast checks
def test_version():
    assert tp.topaz_version() == "0.3.20"


@pytest.mark.parametrize("diameter, factor", [(2, 1), (16, 1), (24, 2), (32, 2), (40, 3), (64, 4), (200, 13)])
def test_scale_factor_values(diameter, factor):
    assert tp.topaz_scale_factor(diameter) == factor


def test_scale_factor_lands_radius_near_target():
    for diameter in np.arange(16, 600, 3.7):
        radius_at_scale = diameter / 2 / tp.topaz_scale_factor(diameter)
        assert abs(math.log(radius_at_scale / 8.0)) <= math.log(math.sqrt(2)) + 1e-9
    assert tp.topaz_scale_factor(100, target_radius_px=25) == 2


@pytest.mark.parametrize("bad", [0, -5, float("nan"), float("inf"), "40"])
def test_bad_diameter(bad):
    with pytest.raises(CryolibError, match="diameter_px"):
        tp.topaz_scale_factor(bad)


def test_bad_inputs(tmp_path):
    images, _ = _disk_micrographs(n=1, size=128, n_disks=1)
    with pytest.raises(CryolibError, match="no micrographs"):
        tp.pick_pretrained({}, DIAMETER_PX)
    with pytest.raises(CryolibError, match="no micrographs"):
        tp.pick_pretrained([], DIAMETER_PX)
    with pytest.raises(CryolibError, match="diameter_px"):
        tp.pick_pretrained(images, 0)
    with pytest.raises(CryolibError, match="unknown Topaz pretrained picker"):
        tp.pick_pretrained(images, DIAMETER_PX, model="resnet99")
    with pytest.raises(CryolibError, match="does not exist"):
        tp.pick_with_model(images, tmp_path / "missing.sav", DIAMETER_PX)
    with pytest.raises(CryolibError, match="does not exist"):
        tp.pick_pretrained([tmp_path / "missing.mrc"], DIAMETER_PX)
    with pytest.raises(CryolibError, match="2-D"):
        tp.pick_pretrained({"a": np.zeros((4, 64, 64))}, DIAMETER_PX)


def test_bad_training_inputs(tmp_path):
    images, centres = _disk_micrographs(n=1, size=128, n_disks=1)
    coords = {"mic0": pd.DataFrame({"x": centres["mic0"][:, 0], "y": centres["mic0"][:, 1]})}
    with pytest.raises(CryolibError, match="architecture"):
        tp.train_from_scratch(images, coords, DIAMETER_PX, tmp_path, 1, 1, model="vit")
    with pytest.raises(CryolibError, match="different micrographs"):
        tp.train_from_scratch(images, {"other": coords["mic0"]}, DIAMETER_PX, tmp_path, 1, 1)
    with pytest.raises(CryolibError, match="no particles"):
        tp.train_from_scratch(images, {"mic0": coords["mic0"].iloc[:0]}, DIAMETER_PX, tmp_path, 1, 1)
    with pytest.raises(CryolibError, match="epochs"):
        tp.train_from_scratch(images, coords, DIAMETER_PX, tmp_path, 0, 1)
    with pytest.raises(CryolibError, match="val_images and val_coords"):
        tp.train_from_scratch(images, coords, DIAMETER_PX, tmp_path, 1, 1, val_images=images)


def test_best_epoch_by_validation_auprc(tmp_path):
    curve = tmp_path / "curve.tsv"
    rows = ["epoch\titer\tsplit\tloss\tauprc", "1\t1\ttrain\t0.7\t-", "1\t1\ttest\t0.6\t0.4",
            "2\t2\ttrain\t0.5\t-", "2\t2\ttest\t0.5\t0.7", "3\t3\ttrain\t0.4\t-", "3\t3\ttest\t0.6\t0.5"]
    curve.write_text("\n".join(rows) + "\n")
    models = {e: tmp_path / f"m_epoch{e}.sav" for e in (1, 2, 3)}
    assert tp._best_epoch(curve, models) == (2, 0.7)
    curve.write_text("\n".join(r for r in rows if "test" not in r) + "\n")
    epoch, auprc = tp._best_epoch(curve, models)
    assert epoch == 3 and math.isnan(auprc)  # no validation: the last epoch


def test_validation_curve_reads_the_test_rows(tmp_path):
    rows = ["epoch,iter,split,loss,auprc", "1,1,train,0.7,-", "1,1,test,0.6,0.4", "2,2,train,0.5,-", "2,2,test,0.5,0.7"]
    (tmp_path / "training_curve.csv").write_text("\n".join(rows) + "\n")
    curve = tp.validation_curve(tmp_path)
    assert curve["epoch"].tolist() == [1, 2] and curve["auprc"].tolist() == [0.4, 0.7]
    with pytest.raises(CryolibError, match="does not exist"):
        tp.validation_curve(tmp_path / "nowhere")


def test_failed_topaz_command_reports_stderr(tmp_path, monkeypatch):
    # A stand-in for the seeded launcher (importing torch + topaz in a child takes ~10 s here).
    monkeypatch.setattr(tt, "_SEEDED_TOPAZ", "import sys; sys.stderr.write('line 1\\nboom: ' + sys.argv[2]); sys.exit(3)")
    with pytest.raises(CryolibError) as err:
        tt._run_topaz(["train", "--no-such-flag"], 0, tmp_path / "topaz.log")
    message = str(err.value)
    assert "topaz train --no-such-flag" in message and "exit code 3" in message and "boom: train" in message


# --------------------------------------------------------------------------- Topaz runs
@pytest.mark.slow
def test_pick_pretrained_finds_disks(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the temporary work dir must be removed
    images, centres = _disk_micrographs()
    picks = tp.pick_pretrained(images, DIAMETER_PX)
    assert list(tmp_path.iterdir()) == []
    _check_picks(picks, images)
    found = {name: _found(picks[name], centres[name], top=2 * len(centres[name])) for name in images}
    log.info("resnet16_u64 found %s of 6 disks per micrograph among the top 12 picks", found)
    assert sum(found.values()) >= 6  # half of the 12 high-contrast disks, at least
    assert (picks["mic0"]["score"] > 0).any()  # some picks above p = 0.5


@pytest.mark.slow
def test_pick_pretrained_from_files_keeps_workdir(tmp_path):
    images, _ = _disk_micrographs()
    paths = [write_mrc(tmp_path / f"{name}.mrc", image, 4.0) for name, image in images.items()]
    work = tmp_path / "work"
    from_files = tp.pick_pretrained(paths, DIAMETER_PX, model="resnet8_u32", threshold=0.0, workdir=work)
    assert sorted(p.name for p in (work / "preprocessed").iterdir()) == ["mic0.mrc", "mic1.mrc"]
    from_arrays = tp.pick_pretrained(images, DIAMETER_PX, model="resnet8_u32", threshold=0.0)
    for name in images:
        pd.testing.assert_frame_equal(from_files[name], from_arrays[name])
        assert (from_files[name]["score"] > 0).all()


@pytest.mark.slow
def test_train_from_scratch_then_pick(tmp_path):
    images, centres = _disk_micrographs(n=3, seed=1)
    coords = {k: pd.DataFrame({"x": c[:, 0], "y": c[:, 1]}) for k, c in centres.items()}
    train = {k: images[k] for k in ("mic0", "mic1")}
    model = tp.train_from_scratch(train, {k: coords[k] for k in train}, DIAMETER_PX, tmp_path / "run",
                                  epochs=1, epoch_size=2, minibatch_size=16,
                                  val_images={"mic2": images["mic2"]}, val_coords={"mic2": coords["mic2"]})
    assert model.is_file() and model.suffix == ".sav"
    curve = tp.validation_curve(tmp_path / "run")
    assert list(curve.columns) == ["epoch", "loss", "auprc"] and curve["epoch"].tolist() == [1]
    assert 0 <= curve["auprc"].iloc[0] <= 1
    picks = tp.pick_with_model({"mic2": images["mic2"]}, model, DIAMETER_PX)
    _check_picks(picks, {"mic2": images["mic2"]})
