"""Collect pretraining micrographs from folders: dataset folders (CryoPPP layout) or plain micrograph folders."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from cryolib.core.errors import CryolibError
from cryolib.io.datasets import load_dataset
from cryolib.io.micrographs import list_micrographs

log = logging.getLogger(__name__)

__all__ = ["collect_training_data"]


def collect_training_data(dirs: Sequence[str | os.PathLike], diameter_px: float | None = None
                          ) -> tuple[list[Path], list[Path], dict[str, float]]:
    """Folders -> (train paths, val paths, {path: particle diameter in px}).

    A dataset folder (it has ``micrographs/``) gives its train and val splits and its particle
    diameter (``diameter_px`` fills in when the dataset has none). A plain folder gives all its
    micrographs for training and needs ``diameter_px`` (``--diameter-px`` on the command line).
    Raises :class:`CryolibError` on a missing folder, an empty train split or a missing diameter.
    """
    if diameter_px is not None and not diameter_px > 0:
        raise CryolibError(f"--diameter-px must be > 0 (px), got {diameter_px}")
    if not dirs:
        raise CryolibError("no --data folders given; pass dataset or micrograph folders")
    train: list[Path] = []
    val: list[Path] = []
    diameters: dict[str, float] = {}
    for entry in dirs:
        root = Path(entry)
        if not root.is_dir():
            raise CryolibError(f"--data {root} is not a folder; pass dataset or micrograph folders")
        if (root / "micrographs").is_dir():
            try:
                ds = load_dataset(root)
            except CryolibError:
                if diameter_px is None:
                    raise
                ds = load_dataset(root, diameter_px)
            parts, d = (ds.split("train"), ds.split("val")), ds.diameter_px
            if not parts[0]:
                raise CryolibError(f"--data {root}: the dataset has no micrographs in its train split")
        else:
            if diameter_px is None:
                raise CryolibError(f"--data {root} is a plain micrograph folder; pass --diameter-px (px)")
            parts, d = (list_micrographs(root), []), float(diameter_px)
        train += parts[0]
        val += parts[1]
        diameters.update({str(p): d for p in parts[0] + parts[1]})
        log.info("--data %s: %d train, %d val micrographs, particle diameter %.1f px", root, *map(len, parts), d)
    return train, val, diameters
