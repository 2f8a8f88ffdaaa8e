"""pyproject.toml and environment.yml must list the same dependencies."""

import re
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
