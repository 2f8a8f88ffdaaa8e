"""cryolib.core.atomic: the temporary file is renamed into place, removed on failure, and the result has the
permissions a plain open().write() would give under the process umask."""

from __future__ import annotations

import os
import stat

import pytest

from cryolib.core.atomic import atomic_path, atomic_write_bytes, atomic_write_text


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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


def test_install_files_copies_a_set_with_plain_permissions(tmp_path):
    from cryolib.core.atomic import install_files

    src = [tmp_path / "a.pt", tmp_path / "a.md"]
    src[0].write_bytes(b"weights")
    src[1].write_text("card")
    dest = tmp_path / "assets"
    out = install_files(src, dest)
    assert [p.name for p in out] == ["a.pt", "a.md"]
    assert (dest / "a.pt").read_bytes() == b"weights" and (dest / "a.md").read_text() == "card"
    assert sorted(p.name for p in dest.iterdir()) == ["a.md", "a.pt"]  # no staged leftovers
    assert (dest / "a.pt").stat().st_mode & 0o777 == 0o666 & ~_current_umask()


def test_install_files_leaves_the_old_set_when_a_copy_fails(tmp_path):
    from cryolib.core.atomic import install_files

    dest = tmp_path / "assets"
    dest.mkdir()
    (dest / "a.pt").write_bytes(b"old")
    good = tmp_path / "a.pt"
    good.write_bytes(b"new")
    with pytest.raises(FileNotFoundError):
        install_files([good, tmp_path / "missing.md"], dest)
    assert (dest / "a.pt").read_bytes() == b"old"
    assert [p.name for p in dest.iterdir()] == ["a.pt"]
