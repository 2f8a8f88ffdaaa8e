"""Tests for cryolib.pick.cluster and cryolib.pick.cryoemmae_picker: the Cryo-EMMAE picker (§3.2-3.3) on synthetic inputs.

A stub encoder (local means and std per 4 px token) stands in for the MAE so that clusters
separate; the trained MAE is checked by the study itself.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from cryolib.core.errors import CryolibError
from cryolib.pick import cluster as cl
from cryolib.pick.cryoemmae_picker import CryoEMMAEPicker, PickerConfig
from pick_synthetic import TOKEN, StubEncoder, blob_centre_px, blob_mask, match_rates, synthetic_micrograph


@pytest.fixture(scope="module")
def fitted_picker() -> tuple[CryoEMMAEPicker, list]:
    mics = [synthetic_micrograph(s) for s in range(4)]
    config = PickerConfig(target_diameter_px=24.0, global_kmeans_threads=1)
    picker = CryoEMMAEPicker(StubEncoder(), config=config)
    picker.fit([m for m, _ in mics[:2]], mics[0][0], mics[0][1], diameter_px=24.0)
    return picker, mics


# --------------------------------------------------------------------------- clustering
def test_nearest_centres_matches_kmeans_predict():
    x = np.random.default_rng(2).normal(size=(500, 6)).astype(np.float32)
    km = cl.fit_global_kmeans([x], k=4, n_threads=1)
    np.testing.assert_array_equal(cl.NearestCentres(km.cluster_centers_).predict(x), km.predict(x))


def _two_population_embedding(seed: int = 0):
    """[64, 64, 3] tokens: background in two noisy populations, particles (6x6 blobs) a distinct cluster."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(0, 0.3, (64, 64, 3)).astype(np.float32)
    blobs = [(r, c, 6) for r in (8, 28, 48) for c in (8, 28, 48)]
    truth = blob_mask((64, 64), blobs)
    emb[~truth & (np.arange(64)[None, :] >= 32), 1] += 2.0  # two background populations (ice thickness)
    emb[truth, 0] += 4.0
    return emb, truth, blobs


def test_fit_global_kmeans_subsamples_tokens():
    emb, _, _ = _two_population_embedding()
    km = cl.fit_global_kmeans([emb, emb.reshape(-1, 3)], k=4, max_tokens=1000, n_threads=1)
    assert km.cluster_centers_.shape == (4, 3)
    with pytest.raises(CryolibError):
        cl.fit_global_kmeans([])


def test_particle_cluster_from_reference_picks_the_cluster_under_the_boxes():
    emb, truth, blobs = _two_population_embedding()
    km = cl.fit_global_kmeans([emb], k=4, n_threads=1)
    refs = pd.DataFrame([blob_centre_px(*b) for b in blobs], columns=["x", "y"])
    pc = cl.particle_cluster_from_reference(km, emb, refs, diameter_px_working=24, token_px=TOKEN)
    labels = km.predict(emb.reshape(-1, 3)).reshape(64, 64)
    assert (labels[truth] == pc).mean() > 0.9
    with pytest.raises(CryolibError, match="inside the reference"):
        cl.particle_cluster_from_reference(km, emb, pd.DataFrame({"x": [-500.0], "y": [-500.0]}), 24, TOKEN)


def test_reference_cluster_rules_f1_discounts_a_cluster_that_covers_everything():
    # tokens are 1-D values equal to their cluster's centre: cluster 0 (value 0) is the
    # background over most of the map, cluster 1 (value 10) sits only inside particles
    labels = np.zeros((32, 32), int)
    refs = pd.DataFrame({"x": [30.0, 70.0, 110.0], "y": [30.0, 70.0, 110.0]})  # working px
    inside = cl.reference_token_mask(labels.shape, refs, diameter_px_working=24, token_px=TOKEN)
    rows, cols = np.nonzero(inside)
    core = (rows % 2 == 0) & (cols % 2 == 0)  # a quarter of each particle square: cluster 1
    labels[rows[core], cols[core]] = 1
    emb = (10.0 * labels[..., None]).astype(np.float32)
    km = cl.NearestCentres(np.array([[0.0], [10.0], [50.0]]))
    assert inside.sum() > 2 * core.sum()  # cluster 0 holds most particle tokens...
    assert cl.particle_cluster_from_reference(km, emb, refs, 24, TOKEN, rule="count") == 0
    assert cl.particle_cluster_from_reference(km, emb, refs, 24, TOKEN, rule="f1") == 1  # ...cluster 1 marks them
    with pytest.raises(CryolibError, match="unknown particle-cluster rule"):
        cl.particle_cluster_from_reference(km, emb, refs, 24, TOKEN, rule="vote")


def test_sequential_clustering_recovers_the_particle_tokens():
    emb, truth, blobs = _two_population_embedding()
    km = cl.fit_global_kmeans([emb], k=4, n_threads=1)
    pc = int(np.bincount(km.predict(emb[truth])).argmax())
    mask, stages = cl.sequential_clustering(emb, km, pc, ks=(3, 4, 5), return_stages=True)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert mask.dtype == bool and mask.shape == (64, 64) and iou > 0.9
    assert len(stages["masks"]) == 4 and stages["global_labels"].shape == (64, 64)


