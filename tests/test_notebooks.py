"""Every notebook runs through papermill at the smoke profile and writes finite headline numbers.

Notebooks run in order into one temporary data folder (later notebooks use the datasets
that 01 builds) and one temporary results folder (CRYOLIB_RESULTS).
"""

import json
import math
import os
from pathlib import Path

import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("notebooks")
    old = os.environ.get("CRYOLIB_RESULTS")
    os.environ["CRYOLIB_RESULTS"] = str(base / "results")
    yield base
    if old is None:
        os.environ.pop("CRYOLIB_RESULTS", None)
    else:
        os.environ["CRYOLIB_RESULTS"] = old


def _finite_numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _finite_numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _finite_numbers(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def test_notebooks_found():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_at_smoke(notebook, workspace):
    out = workspace / "executed" / notebook.name
    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(notebook),
        str(out),
        parameters={"profile": "smoke", "seed": 0, "data_root": str(workspace / "data")},
        kernel_name="python3",
        cwd=str(notebook.parent),
        progress_bar=False,
    )
    metrics = json.loads((workspace / "results" / "smoke" / "metrics.json").read_text())
    section = metrics.get(notebook.stem)
    assert section, f"{notebook.name} wrote no metrics.json section"
    numbers = list(_finite_numbers(section))
    assert numbers, f"{notebook.name} wrote no numbers"
    assert all(math.isfinite(v) for v in numbers)
    assert (workspace / "results" / "smoke" / "run.yaml").is_file()
