"""The package's layers (pyproject.toml's import-linter contract) hold, and no import cycle hides in them."""

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_layers_contract_is_kept():
    run = subprocess.run([str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Contracts: 1 kept, 0 broken" in run.stdout


def _cycles(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    """Pairs of modules that import each other directly or through a chain (module level)."""
    modules = sorted(m for m in graph.modules if m.startswith("cryolib."))
    found = []
    for a in modules:
        for b in graph.find_modules_directly_imported_by(a):
            if b != a and b.startswith("cryolib.") and graph.chain_exists(importer=b, imported=a):
                found.append((a, b))
    return found


def test_no_import_cycles():
    graph = grimp.build_graph("cryolib")
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for m in ("cryolib.a", "cryolib.b"):
        graph.add_module(m)
    graph.add_import(importer="cryolib.a", imported="cryolib.b")
    graph.add_import(importer="cryolib.b", imported="cryolib.a")
    assert _cycles(graph) == [("cryolib.a", "cryolib.b"), ("cryolib.b", "cryolib.a")]


@pytest.mark.parametrize("layer", ["core", "io", "processing", "simulate", "evaluate", "models", "training",
                                   "pick", "denoise", "curate", "studies", "commands"])
def test_every_layer_is_a_package(layer):
    assert (ROOT / "cryolib" / layer / "__init__.py").is_file()