def test_choose_cluster_runner_up_rule_and_fallbacks():
    labels = np.zeros((10, 10), int)  # cluster 0: the rest (46 tokens)
    labels[:, 5:] = 1                 # cluster 1: 50 tokens
    labels[0:2, 0:2] = 2              # cluster 2: 4 tokens
    full = (slice(0, 10), slice(0, 10))
    prev = np.zeros((10, 10), bool)
    prev[0:3, 0:5] = True             # overlap: cluster 0 -> 11, cluster 2 -> 4
    # candidate 0 has size/overlap 46/11 > runner-up 2's 4/4: switch to the runner-up
    assert cl.choose_cluster(labels, prev, full, 3) == 2
    prev = np.zeros((10, 10), bool)
    prev[0:2, 0:3] = True             # overlap: cluster 2 -> 4, cluster 0 -> 2; 4/4 < 46/2: keep
    assert cl.choose_cluster(labels, prev, full, 3) == 2
    prev[:] = False
    prev[:, 4:6] = True               # overlap: cluster 0 -> 10, cluster 1 -> 10 (tie -> lower index)
    assert cl.choose_cluster(labels, prev, full, 3) == 0  # 46/10 < 50/10: keep 0
    # nothing overlaps in the crop -> counted over the whole map; nothing at all -> None
    edge = np.zeros((10, 10), bool)
    edge[0, 9] = True
    assert cl.choose_cluster(labels, edge, (slice(3, 7), slice(3, 7)), 3) == 1
    assert cl.choose_cluster(labels, np.zeros((10, 10), bool), full, 3) is None


# --------------------------------------------------------------------------- the whole picker
def test_picker_finds_dark_disks(fitted_picker):
    picker, mics = fitted_picker
    for img, truth in mics[2:]:
        picks = picker.pick(img, diameter_px=24.0)
        assert list(picks.columns) == ["x", "y", "diameter", "score"]
        recall, precision = match_rates(picks, truth, tol=12.0)
        assert recall >= 0.7 and precision >= 0.7, (recall, precision)


def test_picker_maps_picks_back_to_input_pixels(fitted_picker):
    picker, mics = fitted_picker
    img, truth = mics[3]
    big = np.kron(img, np.ones((2, 2), np.float32))  # the same micrograph at twice the pixels
    picks = picker.pick(big, diameter_px=48.0)
    recall, _ = match_rates(picks, truth * 2 + 0.5, tol=24.0)
    assert recall >= 0.7 and (picks.diameter == 48.0).all()


def test_picker_stages_and_state_round_trip(fitted_picker):
    picker, mics = fitted_picker
    picks, stages = picker.pick(mics[3][0], 24.0, return_stages=True)
    assert {"preprocessed", "global_labels", "sequential_masks", "smoothed", "threshold", "picks_working"} <= set(stages)
    assert len(stages["sequential_masks"]) == 1 + len(picker.config.ks)
    state = picker.state_dict()
    assert isinstance(state["centres"], np.ndarray) and state["config"]["ks"] == [3, 4, 5]
    again = CryoEMMAEPicker.from_state(StubEncoder(), state)
    assert again.reference_fraction == picker.reference_fraction
    pd.testing.assert_frame_equal(again.pick(mics[3][0], 24.0), picks)
    old = {**state, "config": {k: v for k, v in state["config"].items() if k != "standardize_tokens"}}
    assert CryoEMMAEPicker.from_state(StubEncoder(), old).config.standardize_tokens is False  # predates it


def test_picker_particle_fraction_paper_default_or_measured_on_the_reference(fitted_picker):
    picker, mics = fitted_picker
    img, truth = mics[0]
    expected = len(truth) * np.pi * 24.0**2 / 4 / img.size
    assert picker.reference_fraction == pytest.approx(expected)
    assert picker.particle_fraction == 0.04  # the paper's value unless the config asks for the measured one
    measured = dataclasses.replace(picker, config=dataclasses.replace(picker.config, particle_fraction=None))
    assert measured.particle_fraction == pytest.approx(expected)
    with pytest.raises(CryolibError, match="no particle fraction"):
        _ = CryoEMMAEPicker(StubEncoder(), config=PickerConfig(particle_fraction=None)).particle_fraction


def test_picker_with_the_cpu_tiny_mae_runs_end_to_end():
    from cryolib.models.vit import build_model

    img, truth = synthetic_micrograph(7, size=192, n=8)
    config = PickerConfig(target_diameter_px=24.0, global_kmeans_threads=1)
    picker = CryoEMMAEPicker(build_model("cpu-tiny"), config=config)
    picker.fit([img], img, truth, 24.0)
    picks = picker.pick(img, 24.0)
    assert np.isfinite(picks[["x", "y", "score"]].to_numpy()).all()
    assert ((picks.x >= 0) & (picks.x < 192) & (picks.y >= 0) & (picks.y < 192)).all()


def test_picker_bad_inputs(fitted_picker):
    picker, mics = fitted_picker
    img = mics[0][0]
    with pytest.raises(CryolibError, match="diameter"):
        picker.pick(img, 0.0)
    with pytest.raises(CryolibError, match="diameter"):
        picker.pick(img, -5)
    bad = img.copy()
    bad[10, 10] = np.inf
    with pytest.raises(CryolibError, match="non-finite"):
        picker.pick(bad, 24.0)
    with pytest.raises(CryolibError, match="smaller than one 64 px tile"):
        picker.pick(img[:80, :80], 48.0)  # 40 px at the working scale
    with pytest.raises(CryolibError, match="not fitted"):
        CryoEMMAEPicker(StubEncoder()).pick(img, 24.0)
    with pytest.raises(CryolibError, match="lacks"):
        CryoEMMAEPicker.from_state(StubEncoder(), {"config": {}})
    state = picker.state_dict()
    state["particle_cluster"] = 9
    with pytest.raises(CryolibError, match="not one of"):
        CryoEMMAEPicker.from_state(StubEncoder(), state)
