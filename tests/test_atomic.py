"""cryolib.core.atomic: the temporary file is renamed into place, removed on failure, and the result has the
permissions a plain open().write() would give under the process umask."""

from __future__ import annotations

import os
import stat

import pytest

from cryolib.core.atomic import atomic_path, atomic_write_bytes, atomic_write_text


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_has_plain_write_permissions(tmp_path, umask, mask, expected):
    umask(mask)
    plain = tmp_path / "plain.txt"
    with open(plain, "w") as f:
        f.write("x")
    atomic = atomic_write_text(tmp_path / "atomic.txt", "x")
    binary = atomic_write_bytes(tmp_path / "atomic.bin", b"x")
    assert _mode(plain) == expected  # the reference: what open() gives under this umask
    assert _mode(atomic) == _mode(plain) == _mode(binary)


def test_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "table.csv"
    atomic_write_text(path, "a\n")
    atomic_write_text(path, "b\n")
    assert path.read_text() == "b\n" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_write_bytes(path, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            assert tmp.suffix.endswith(".pt") and tmp.parent == tmp_path  # suffix kept for format sniffers
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_creates_missing_parent_folders(tmp_path):
    path = atomic_write_text(tmp_path / "a" / "b" / "run.yaml", "x: 1\n")
    assert path.read_text() == "x: 1\n"
