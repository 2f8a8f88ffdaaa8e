"""The package as a user installs it: a wheel, installed NON-editable into a temporary folder, imports from there
and finds its package data (the dataset registry cryolib/io/datasets.yaml)."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _source_copy(dst: Path) -> Path:
    """The files a build needs, copied so that the build never writes into the repository (build/, egg-info)."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dst / name)
    shutil.copytree(REPO / "cryolib", dst / "cryolib", ignore=_not_package_files)
    return dst


def _not_package_files(folder: str, names: list[str]) -> list[str]:
    """Skip caches and folders that are neither packages nor assets (e.g. data simulated into the tree)."""
    skip = []
    for name in names:
        path = Path(folder) / name
        if name == "__pycache__" or name.endswith(".pyc"):
            skip.append(name)
        elif path.is_dir() and name != "assets" and not (path / "__init__.py").is_file():
            skip.append(name)
    return skip


@pytest.mark.slow
def test_wheel_installs_and_loads_the_registry(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _source_copy(src)
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                   check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = wheels.glob("cryolib-*.whl")
    subprocess.run(pip + ["install", "--no-deps", "--no-compile", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    assert not list(target.glob("__editable__*")) and (target / "cryolib" / "io" / "datasets.yaml").is_file()
    code = ("import cryolib, cryolib.io.datasets as d\n"
            "print(cryolib.__file__)\n"
            "spec = d.load_registry()['sim-10081']\n"
            "print(spec.name, spec.empiar, d.REGISTRY_PATH)\n")
    deps = os.pathsep.join(site.getsitepackages())  # the venv's dependencies, after the installed wheel
    env = {**os.environ, "PYTHONPATH": f"{target}{os.pathsep}{deps}", "PYTHONNOUSERSITE": "1"}
    proc = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    module_file, registry_line = proc.stdout.strip().splitlines()
    assert Path(module_file).resolve().is_relative_to(target.resolve())
    name, empiar, registry = registry_line.split()
    assert (name, empiar) == ("sim-10081", "10081")
    assert Path(registry).resolve().is_relative_to(target.resolve())
