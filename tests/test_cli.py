"""The command table and `cryolib simulate`'s bad inputs (clear message, exit 2, nothing written)."""

import subprocess
import sys

import pytest

from cryolib.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "sim-99999", "--n-micrographs", "1"], "unknown dataset"),
        (["--dataset", "sim-10081", "--n-micrographs", "0"], "at least 1"),
        (["--dataset", "sim-10081", "--n-micrographs", "1", "--size", "16"], "at least 64"),
        (["--dataset", "sim-10081", "--n-micrographs", "1", "--frames", "1"], "at least 2"),
    ],
)
def test_simulate_bad_input(tmp_path, capsys, argv, message):
    out = tmp_path / "ds"
    assert main(["simulate", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("cryolib simulate: error:")
    assert not out.exists()


def test_simulate_missing_required_argument_exits_nonzero(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cryolib.cli", "simulate", "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "--dataset" in proc.stderr
