"""`cryolib denoise` end to end (same names, shape, stored dtype and pixel size) and its bad inputs
(exit 2, one line on stderr, no output file written)."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
import yaml

from cryolib import cli
from cryolib.io.micrographs import read_micrograph, write_mrc
from test_denoise_networks import tiny_checkpoint


@pytest.fixture(autouse=True)
def denoise_command(monkeypatch):
    """The lead registers the command in cli.COMMANDS; until then the tests add it themselves."""
    monkeypatch.setitem(cli.COMMANDS, "denoise", ("cryolib.commands.denoise", "denoise micrographs"))


@pytest.fixture
def mics(tmp_path):
    folder = tmp_path / "mics"
    rng = np.random.default_rng(0)
    write_mrc(folder / "a_odd_size.mrc", rng.normal(50, 5, (57, 91)).astype(np.float32), 3.0)
    write_mrc(folder / "b_counts.mrc", rng.poisson(20, (64, 48)).astype(np.int16), 3.0)
    return folder


def _files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_lowpass_writes_same_names_shapes_dtypes_pixel_sizes(mics, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["denoise", "--method", "lowpass", "--input", str(mics), "--out", str(out)]) == 0
    assert _files(out) == ["a_odd_size.mrc", "b_counts.mrc", "run.yaml"]
    for name in ("a_odd_size.mrc", "b_counts.mrc"):
        with mrcfile.open(mics / name) as src, mrcfile.open(out / name) as dst:
            assert dst.data.shape == src.data.shape and dst.data.dtype == src.data.dtype
            assert float(dst.voxel_size.x) == pytest.approx(3.0)
            assert dst.data.astype(float).std() < src.data.astype(float).std()  # smoothed
    run = yaml.safe_load((out / "run.yaml").read_text())
    assert run["command"] == "denoise" and run["n_micrographs"] == 2


def test_draco_with_checkpoint_and_pixel_size_override(mics, tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "ckpt", "draco")
    out = tmp_path / "out"
    argv = ["denoise", "--input", str(mics / "a_odd_size.mrc"), "--out", str(out), "--checkpoint", str(ckpt),
            "--pixel-size-A", "4.5"]
    assert cli.main(argv) == 0
    image, pixel = read_micrograph(out / "a_odd_size.mrc")
    assert image.shape == (57, 91) and pixel == pytest.approx(4.5) and np.isfinite(image).all()
    assert cli.main([*argv[:4], str(tmp_path / "shifted"), *argv[5:], "--shifts", "2"]) == 0
    shifted = read_micrograph(tmp_path / "shifted" / "a_odd_size.mrc")[0]
    assert shifted.shape == (57, 91) and not np.array_equal(shifted, image)  # a different (averaged) result


@pytest.mark.parametrize("case", ["missing input", "unknown method", "zero pixel size", "negative pixel size",
                                  "out is a file", "corrupt checkpoint", "no pixel size for lowpass",
                                  "checkpoint for lowpass", "shifts for lowpass", "zero shifts"])
def test_bad_inputs_one_line_exit_2_nothing_written(case, mics, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["denoise", "--input", str(mics), "--out", str(out), "--method", "lowpass"]
    if case == "missing input":
        argv[2] = str(tmp_path / "nowhere")
    elif case == "unknown method":
        argv[-1] = "bm3d"
    elif case == "zero pixel size":
        argv += ["--pixel-size-A", "0"]
    elif case == "negative pixel size":
        argv += ["--pixel-size-A", "-2"]
    elif case == "out is a file":
        out.write_text("x")
    elif case == "corrupt checkpoint":
        (tmp_path / "bad.pt").write_bytes(b"\x00garbage")
        argv[-1] = "draco"
        argv += ["--checkpoint", str(tmp_path / "bad.pt")]
    elif case == "no pixel size for lowpass":
        write_mrc(mics / "c_no_pixel.mrc", np.ones((16, 16), np.float32), 0.0)
    elif case == "checkpoint for lowpass":
        argv += ["--checkpoint", str(tmp_path / "x.pt")]
    elif case == "shifts for lowpass":
        argv += ["--pixel-size-A", "3", "--shifts", "2"]
    elif case == "zero shifts":
        argv[-1] = "draco"
        argv += ["--checkpoint", str(tiny_checkpoint(tmp_path / "ckpt", "draco")), "--shifts", "0"]
    before = out.read_text() if out.is_file() else None
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cryolib denoise") and "\n" not in err, err
    if before is None:
        assert _files(out) == []
    else:
        assert out.read_text() == before
