"""`cryolib pretrain`: --out is a folder (checkpoint.pt, train_log.csv, run.yaml), objectives come from the
registry and the recorded objective is the one that ran, the CLI gives the library's checkpoint, resume, and bad
inputs (one line on stderr, exit 2, nothing written)."""

from __future__ import annotations

import inspect
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from cryolib.cli import main
from cryolib.pick import cryoemmae as ce
from cryolib.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(scope="module")
def ds(tiny_sim_10291):
    """3 micrographs of 192 px (2 train, 1 test); see conftest.py."""
    return tiny_sim_10291


@pytest.fixture(scope="module")
def run_dir(ds, tmp_path_factory):
    """A `cryolib pretrain` run at the smoke profile into run/."""
    run = tmp_path_factory.mktemp("pretrain") / "run"
    argv = ["pretrain", "--objective", "cryoemmae", "--data", str(ds.root), "--out", str(run),
            "--profile", "smoke", "--seed", "0"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests that compare against it (one_thread): same float reductions
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    return run


def _yaml(path):
    return yaml.safe_load(path.read_text())


def test_out_folder_holds_checkpoint_logs_and_run_yaml(run_dir):
    assert {"checkpoint.pt", "train_log.csv", "run.yaml"} <= {p.name for p in run_dir.iterdir()}
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    assert ckpt["objective"] == "cryoemmae" and ckpt["model_config"]["name"] == "cpu-tiny"
    assert ckpt["epoch"] == 1 and "picker_config" in ckpt["data_stats"]
    log = pd.read_csv(run_dir / "train_log.csv")
    assert len(log) >= 1 and np.isfinite(log["loss"]).all()
    assert (log["samples"] > 0).all()
    run = _yaml(run_dir / "run.yaml")
    assert run["command"] == "pretrain" and run["objective"] == "cryoemmae" and run["seed"] == 0
    assert run["step"] == ckpt["step"] and run["n_train"] == 2 and run["parameters"]["profile"] == "smoke"
    usage = run["throughput"]  # tiles/s of the log, FLOPs counted per tile, no MFU on a CPU
    assert usage["tiles_per_s"] == pytest.approx(float(log["images_per_s"].median()))
    assert usage["gflop_per_tile"] > 0 and usage["mfu"] is None and usage["world_size"] == 1
    assert usage["achieved_tflops"] == pytest.approx(usage["gflop_per_tile"] * usage["tiles_per_s"] / 1e3)


def test_cli_checkpoint_equals_library_call(ds, run_dir, tmp_path):
    """The command adds nothing to the numbers: same seed, same weights as pretrain_mae itself."""
    train, val = ds.split("train"), ds.split("val")
    diameters = {str(p): ds.diameter_px for p in train + val}
    ckpt = ce.pretrain_mae(train, diameters, tmp_path, profile="smoke", seed=0, val_paths=val or None,
                           progress=False)
    ours, lib = load_checkpoint(run_dir / "checkpoint.pt"), load_checkpoint(ckpt)
    assert ours["model"].keys() == lib["model"].keys()
    for name, tensor in lib["model"].items():
        assert torch.equal(ours["model"][name], tensor), name
    assert ours["data_stats"] == lib["data_stats"]


def test_resume_continues_the_out_folder(run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    data = str(run_dir.parent.parent / "sim-10291-192")
    argv = ["pretrain", "--data", data, "--out", str(run), "--profile", "smoke", "--resume", "--epochs", "2"]
    assert main(argv) == 0
    first, resumed = load_checkpoint(run_dir / "checkpoint.pt"), load_checkpoint(run / "checkpoint.pt")
    assert resumed["epoch"] == 2 and resumed["step"] == 2 * first["step"]
    assert resumed["history"][: len(first["history"])] == first["history"]
    assert "pretrained cryoemmae" in capsys.readouterr().out
    assert _yaml(run / "run.yaml")["parameters"]["resume"] is True


def test_plain_folder(ds, tmp_path):
    out = tmp_path / "plain"
    argv = ["pretrain", "--data", str(ds.root / "micrographs"), "--diameter-px", str(ds.diameter_px),
            "--out", str(out), "--profile", "smoke"]
    assert main(argv) == 0
    assert load_checkpoint(out / "checkpoint.pt")["data_stats"]["n_micrographs"] == 3


@pytest.mark.parametrize("objective, mask_ratio", [("mae", 0.75), ("cryoemmae", 0.5)])
def test_synthetic_records_the_objective_that_ran(objective, mask_ratio, tmp_path):
    out = tmp_path / objective
    argv = ["pretrain", "--objective", objective, "--synthetic", "2", "--out", str(out), "--profile", "smoke",
            "--batch-size", "4", "--max-steps", "2", "--seed", "1"]
    assert main(argv) == 0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["objective"] == objective and ckpt["objective_config"]["mask_ratio"] == mask_ratio
    assert ckpt["step"] == 2 and [row["samples"] for row in ckpt["history"]] == [4, 4]
    assert _yaml(out / "run.yaml")["objective"] == objective


def test_mae_objective_on_micrographs(ds, tmp_path, capsys):
    """--objective mae runs He et al.'s recipe through pretrain_mae, or says clearly that it cannot."""
    out = tmp_path / "mae"
    argv = ["pretrain", "--objective", "mae", "--data", str(ds.root), "--out", str(out), "--profile", "smoke"]
    if "objective" in inspect.signature(ce.pretrain_mae).parameters:
        assert main(argv) == 0
        ckpt = load_checkpoint(out / "checkpoint.pt")
        assert ckpt["objective"] == "mae" and ckpt["objective_config"]["norm_pix_loss"] is True
        assert _yaml(out / "run.yaml")["objective"] == "mae"
    else:
        assert main(argv) == 2
        assert "use --objective cryoemmae" in capsys.readouterr().err and not out.exists()


def _bad_inputs(ds, tmp):
    """name -> (argv without --out, expected message part)."""
    mics = str(ds.root / "micrographs")
    data = ["pretrain", "--data", str(ds.root), "--profile", "smoke"]
    return {
        "unknown objective": (["pretrain", "--objective", "simclr", "--data", str(ds.root)], "invalid choice"),
        "plain folder, no diameter": (["pretrain", "--data", mics], "pass --diameter-px"),
        "missing data folder": (["pretrain", "--data", str(tmp / "nowhere")], "not a folder"),
        "negative diameter": (["pretrain", "--data", mics, "--diameter-px", "-3"], "must be > 0"),
        "zero epochs": (data + ["--epochs", "0"], "--epochs must be at least 1"),
        "bad profile": (data[:-1] + ["huge"], "invalid choice: 'huge'"),
        "bad number": (data + ["--seed", "x"], "invalid int value"),
        "no data": (["pretrain", "--profile", "smoke"], "one of the arguments --data --synthetic is required"),
        "batch size with data": (data + ["--batch-size", "4"], "--synthetic only"),
        "zero synthetic": (["pretrain", "--synthetic", "0"], "--synthetic must be at least 1"),
        "resume without checkpoint": (data + ["--resume"], "drop --resume"),
    }


@pytest.mark.parametrize("case", ["unknown objective", "plain folder, no diameter", "missing data folder",
                                  "negative diameter", "zero epochs", "bad profile", "bad number", "no data",
                                  "batch size with data", "zero synthetic", "resume without checkpoint"])
def test_bad_input_exits_2_and_writes_nothing(case, ds, tmp_path, capsys):
    argv, message = _bad_inputs(ds, tmp_path)[case]
    out = tmp_path / "out"
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cryolib pretrain: error:") and err.count("\n") == 1, err
    assert message in err, err
    assert not out.exists()


def test_out_is_a_file(ds, tmp_path, capsys):
    out = tmp_path / "mae.pt"
    out.write_bytes(b"keep")
    assert main(["pretrain", "--data", str(ds.root), "--out", str(out), "--profile", "smoke"]) == 2
    assert "is a file" in capsys.readouterr().err and out.read_bytes() == b"keep"


# --------------------------------------------------------------------------------------------- --objective draco

DRACO_MODEL = ["--model", "draco-cpu-s"]  # 128 px crops: one per 192 px micrograph of the tiny dataset


@pytest.fixture(scope="module")
def draco_run(ds, tmp_path_factory):
    """`cryolib pretrain --objective draco` at smoke: the profile's MAE warm-up, then DRACO."""
    run = tmp_path_factory.mktemp("pretrain_draco") / "run"
    argv = ["pretrain", "--objective", "draco", "--data", str(ds.root), "--out", str(run), "--profile", "smoke",
            "--seed", "0"] + DRACO_MODEL
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    return run


def test_draco_trains_on_triplets_after_a_warm_up(ds, draco_run):
    from cryolib.core.profiles import get_profile

    sizes = get_profile("smoke").draco
    ckpt, warm = load_checkpoint(draco_run / "checkpoint.pt"), load_checkpoint(draco_run / "warmup" / "checkpoint.pt")
    assert ckpt["objective"] == "draco" and ckpt["model_config"]["name"] == "draco-cpu-s"
    assert ckpt["epoch"] == sizes.epochs and warm["objective"] == "mae" and warm["epoch"] == sizes.warmup_epochs
    assert ckpt["objective_config"]["init_from"] == str(draco_run / "warmup" / "checkpoint.pt")
    assert ckpt["objective_config"]["mask_ratio"] == 0.75 and ckpt["data_stats"]["tile_px"] == 128
    log = pd.read_csv(draco_run / "train_log.csv")
    assert {"loss_n2n", "loss_recon"} <= set(log.columns) and np.isfinite(log["loss"]).all()
    run = _yaml(draco_run / "run.yaml")
    assert run["objective"] == "draco" and run["n_train_tiles"] == len(ds.split("train"))  # one crop each
    assert run["throughput"]["gflop_per_tile"] > 0 and run["throughput"]["tiles_per_s"] > 0


def test_draco_init_from_skips_the_warm_up(ds, draco_run, tmp_path):
    out = tmp_path / "from_mae"
    warm = draco_run / "warmup" / "checkpoint.pt"
    argv = ["pretrain", "--objective", "draco", "--data", str(ds.root), "--out", str(out), "--profile", "smoke",
            "--init-from", str(warm), "--mask-ratio", "0.5"] + DRACO_MODEL
    assert main(argv) == 0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["objective_config"]["init_from"] == str(warm) and ckpt["objective_config"]["mask_ratio"] == 0.5
    assert not (out / "warmup").exists()
    # the same warm-up and seed as draco_run: only γ differs, so the weights differ
    assert not torch.equal(ckpt["model"]["decoder.pred.weight"],
                           load_checkpoint(draco_run / "checkpoint.pt")["model"]["decoder.pred.weight"])


def _draco_bad_inputs(ds, run_dir, draco_run, tmp):
    """name -> (argv without --out, expected message part)."""
    draco = ["pretrain", "--objective", "draco", "--data", str(ds.root), "--profile", "smoke"] + DRACO_MODEL
    no_movies = tmp / "no_movies"
    shutil.copytree(ds.root, no_movies)
    shutil.rmtree(no_movies / "movies" / "odd")
    return {
        "synthetic": (["pretrain", "--objective", "draco", "--synthetic", "2", "--profile", "smoke"], "pass --data"),
        "init-from without draco": (["pretrain", "--data", str(ds.root), "--init-from", "x.pt"], "draco only"),
        "missing init-from": (draco + ["--init-from", str(tmp / "none.pt")], "not found"),
        "init-from of another size": (draco + ["--init-from", str(run_dir / "checkpoint.pt")], "differs from DRACO"),
        "mask ratio below 0.5": (draco + ["--mask-ratio", "0.3"], "[0.5, 1)"),
        "model with a cls token": (draco[:-2] + ["--model", "cpu-tiny"], "cls token"),
        "no movies": (["pretrain", "--objective", "draco", "--data", str(no_movies), "--profile", "smoke"]
                      + DRACO_MODEL, "movies/{full,odd,even}"),
        "micrographs too small": (draco[:-2], "smaller than one 256 px tile"),
    }


@pytest.mark.parametrize("case", ["synthetic", "init-from without draco", "missing init-from",
                                  "init-from of another size", "mask ratio below 0.5", "model with a cls token",
                                  "no movies", "micrographs too small"])
def test_draco_bad_input_exits_2_and_writes_nothing(case, ds, run_dir, draco_run, tmp_path, capsys):
    argv, message = _draco_bad_inputs(ds, run_dir, draco_run, tmp_path)[case]
    out = tmp_path / "out"
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cryolib pretrain: error:") and err.count("\n") == 1, err
    assert message in err, err
    assert not out.exists()
