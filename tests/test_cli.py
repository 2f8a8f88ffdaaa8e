"""cryolib.cli: the command table, one-line errors with exit 2 for every bad flag, exit 1 for unexpected errors."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from cryolib import cli
from cryolib.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize("argv, prog, message", [
    (["frobnicate"], "cryolib", "invalid choice: 'frobnicate'"),
    (["--bogus"], "cryolib", "unrecognized arguments: --bogus"),
    (["simulate", "--out", "X"], "cryolib simulate", "the following arguments are required: --dataset"),
    (["simulate", "--dataset", "sim-10081", "--size", "big", "--out", "X"], "cryolib simulate",
     "argument --size: invalid int value: 'big'"),
    (["simulate", "--dataset", "sim-10081", "--profile", "huge", "--out", "X"], "cryolib simulate",
     "argument --profile: invalid choice: 'huge'"),
    (["pretrain", "--synthetic", "2", "--out", "X", "--objective", "simclr"], "cryolib pretrain",
     "argument --objective: invalid choice: 'simclr'"),
    (["pretrain", "--out", "X"], "cryolib pretrain", "one of the arguments --data --synthetic is required"),
    (["pretrain", "--synthetic", "2", "--data", "d", "--out", "X"], "cryolib pretrain", "not allowed with"),
    (["pick", "--input", "m", "--diameter-px", "10", "--out", "X", "--format", "mrc"], "cryolib pick",
     "argument --format: invalid choice: 'mrc'"),
    (["pick", "--input", "m", "--diameter-px", "ten", "--out", "X"], "cryolib pick", "invalid float value: 'ten'"),
    (["evaluate-picks", "--pred", "p", "--truth", "t", "--rule", "best"], "cryolib evaluate-picks",
     "argument --rule: invalid choice: 'best'"),
])
def test_argparse_errors_are_one_line_exit_2(argv, prog, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"{prog}: error: ") and captured.err.count("\n") == 1, captured.err
    assert message in captured.err and "usage:" not in captured.err
    assert captured.out == "" and list(tmp_path.iterdir()) == []


@pytest.fixture
def broken_command(monkeypatch):
    """A command `boom` whose main raises an unexpected ValueError (or a CryolibError with --kind user)."""
    module = types.ModuleType("cryolib_test_boom")

    def add_args(parser):
        parser.add_argument("--kind", default="bug", choices=("bug", "user"))

    def run(args):
        if args.kind == "user":
            raise cli.CryolibError("the input is bad; pass a good one")
        raise ValueError("a bug in the\nlibrary")

    module.add_args, module.main = add_args, run
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(COMMANDS, "boom", (module.__name__, "always fails"))


def test_unexpected_error_is_one_line_exit_1(broken_command, capsys):
    assert main(["boom"]) == 1
    err = capsys.readouterr().err
    assert err == ("cryolib boom: unexpected error: ValueError: a bug in the library "
                   "(rerun with --debug for the traceback)\n")


@pytest.mark.parametrize("argv", [["--debug", "boom"], ["boom", "--debug"]])
def test_debug_shows_the_traceback(broken_command, capsys, argv):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "ValueError: a bug in the" in err


def test_cryolib_error_is_one_line_exit_2(broken_command, capsys):
    assert main(["boom", "--kind", "user"]) == 2
    assert capsys.readouterr().err == "cryolib boom: error: the input is bad; pass a good one\n"


def test_installed_entry_point_exit_code_and_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cryolib.cli", "simulate", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--dataset" in proc.stderr
    assert not (tmp_path / "x").exists()
