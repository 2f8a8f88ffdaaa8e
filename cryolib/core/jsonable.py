"""Plain JSON/YAML values for run records, metrics and metadata."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

#: The repository root (paths inside it are recorded relative to it).
REPO_ROOT = Path(__file__).resolve().parents[2]


def to_jsonable(value: Any) -> Any:
    """Plain JSON/YAML types: numpy/torch scalars and arrays become Python values, non-finite floats
    become None, and paths inside the repository become relative."""
    if isinstance(value, (str, Path)) and str(value).startswith(str(REPO_ROOT) + os.sep):
        return os.path.relpath(str(value), REPO_ROOT)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
