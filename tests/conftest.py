"""Shared test settings: headless plotting, two torch threads, results in a temp folder."""

import os

os.environ.setdefault("MPLBACKEND", "agg")

import pytest  # noqa: E402


@pytest.fixture
def results_root(tmp_path, monkeypatch):
    """Send results/<profile>/ writes to a temporary folder."""
    root = tmp_path / "results"
    monkeypatch.setenv("CRYOLIB_RESULTS", str(root))
    return root
