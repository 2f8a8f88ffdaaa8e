"""`cryolib curate` end to end (quality.csv, the STAR selection, run.yaml) and its bad inputs
(exit 2, one line on stderr, nothing written)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from cryolib import cli
from cryolib.curate.head import CurationHead, encoder_fingerprint, load_encoder, save_curation_head
from cryolib.curate.probe import LinearProbe
from cryolib.curate.select import read_selection_star
from cryolib.io.micrographs import read_micrograph, write_mrc
from cryolib.studies.curation_particles import particles_spec
from test_curate_features import blob_micrographs
from test_curate_probe import make_tiny_checkpoint


@pytest.fixture(autouse=True)
def curate_command(monkeypatch):
    """The command table entry (the lead adds it to cryolib/cli.py; harmless once there)."""
    monkeypatch.setitem(cli.COMMANDS, "curate", ("cryolib.commands.curate", "accept or reject micrographs"))


@pytest.fixture(scope="module")
def mics(tmp_path_factory):
    """3 micrographs with particles (good) and 3 empty ones (bad), 64 px, in counts."""
    folder = tmp_path_factory.mktemp("mics")
    images = blob_micrographs(3, blobs=True, seed=10) + blob_micrographs(3, blobs=False, seed=20)
    for i, img in enumerate(images):
        write_mrc(folder / f"mic_{i}.mrc", img, 4.0)
    return folder


@pytest.fixture(scope="module")
def stats_head(tmp_path_factory):
    images = blob_micrographs(8, blobs=True, seed=1) + blob_micrographs(8, blobs=False, seed=2)
    head = CurationHead("stats", LinearProbe(), {"kind": "image_statistics", "n_bands": 4})
    head.probe.fit(head.featurise(images), [1] * 8 + [0] * 8)
    return save_curation_head(tmp_path_factory.mktemp("head") / "stats_head.pt", head)


@pytest.fixture(scope="module")
def encoder_head(tmp_path_factory):
    folder = tmp_path_factory.mktemp("enc")
    ckpt = make_tiny_checkpoint(folder / "run")
    head = CurationHead("tiny-draco", LinearProbe(), {"kind": "encoder", "max_tiles": 4}, encoder=str(ckpt),
                        encoder_sha256=encoder_fingerprint(load_encoder(ckpt)[0]))
    head.probe.fit(head.featurise(blob_micrographs(4, seed=3) + blob_micrographs(4, blobs=False, seed=4)), [1] * 4 + [0] * 4)
    return save_curation_head(folder / "head.pt", head), head


def _run(argv, capsys):
    code = cli.main(argv)
    return code, capsys.readouterr()


def test_curate_writes_quality_and_star_selection(mics, stats_head, tmp_path, capsys):
    out = tmp_path / "curated"
    code, io = _run(["curate", "--input", str(mics), "--checkpoint", str(stats_head), "--out", str(out)], capsys)
    assert code == 0, io.err
    quality = pd.read_csv(out / "quality.csv")
    assert list(quality.columns) == ["micrograph", "label", "score"]
    assert [p.split("/")[-1] for p in quality["micrograph"]] == [f"mic_{i}.mrc" for i in range(6)]
    assert list(quality["label"]) == ["accept"] * 3 + ["reject"] * 3  # the easy case is curated right
    assert quality["score"].between(0, 1).all()
    assert read_selection_star(out / "selected_micrographs.star") == list(quality["micrograph"][:3])
    run = yaml.safe_load((out / "run.yaml").read_text())
    assert run["command"] == "curate" and run["n_accepted"] == 3 and run["threshold"] == 0.5
    assert run["out_of_range"] == {}  # every micrograph is like the head's training micrographs
    assert "3/6 micrographs accepted" in io.out


def test_curate_reports_micrographs_outside_the_training_range(mics, stats_head, tmp_path, capsys):
    folder = tmp_path / "mics"
    folder.mkdir()
    for p in mics.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    dim = np.random.default_rng(0).poisson(1.0, (64, 64)).astype(np.float32)  # 1 e/px: far below the training dose
    write_mrc(folder / "zz_dim.mrc", dim, 4.0)
    out = tmp_path / "curated"
    code, io = _run(["curate", "--input", str(folder), "--checkpoint", str(stats_head), "--out", str(out)], capsys)
    assert code == 0, io.err
    assert "1 outside the head's training range" in io.out
    run = yaml.safe_load((out / "run.yaml").read_text())
    assert list(run["out_of_range"]) == [str(folder / "zz_dim.mrc")]
    assert run["out_of_range"][str(folder / "zz_dim.mrc")].startswith("log10_mean_counts z=-")
    assert list(pd.read_csv(out / "quality.csv").columns) == ["micrograph", "label", "score"]  # the file keeps its form


def test_curate_threshold_and_encoder_head(mics, encoder_head, tmp_path, capsys):
    path, head = encoder_head
    out = tmp_path / "curated"
    code, io = _run(["curate", "--input", str(mics / "*.mrc"), "--checkpoint", str(path), "--threshold", "0.0",
                     "--out", str(out)], capsys)
    assert code == 0, io.err
    quality = pd.read_csv(out / "quality.csv")
    images = [read_micrograph(p)[0] for p in quality["micrograph"]]
    assert np.allclose(quality["score"], head.scores(images), atol=1e-6)  # the CLI runs the same head
    assert (quality["label"] == "accept").all()  # threshold 0 accepts everything
    assert len(read_selection_star(out / "selected_micrographs.star")) == 6
    code, _ = _run(["curate", "--input", str(mics), "--checkpoint", str(path), "--threshold", "1.0",
                    "--out", str(tmp_path / "none")], capsys)
    assert code == 0 and read_selection_star(tmp_path / "none" / "selected_micrographs.star") == []


def _bad(argv, capsys, out, match):
    code, io = _run(argv, capsys)
    assert code == 2
    lines = io.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cryolib curate: error:") and match in lines[0], io.err
    assert not (out / "quality.csv").exists() and not (out / "selected_micrographs.star").exists()
    assert not (out / "run.yaml").exists()


def test_missing_input(stats_head, tmp_path, capsys):
    out = tmp_path / "out"
    _bad(["curate", "--input", str(tmp_path / "nothing"), "--checkpoint", str(stats_head), "--out", str(out)],
         capsys, out, "no micrographs")
    assert not out.exists()


def test_corrupt_checkpoint(mics, tmp_path, capsys):
    bad = tmp_path / "head.pt"
    bad.write_bytes(b"\x00garbage")
    out = tmp_path / "out"
    _bad(["curate", "--input", str(mics), "--checkpoint", str(bad), "--out", str(out)], capsys, out, "could not be read")
    assert not out.exists()


def test_out_is_a_file(mics, stats_head, tmp_path, capsys):
    out = tmp_path / "out.txt"
    out.write_text("keep me")
    code, io = _run(["curate", "--input", str(mics), "--checkpoint", str(stats_head), "--out", str(out)], capsys)
    assert code == 2 and len(io.err.strip().splitlines()) == 1 and "is a file" in io.err
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("threshold", ["1.5", "nan", "-0.1"])
def test_bad_threshold(mics, stats_head, tmp_path, capsys, threshold):
    out = tmp_path / "out"
    _bad(["curate", "--input", str(mics), "--checkpoint", str(stats_head), "--threshold", threshold, "--out", str(out)],
         capsys, out, "--threshold")


def test_corrupt_micrograph_writes_nothing(mics, stats_head, tmp_path, capsys):
    folder = tmp_path / "mics"
    folder.mkdir()
    for p in mics.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "zz_broken.mrc").write_bytes(b"not an mrc file")
    out = tmp_path / "out"
    _bad(["curate", "--input", str(folder), "--checkpoint", str(stats_head), "--out", str(out)], capsys, out, "zz_broken")


def test_curate_warns_when_a_session_relative_head_gets_too_few_micrographs(mics, stats_head, tmp_path, capsys,
                                                                           caplog):
    images = blob_micrographs(8, blobs=True, seed=1) + blob_micrographs(8, blobs=False, seed=2)
    head = CurationHead("rel", LinearProbe(), {"kind": "image_statistics", "n_bands": 4, "session_relative": "all"})
    sessions = ["s"] * 4 + ["t"] * 4 + ["s"] * 4 + ["t"] * 4
    path = save_curation_head(tmp_path / "rel.pt", head.fit(images, [1] * 8 + [0] * 8, sessions))
    code, io = _run(["curate", "--input", str(mics), "--checkpoint", str(path), "--out", str(tmp_path / "few")], capsys)
    assert code == 0, io.err  # 6 micrographs: curated, with a warning
    assert "poor median" in caplog.text and "at least 8" in caplog.text
    caplog.clear()
    code, io = _run(["curate", "--input", str(mics), "--checkpoint", str(stats_head), "--out",
                     str(tmp_path / "absolute")], capsys)
    assert code == 0 and "poor median" not in caplog.text  # an absolute head needs no session


@pytest.fixture(scope="module")
def particles_head(tmp_path_factory):
    """A statistics head that also takes the particle coverage counted by the shipped detector."""
    images = blob_micrographs(8, blobs=True, seed=1) + blob_micrographs(8, blobs=False, seed=2)
    head = CurationHead("with-particles", LinearProbe(), {"kind": "image_statistics", "n_bands": 4,
                                                          "particles": particles_spec()})
    head.fit(images, [1] * 8 + [0] * 8, coverage=[-2.0] * 8 + [-4.0] * 8)
    return save_curation_head(tmp_path_factory.mktemp("phead") / "head.pt", head)


def test_a_head_that_counts_particles_needs_the_diameter(mics, particles_head, tmp_path, capsys):
    out = tmp_path / "curated"
    code, io = _run(["curate", "--input", str(mics), "--checkpoint", str(particles_head), "--out", str(out)], capsys)
    assert code == 2 and "--diameter-px" in io.err and len(io.err.strip().splitlines()) == 1
    assert not out.exists()
    code, io = _run(["curate", "--input", str(mics), "--checkpoint", str(particles_head), "--out", str(out),
                     "--diameter-px", "-3"], capsys)
    assert code == 2 and "--diameter-px" in io.err and not out.exists()
    code, io = _run(["curate", "--input", str(mics), "--checkpoint", str(particles_head), "--out", str(out),
                     "--diameter-px", "8"], capsys)  # the shipped detector counts the blobs
    assert code == 0, io.err
    assert len(pd.read_csv(out / "quality.csv")) == 6
