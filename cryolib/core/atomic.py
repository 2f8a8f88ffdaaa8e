"""Atomic writes: write to a temporary file beside the target, then rename.

A killed process never leaves a half-written checkpoint, table or coordinate file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    """The process's umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    The temporary name keeps the target's suffix so that libraries that look at
    the extension (mrcfile, tifffile, matplotlib) behave.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; a plain write would give 0666 & ~umask
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def install_files(files: list[Path], dest_dir: str | os.PathLike) -> list[Path]:
    """Copy ``files`` into ``dest_dir`` as a set: every copy is staged first, then all are renamed,
    so a failed copy leaves the files already there untouched (a checkpoint and its model card)."""
    import shutil

    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for f in map(Path, files):
            fd, tmp = tempfile.mkstemp(prefix=f".{f.stem}.", suffix=f".tmp{f.suffix}", dir=dest)
            os.close(fd)
            staged.append((Path(tmp), dest / f.name))  # before the copy: a failed copy is cleaned up too
            shutil.copyfile(f, tmp)
            os.chmod(tmp, 0o666 & ~_umask())
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return [target for _, target in staged]
