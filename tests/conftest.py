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


@pytest.fixture
def one_thread():
    """One torch thread: the 2-core test machine is shared, and oversubscription slows torch tests."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def tiny_sim_10291(tmp_path_factory):
    """3 simulated micrographs of sim-10291 at 192 px (2 train, 1 test), built once per session."""
    from cryolib.simulate.dataset import build_dataset

    return build_dataset("sim-10291", 3, tmp_path_factory.getbasetemp() / "sim-10291-192", size_px=192, n_frames=4, seed=0, progress=False)
