"""Path checks shared by the file readers of :mod:`cryolib.io.micrographs` and :mod:`cryolib.io.coordinates`."""

from __future__ import annotations

import os
from pathlib import Path

from cryolib.core.errors import CryolibError


def existing_file(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path`; :class:`CryolibError` unless it is an existing file."""
    path = Path(path)
    if not path.exists():
        raise CryolibError(f"{path} does not exist; check the path (relative paths start at {Path.cwd()})")
    if not path.is_file():
        raise CryolibError(f"{path} is not a file; pass a file path")
    return path
