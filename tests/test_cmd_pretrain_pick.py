"""`cryolib pretrain` and `cryolib pick` end to end on a tiny simulated dataset, and their bad inputs
(exit 2, one line on stderr, no output written)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from cryolib.pick import cryoemmae as ce
from cryolib.cli import main
from cryolib.io.micrographs import read_coordinates, write_mrc
from cryolib.training.loop import load_checkpoint


@pytest.fixture(scope="module")
def ds(tiny_sim_10291):
    """3 micrographs of 192 px (2 train, 1 test); see conftest.py."""
    return tiny_sim_10291


@pytest.fixture(scope="module")
def run_dir(ds, tmp_path_factory):
    """A `cryolib pretrain` run at the smoke profile: run/mae.pt and its logs."""
    run = tmp_path_factory.mktemp("run")
    argv = ["pretrain", "--objective", "mae", "--data", str(ds.root), "--out", str(run / "mae.pt"),
            "--profile", "smoke", "--seed", "0"]
    assert main(argv) == 0
    return run


@pytest.fixture(scope="module")
def picker_file(ds, run_dir):
    train = ds.split("train")
    picker = ce.fit_picker(run_dir / "mae.pt", train, train[0], ds.coordinates(train[0].stem), ds.diameter_px)
    return ce.save_picker(run_dir / "picker.pt", picker, "cpu-tiny")


def _coordinate_files(folder):
    return sorted(p for p in folder.iterdir() if p.suffix in (".star", ".csv", ".box"))


def _check_picks(out, ds, fmt):
    files = _coordinate_files(out)
    assert [p.name for p in files] == [f"{s}.{fmt}" for s in ds.stems]
    assert (out / "run.yaml").is_file()
    for path in files:
        df = read_coordinates(path)
        assert len(df) == 0 or df["score"].notna().all()
        if fmt != "box":
            text = path.read_text()
            assert ("rlnAutopickFigureOfMerit" if fmt == "star" else "Score") in text or len(df) == 0


def test_pretrain_writes_checkpoint_and_logs(run_dir):
    ckpt = load_checkpoint(run_dir / "mae.pt")
    assert ckpt["objective"] == "cryoemmae" and ckpt["model_config"]["name"] == "cpu-tiny"
    assert ckpt["epoch"] == 1 and "picker_config" in ckpt["data_stats"]
    log = pd.read_csv(run_dir / "train_log.csv")
    assert len(log) >= 1 and np.isfinite(log["loss"]).all()
    assert (run_dir / "run.yaml").is_file() and (run_dir / "checkpoint.pt").is_file()


def test_pretrain_resume(run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(run_dir / "mae.pt", run / "mae.pt")  # no working checkpoint.pt: resume seeds it from --out
    data = str(run_dir.parent / "sim-10291-192")
    argv = ["pretrain", "--data", data, "--out", str(run / "mae.pt"), "--profile", "smoke", "--resume", "--epochs", "2"]
    assert main(argv) == 0
    first, resumed = load_checkpoint(run_dir / "mae.pt"), load_checkpoint(run / "mae.pt")
    assert resumed["epoch"] == 2 and resumed["step"] == 2 * first["step"]
    assert resumed["history"][: len(first["history"])] == first["history"]
    assert "pretrained mae" in capsys.readouterr().out


def test_pretrain_plain_folder(ds, tmp_path):
    out = tmp_path / "plain" / "checkpoint.pt"
    argv = ["pretrain", "--data", str(ds.root / "micrographs"), "--diameter-px", str(ds.diameter_px),
            "--out", str(out), "--profile", "smoke"]
    assert main(argv) == 0
    assert load_checkpoint(out)["data_stats"]["n_micrographs"] == 3


def test_pick_from_pretrain_checkpoint_with_reference(ds, run_dir, tmp_path, capsys):
    ref = ds.root / "ground_truth" / "particle_coordinates" / f"{ds.split('train')[0].stem}.csv"
    out = tmp_path / "picks"
    argv = ["pick", "--method", "cryoemmae", "--input", str(ds.root / "micrographs"), "--diameter-px",
            str(ds.diameter_px), "--checkpoint", str(run_dir / "mae.pt"), "--reference-coords", str(ref),
            "--out", str(out)]
    assert main(argv) == 0
    _check_picks(out, ds, "star")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(" picks" in line for line in lines)


@pytest.mark.parametrize("fmt", ["star", "csv", "box"])
def test_pick_with_picker_file_each_format(ds, picker_file, tmp_path, fmt):
    out = tmp_path / fmt
    argv = ["pick", "--input", str(ds.root / "micrographs" / "*.mrc"), "--diameter-px", str(ds.diameter_px),
            "--checkpoint", str(picker_file), "--out", str(out), "--format", fmt]
    assert main(argv) == 0
    _check_picks(out, ds, fmt)


def test_pick_blob_and_topaz(ds, tmp_path):
    out = tmp_path / "blob"
    assert main(["pick", "--method", "blob", "--input", str(ds.root / "micrographs"), "--diameter-px",
                 str(ds.diameter_px), "--out", str(out), "--format", "csv", "--threshold", "0"]) == 0
    _check_picks(out, ds, "csv")
    one = ds.micrographs[0]
    out = tmp_path / "topaz"
    assert main(["pick", "--method", "topaz", "--input", str(one), "--diameter-px", str(ds.diameter_px),
                 "--out", str(out), "--threshold", "0"]) == 0
    files = _coordinate_files(out)
    assert [p.name for p in files] == [f"{one.stem}.star"]


# --------------------------------------------------------------------------- bad inputs
def _bad_inputs(ds, run_dir, tmp):
    """name -> (argv without --out, expected message part)."""
    mics, d = str(ds.root / "micrographs"), str(ds.diameter_px)
    (tmp / "empty").mkdir()
    (tmp / "garbage.pt").write_bytes(b"\x00 not a checkpoint")
    write_mrc(tmp / "small" / "small.mrc", np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32), 1.0)
    mixed = tmp / "mixed"
    shutil.copytree(ds.root / "micrographs", mixed)
    (mixed / "broken.mrc").write_bytes(b"not an mrc file at all")
    ref = tmp / "other_name.csv"
    ref.write_text("X-Coordinate,Y-Coordinate\n50,60\n")
    ckpt = str(run_dir / "mae.pt")
    pick = ["pick", "--input", mics, "--diameter-px", d]
    return {
        "no micrographs": (["pick", "--input", str(tmp / "empty"), "--diameter-px", d, "--method", "blob"],
                           "no micrographs found"),
        "missing checkpoint": (pick + ["--checkpoint", str(tmp / "absent.pt")], "not found"),
        "corrupt checkpoint": (pick + ["--checkpoint", str(tmp / "garbage.pt")], "could not be read"),
        "pretrain ckpt, no reference": (pick + ["--checkpoint", ckpt], "--reference-coords"),
        "too small": (["pick", "--input", str(tmp / "small"), "--diameter-px", "60", "--checkpoint", ckpt,
                       "--reference-coords", str(ref), "--reference-micrograph", str(tmp / "small" / "small.mrc")],
                      "at least 96 x 96 px"),
        "zero diameter": (["pick", "--input", mics, "--diameter-px", "0"], "> 0"),
        "negative diameter": (["pick", "--input", mics, "--diameter-px", "-5", "--method", "blob"], "> 0"),
        "reference stem": (pick + ["--checkpoint", ckpt, "--reference-coords", str(ref)], "--reference-micrograph"),
        "default checkpoint": (pick, "default checkpoint is not installed at"),
        "unreadable input": (["pick", "--input", str(mixed), "--diameter-px", d, "--method", "blob"], "broken.mrc"),
        "reference with blob": (pick + ["--method", "blob", "--reference-coords", str(ref)], "cryoemmae only"),
        "unknown objective": (["pretrain", "--objective", "draco", "--data", str(ds.root)], "available: mae"),
        "plain folder, no diameter": (["pretrain", "--data", mics], "pass --diameter-px"),
        "missing data folder": (["pretrain", "--data", str(tmp / "nowhere")], "not a folder"),
    }


BAD = ["no micrographs", "missing checkpoint", "corrupt checkpoint", "pretrain ckpt, no reference", "too small",
       "zero diameter", "negative diameter", "reference stem", "default checkpoint", "unreadable input",
       "reference with blob", "unknown objective", "plain folder, no diameter", "missing data folder"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_exits_2_and_writes_nothing(case, ds, run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ce, "DEFAULT_CHECKPOINT", tmp_path / "not_installed.pt")
    argv, message = _bad_inputs(ds, run_dir, tmp_path)[case]
    out = tmp_path / "out"
    argv = argv + ["--out", str(out / "ckpt.pt") if argv[0] == "pretrain" else str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cryolib {argv[0]}: error:") and err.count("\n") == 1, err
    assert message in err, err
    assert not out.exists() or not any(out.iterdir())
