"""The environment: pyproject.toml and environment.yml list the same dependencies, and the setup checks the disk."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = set(project["dependencies"]) | set(extras["test"]) | set(extras["detector"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {r for r in pip_section if not r.startswith("-")}
    assert {_name(r): r for r in listed} == {_name(r): r for r in wanted}


def test_torch_is_pinned():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.14.1" in deps and "torchvision==0.29.1" in deps


def test_detectron2_wheel_is_where_the_setup_looks():
    """The setup installs the ``detector`` extra from a wheel folder (detectron2 is not on PyPI)."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    links = [r.split(None, 1)[1] for r in pip_section if r.startswith("--find-links")]
    assert links == ["third_party/wheels"]
    assert list((ROOT / "third_party/wheels").glob("detectron2-0.6-*.whl"))
    assert "third_party/wheels" in (ROOT / "run_all.sh").read_text()


def _check_disk(need_gb: int) -> subprocess.CompletedProcess:
    """Run run_all.sh's check_disk on this repository's disk with NEED_GB = ``need_gb``."""
    script = (ROOT / "run_all.sh").read_text()
    block = script[script.index("NEED_GB="):script.index("setup_env() {")]
    return subprocess.run(["bash", "-c", f"{block}\nNEED_GB={need_gb}\ncheck_disk {ROOT}"],
                          capture_output=True, text=True, check=False)


def test_setup_warns_before_filling_the_disk():
    """pip fails half-way on a full disk ('No space left on device'); the setup says so first."""
    free_gb = shutil.disk_usage(ROOT).free / 2**30
    short = _check_disk(int(free_gb) + 1000)
    assert short.returncode == 0 and "needs about" in short.stderr and "No space left on device" in short.stderr
    plenty = _check_disk(0)
    assert plenty.returncode == 0 and plenty.stderr == ""
