"""File checks shared by the readers: paths (:mod:`cryolib.io`) and torch files (checkpoints, curation heads)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cryolib.core.errors import CryolibError

if TYPE_CHECKING:
    import torch


def existing_file(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path`; :class:`CryolibError` unless it is an existing file."""
    path = Path(path)
    if not path.exists():
        raise CryolibError(f"{path} does not exist; check the path (relative paths start at {Path.cwd()})")
    if not path.is_file():
        raise CryolibError(f"{path} is not a file; pass a file path")
    return path


def load_torch_file(path: str | os.PathLike, what: str, missing_fix: str, kind: str,
                    map_location: str | torch.device = "cpu") -> object:
    """``torch.load(path, weights_only=True)`` with one-line errors: ``"<what> <path> not found; <missing_fix>"``
    when the file is absent, ``"... could not be read (...); it is truncated or not a <kind>"`` when it is
    not a torch file. The caller checks what the object holds."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CryolibError(f"{what} {path} not found; {missing_fix}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CryolibError(f"{what} {path} could not be read ({type(err).__name__}: {err}); "
                           f"it is truncated or not a {kind}") from err
