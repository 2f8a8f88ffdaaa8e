"""`cryolib simulate`: sizes from --profile with explicit overrides, run.yaml, and bad inputs (one line, exit 2,
nothing written)."""

from __future__ import annotations

import argparse

import pytest
import yaml

from cryolib.cli import main
from cryolib.commands.simulate import resolve_sizes
from cryolib.core.profiles import PROFILES
from cryolib.io.datasets import get_spec, load_dataset


def _args(**kw) -> argparse.Namespace:
    base = dict(dataset="sim-10081", profile="default", n_micrographs=None, size=None, frames=None)
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize("profile", ["smoke", "default", "full"])
def test_profile_sets_sizes(profile):
    sim = PROFILES[profile].simulation
    expected = (sim.micrographs_for(get_spec("sim-10081").roles), sim.micrograph_px, sim.n_frames)
    assert resolve_sizes(_args(profile=profile)) == expected


def test_explicit_flags_override_the_profile():
    assert resolve_sizes(_args(profile="full", n_micrographs=3, size=128, frames=4)) == (3, 128, 4)
    assert resolve_sizes(_args(profile="smoke", size=300))[1:] == (300, PROFILES["smoke"].simulation.n_frames)


def test_simulate_writes_dataset_and_run_yaml(tmp_path, capsys):
    out = tmp_path / "ds"
    argv = ["simulate", "--dataset", "sim-10081", "--profile", "smoke", "--n-micrographs", "1", "--size", "96",
            "--frames", "2", "--seed", "3", "--out", str(out)]
    assert main(argv) == 0
    ds = load_dataset(out)
    assert len(ds.micrographs) == 1 and ds.name == "sim-10081"
    run = yaml.safe_load((out / "run.yaml").read_text())
    assert run["command"] == "simulate" and run["seed"] == 3 and run["parameters"]["profile"] == "smoke"
    assert (run["n_micrographs"], run["size_px"], run["n_frames"]) == (1, 96, 2)
    assert "1 micrographs" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "sim-99999", "--n-micrographs", "1"], "unknown dataset"),
    (["--dataset", "sim-10081", "--n-micrographs", "0"], "at least 1"),
    (["--dataset", "sim-10081", "--n-micrographs", "1", "--size", "16"], "at least 64"),
    (["--dataset", "sim-10081", "--n-micrographs", "1", "--frames", "1"], "at least 2"),
    (["--dataset", "sim-10081", "--profile", "tiny"], "invalid choice: 'tiny'"),
    (["--dataset", "sim-10081", "--seed", "zero"], "invalid int value: 'zero'"),
    (["--n-micrographs", "1"], "required: --dataset"),
])
def test_simulate_bad_input(tmp_path, capsys, argv, message):
    out = tmp_path / "ds"
    assert main(["simulate", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("cryolib simulate: error:") and err.count("\n") == 1, err
    assert not out.exists()


def test_out_is_a_file(tmp_path, capsys):
    out = tmp_path / "ds"
    out.write_text("keep me")
    assert main(["simulate", "--dataset", "sim-10081", "--n-micrographs", "1", "--size", "64", "--out", str(out)]) == 2
    assert "is a file" in capsys.readouterr().err and out.read_text() == "keep me"
