"""The Cryo-EMMAE checkpoint shipped in cryolib/assets loads, is small, and picks simulated micrographs."""

import pytest

from cryolib.evaluate.metrics import match_picks, score_dataset
from cryolib.pick import pick_micrographs
from cryolib.pick.cryoemmae import DEFAULT_CHECKPOINT, load_picker


def test_shipped_checkpoint_is_installed_small_and_documented():
    assert DEFAULT_CHECKPOINT.is_file(), f"{DEFAULT_CHECKPOINT} missing from the package"
    assert DEFAULT_CHECKPOINT.stat().st_size < 20 * 2**20
    card = DEFAULT_CHECKPOINT.with_suffix(".md").read_text()
    assert "simulated" in card and "overlap60" in card
    picker = load_picker(DEFAULT_CHECKPOINT)
    assert 0 <= picker.particle_cluster < picker.config.global_k


def test_default_checkpoint_picks_the_tiny_dataset_without_a_reference(tiny_sim_10291):
    """Its own particle cluster, no annotation: 3 micrographs of sim-10291 at 192 px (conftest.py)."""
    ds = tiny_sim_10291
    picks = pick_micrographs("cryoemmae", ds.micrographs, ds.diameter_px, progress=False)
    res = score_dataset(picks, {s: ds.coordinates(s) for s in ds.stems}, ds.diameter_px)
    assert res["f1"] >= 0.45 and res["precision"] >= 0.6, res  # measured: F1 0.61, precision 0.88, recall 0.47


@pytest.fixture(scope="module")
def easy(tmp_path_factory):
    """Two micrographs of the easy training analog sim-10291 at 384 px (well separated particles)."""
    from cryolib.simulate.dataset import build_dataset

    return build_dataset("sim-10291", 2, tmp_path_factory.mktemp("easy") / "ds", size_px=384, n_frames=8, seed=11, progress=False)


def test_default_checkpoint_picks_most_particles_on_an_easy_micrograph(easy):
    ref, target = easy.micrographs
    picks = pick_micrographs("cryoemmae", [target], easy.diameter_px, reference=(ref, easy.coordinates(ref.stem)), progress=False)
    res = match_picks(picks[target.stem], easy.coordinates(target.stem), easy.diameter_px)
    assert res.f1 >= 0.7 and res.recall >= 0.6 and res.precision >= 0.8, res.as_dict()  # measured: F1 0.85, recall 0.74, precision 1.0
