"""`cryolib pick` end to end on a tiny simulated dataset (from a `cryolib pretrain` checkpoint), and its bad
inputs (exit 2, one line on stderr, no output written). `cryolib pretrain` itself: tests/test_cmd_pretrain.py."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

from cryolib.pick import cryoemmae as ce
from cryolib.pick import get_picker
from cryolib.cli import main
from cryolib.evaluate.metrics import match_picks
from cryolib.io.micrographs import read_coordinates, write_coordinates, write_mrc
from pick_synthetic import synthetic_micrograph


@pytest.fixture(scope="module")
def ds(tiny_sim_10291):
    """3 micrographs of 192 px (2 train, 1 test); see conftest.py."""
    return tiny_sim_10291


@pytest.fixture(scope="module")
def run_dir(ds, tmp_path_factory):
    """A `cryolib pretrain` run at the smoke profile: run/checkpoint.pt and its logs."""
    run = tmp_path_factory.mktemp("run")
    argv = ["pretrain", "--objective", "cryoemmae", "--data", str(ds.root), "--out", str(run),
            "--profile", "smoke", "--seed", "0"]
    assert main(argv) == 0
    return run


@pytest.fixture(scope="module")
def picker_file(ds, run_dir):
    train = ds.split("train")
    picker = ce.fit_picker(run_dir / "checkpoint.pt", train, train[0], ds.coordinates(train[0].stem), ds.diameter_px)
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


def test_pick_from_pretrain_checkpoint_with_reference(ds, run_dir, tmp_path, capsys):
    ref = ds.root / "ground_truth" / "particle_coordinates" / f"{ds.split('train')[0].stem}.csv"
    out = tmp_path / "picks"
    argv = ["pick", "--method", "cryoemmae", "--input", str(ds.root / "micrographs"), "--diameter-px",
            str(ds.diameter_px), "--checkpoint", str(run_dir / "checkpoint.pt"), "--reference-coords", str(ref),
            "--out", str(out)]
    assert main(argv) == 0
    _check_picks(out, ds, "star")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(" picks" in line for line in lines)


@pytest.mark.parametrize("fmt", ["star", "csv", "box"])
def test_pick_with_picker_file_each_format(ds, picker_file, tmp_path, fmt):
    out = tmp_path / fmt
    argv = ["pick", "--method", "cryoemmae", "--input", str(ds.root / "micrographs" / "*.mrc"),
            "--diameter-px", str(ds.diameter_px), "--checkpoint", str(picker_file), "--out", str(out), "--format", fmt]
    assert main(argv) == 0
    _check_picks(out, ds, fmt)


@pytest.fixture(scope="module")
def easy(tmp_path_factory):
    """Two easy micrographs (dark 24 px disks on noise, 18 each) in one folder, and their centres."""
    folder = tmp_path_factory.mktemp("easy")
    truth = {}
    for seed in range(2):
        image, centres = synthetic_micrograph(seed, size=320, d=24.0, n=18)
        write_mrc(folder / "mics" / f"easy{seed}.mrc", image, 1.0)
        truth[f"easy{seed}"] = centres
    return folder, truth


def test_pick_blob_finds_the_particles_and_every_format_agrees(easy, tmp_path):
    folder, truth = easy
    tables = {}
    for fmt in ("star", "csv", "box"):
        out = tmp_path / fmt
        assert main(["pick", "--method", "blob", "--input", str(folder / "mics"), "--diameter-px", "24",
                     "--out", str(out), "--format", fmt]) == 0
        tables[fmt] = {stem: read_coordinates(out / f"{stem}.{fmt}") for stem in truth}
        run = yaml.safe_load((out / "run.yaml").read_text())
        assert run["threshold"] == 3.5 and run["n_micrographs"] == 2 and run["seed"] == 0
        assert run["n_picks"] == sum(len(df) for df in tables[fmt].values())
    for stem, centres in truth.items():
        star, csv, box = (tables[f][stem] for f in ("star", "csv", "box"))
        res = match_picks(star, centres, 24.0)
        assert len(star) >= 15 and res.recall >= 0.9 and res.precision >= 0.9, res.as_dict()  # measured: 1.0, 1.0
        assert len(star) == len(csv) == len(box)
        np.testing.assert_allclose(csv[["x", "y"]], star[["x", "y"]], atol=1e-3)
        np.testing.assert_allclose(csv["score"], star["score"], rtol=1e-5)
        np.testing.assert_allclose(box[["x", "y"]], star[["x", "y"]], atol=1.0)  # integer corners


def test_pick_blob_with_reference_calibrates_the_threshold(easy, tmp_path):
    folder, truth = easy
    ref = tmp_path / "easy0.csv"
    write_coordinates(ref, truth["easy0"], "csv")
    out = tmp_path / "out"
    assert main(["pick", "--method", "blob", "--input", str(folder / "mics"), "--diameter-px", "24",
                 "--reference-coords", str(ref), "--seed", "3", "--out", str(out), "--format", "csv"]) == 0
    run = yaml.safe_load((out / "run.yaml").read_text())
    expected = get_picker("blob").calibrate((folder / "mics" / "easy0.mrc", truth["easy0"]), 24.0)
    assert run["threshold"] == pytest.approx(expected) and run["seed"] == 3
    picks = read_coordinates(out / "easy1.csv")
    assert len(picks) > 0 and (picks["score"] >= expected - 1e-6).all()
    assert match_picks(picks, truth["easy1"], 24.0).f1 >= 0.9


def test_pick_topaz(ds, tmp_path):
    one = ds.micrographs[0]
    out = tmp_path / "topaz"
    assert main(["pick", "--method", "topaz", "--input", str(one), "--diameter-px", str(ds.diameter_px),
                 "--out", str(out), "--threshold", "0"]) == 0
    files = _coordinate_files(out)
    assert [p.name for p in files] == [f"{one.stem}.star"]
    assert (read_coordinates(files[0])["score"] >= 0).all()


def test_unknown_method_exits_2(ds, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["pick", "--method", "crYOLO", "--input", str(ds.root / "micrographs"), "--diameter-px", "20",
            "--out", str(out)]
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own exit, until cli.py turns it into one line
        code = stop.code
    assert code == 2
    assert "error" in capsys.readouterr().err and not out.exists()


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
    far = tmp / "far.csv"
    far.write_text("X-Coordinate,Y-Coordinate\n5000,6000\n")
    ckpt = str(run_dir / "checkpoint.pt")
    pick = ["pick", "--method", "cryoemmae", "--input", mics, "--diameter-px", d]
    return {
        "no micrographs": (["pick", "--input", str(tmp / "empty"), "--diameter-px", d, "--method", "blob"],
                           "no micrographs found"),
        "missing checkpoint": (pick + ["--checkpoint", str(tmp / "absent.pt")], "not found"),
        "corrupt checkpoint": (pick + ["--checkpoint", str(tmp / "garbage.pt")], "could not be read"),
        "pretrain ckpt, no reference": (pick + ["--checkpoint", ckpt], "--reference-coords"),
        "too small": (["pick", "--method", "cryoemmae", "--input", str(tmp / "small"), "--diameter-px", "60",
                       "--checkpoint", ckpt,
                       "--reference-coords", str(ref), "--reference-micrograph", str(tmp / "small" / "small.mrc")],
                      "at least 96 x 96 px"),
        "zero diameter": (["pick", "--input", mics, "--diameter-px", "0"], "> 0"),  # the default method
        "negative diameter": (["pick", "--input", mics, "--diameter-px", "-5", "--method", "blob"], "> 0"),
        "reference stem": (pick + ["--checkpoint", ckpt, "--reference-coords", str(ref)], "--reference-micrograph"),
        "default checkpoint": (pick, "default checkpoint is not installed at"),
        "unreadable input": (["pick", "--input", str(mixed), "--diameter-px", d, "--method", "blob"], "broken.mrc"),
        "checkpoint with blob": (pick + ["--method", "blob", "--checkpoint", ckpt], "takes no checkpoint"),
        "reference off the micrograph": (pick + ["--method", "blob", "--reference-coords", str(far),
                                                "--reference-micrograph", str(ds.micrographs[0])], "lie outside"),
    }


BAD = ["no micrographs", "missing checkpoint", "corrupt checkpoint", "pretrain ckpt, no reference", "too small",
       "zero diameter", "negative diameter", "reference stem", "default checkpoint", "unreadable input",
       "checkpoint with blob", "reference off the micrograph"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_exits_2_and_writes_nothing(case, ds, run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ce, "DEFAULT_CHECKPOINT", tmp_path / "not_installed.pt")
    argv, message = _bad_inputs(ds, run_dir, tmp_path)[case]
    out = tmp_path / "out"
    argv = argv + ["--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cryolib {argv[0]}: error:") and err.count("\n") == 1, err
    assert message in err, err
    assert not out.exists() or not any(out.iterdir())
