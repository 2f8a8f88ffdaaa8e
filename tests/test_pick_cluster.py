"""Tests for cryolib.pick.cluster: the Cryo-EMMAE picker's machinery (§3.2-3.3) on synthetic inputs.

A stub encoder (local means and std per 4 px token) stands in for the MAE so that clusters
separate; the trained MAE is checked by the study itself.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from cryolib.errors import CryolibError
from cryolib.pick import cluster as cl

TOKEN = 4


class StubEncoder:
    """embed: [N, 1, t, t] -> [N, t/4, t/4, 4]: 4 px mean, 12 and 20 px neighbourhood means, 4 px std."""

    def embed(self, imgs: torch.Tensor) -> torch.Tensor:
        x = imgs.float()
        m1 = F.avg_pool2d(x, TOKEN)
        m2 = F.avg_pool2d(x, 12, stride=TOKEN, padding=4, count_include_pad=False)
        m3 = F.avg_pool2d(x, 20, stride=TOKEN, padding=8, count_include_pad=False)
        sd = (F.avg_pool2d(x * x, TOKEN) - m1**2).clamp_min(0).sqrt()
        return torch.cat([m1, m2, m3, sd], 1).permute(0, 2, 3, 1)  # [N, h, w, 4]


def synthetic_micrograph(seed: int, size: int = 320, d: float = 24.0, n: int = 18, noise: float = 0.6):
    """Dark disks of diameter ``d`` px on white noise -> (image, true centres DataFrame x, y)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.zeros((size, size), np.float32)
    pts: list[tuple[float, float]] = []
    for _ in range(4000):
        if len(pts) == n:
            break
        x, y = rng.uniform(d, size - d, 2)
        if all((x - a) ** 2 + (y - b) ** 2 > (1.6 * d) ** 2 for a, b in pts):
            pts.append((x, y))
            img[(xx - x) ** 2 + (yy - y) ** 2 <= (d / 2) ** 2] -= 1.0
    img += noise * rng.standard_normal(img.shape).astype(np.float32)
    return img, pd.DataFrame(pts, columns=["x", "y"])


def match_rates(picks: pd.DataFrame, truth: pd.DataFrame, tol: float) -> tuple[float, float]:
    """(recall, precision) with a centre-distance tolerance (px)."""
    if len(picks) == 0:
        return 0.0, 0.0
    dist = np.hypot(picks.x.to_numpy()[:, None] - truth.x.to_numpy()[None], picks.y.to_numpy()[:, None] - truth.y.to_numpy()[None])
    return float((dist.min(0) < tol).mean()), float((dist.min(1) < tol).mean())


def blob_mask(shape, blobs) -> np.ndarray:
    """Token mask with square blobs given as (row0, col0, side) in tokens."""
    m = np.zeros(shape, bool)
    for r, c, s in blobs:
        m[r:r + s, c:c + s] = True
    return m


def blob_centre_px(r: int, c: int, s: int) -> tuple[float, float]:
    """Working-px (x, y) centre of a blob of tokens [r, r+s) x [c, c+s)."""
    return (c + s / 2) * TOKEN - 0.5, (r + s / 2) * TOKEN - 0.5


@pytest.fixture(scope="module")
def fitted_picker() -> tuple[cl.CryoEMMAEPicker, list]:
    mics = [synthetic_micrograph(s) for s in range(4)]
    config = cl.PickerConfig(target_diameter_px=24.0, global_kmeans_threads=1)
    picker = cl.CryoEMMAEPicker(StubEncoder(), config=config)
    picker.fit([m for m, _ in mics[:2]], mics[0][0], mics[0][1], diameter_px=24.0)
    return picker, mics


# --------------------------------------------------------------------------- embedding
def test_embedding_image_shape_and_stitching():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (200, 300)).astype(np.float32)
    emb = cl.embedding_image(StubEncoder(), img, tile_px=64, mean=0.5, std=0.25)
    assert emb.shape == (50, 75, 4) and emb.dtype == np.float32
    blocks = ((img - 0.5) / 0.25).reshape(50, TOKEN, 75, TOKEN).mean(axis=(1, 3))
    np.testing.assert_allclose(emb[..., 0], blocks, atol=1e-5)  # token (i, j) covers px [4i, 4i+4)


def test_embedding_image_with_the_cpu_tiny_mae():
    from cryolib.models.vit import build_model

    model = build_model("cpu-tiny")
    emb = cl.embedding_image(model, np.random.default_rng(1).uniform(size=(128, 192)).astype(np.float32), 64)
    assert emb.shape == (32, 48, model.cfg.embed_dim) and np.isfinite(emb).all()
    assert cl.token_px_of(model, 64) == 4 and cl.token_px_of(StubEncoder(), 64) == 4


def test_embedding_image_rejects_a_micrograph_smaller_than_a_tile():
    with pytest.raises(CryolibError, match="smaller than one 64 px tile"):
        cl.embedding_image(StubEncoder(), np.zeros((40, 200), np.float32), 64)


def test_smoothing_window_rule_and_box_mean():
    assert cl.smoothing_window_tokens(40, 4) == 2 and cl.smoothing_window_tokens(64, 4) == 4
    emb = np.zeros((9, 9, 2), np.float32)
    emb[4, 4] = 4.0
    rows = np.arange(9)
    for window in (2, 3, 4):
        sm = cl.smooth_embedding(emb, window)
        assert sm.sum() == pytest.approx(emb.sum())
        assert (sm[..., 0].sum(1) * rows).sum() / sm[..., 0].sum() == pytest.approx(4.0)  # centred
    repo = cl.smooth_embedding(emb, 2, centred=False)  # the repository's window i - 1 ... i
    assert repo[4, 4, 0] == repo[5, 5, 0] == pytest.approx(1.0)
    assert (repo[..., 0].sum(1) * rows).sum() / repo[..., 0].sum() == pytest.approx(4.5)


def test_nearest_centres_matches_kmeans_predict():
    x = np.random.default_rng(2).normal(size=(500, 6)).astype(np.float32)
    km = cl.fit_global_kmeans([x], k=4, n_threads=1)
    np.testing.assert_array_equal(cl.NearestCentres(km.cluster_centers_).predict(x), km.predict(x))


# --------------------------------------------------------------------------- clustering
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


def test_standardize_embedding_removes_a_micrograph_wide_shift():
    emb = np.random.default_rng(4).normal(size=(20, 30, 5)).astype(np.float32)
    z = cl.standardize_embedding(emb)
    np.testing.assert_allclose(z.mean((0, 1)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std((0, 1)), 1, atol=1e-5)
    scale, shift = np.array([0.5, 2, 3, 1, 7]), np.array([-4, 0, 9, 1, 2])  # dose, ice, contrast per channel
    np.testing.assert_allclose(cl.standardize_embedding(emb * scale + shift), z, atol=1e-4)
    flat = np.ones((4, 4, 2), np.float32)
    assert np.isfinite(cl.standardize_embedding(flat)).all() and (cl.standardize_embedding(flat) == 0).all()


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


# --------------------------------------------------------------------------- post-processing
def test_postprocess_square_blobs_give_picks_at_their_centres():
    blobs = [(r, c, 6) for r in (15, 45, 75, 105) for c in (20, 60, 100)]
    mask = blob_mask((128, 128), blobs)
    picks = cl.postprocess(mask, diameter_px_working=24, token_px=TOKEN, particle_fraction=0.01)
    assert len(picks) == len(blobs) and list(picks.columns) == ["x", "y", "score", "area"]
    for b in blobs:
        x, y = blob_centre_px(*b)
        d = np.hypot(picks.x - x, picks.y - y)
        assert d.min() <= 1.0, (b, d.min())


def test_postprocess_neighbour_filter_keeps_the_larger_of_two_close_blobs():
    mask = blob_mask((128, 128), [(50, 50, 6), (50, 58, 3), (90, 90, 6)])  # 2-token gap between the first two
    picks = cl.postprocess(mask, diameter_px_working=60, token_px=TOKEN, particle_fraction=0.001)
    assert len(picks) == 2
    assert np.hypot(picks.x - blob_centre_px(50, 50, 6)[0], picks.y - blob_centre_px(50, 50, 6)[1]).min() <= 1.0
    tie = blob_mask((128, 128), [(50, 50, 4), (50, 56, 4), (90, 90, 6)])
    picks = cl.postprocess(tie, diameter_px_working=60, token_px=TOKEN, particle_fraction=0.001)
    assert len(picks) == 1  # equal areas: both removed, as in the repository


def test_postprocess_edge_filter_and_size_filter():
    mask = blob_mask((128, 128), [(1, 60, 6), (60, 60, 6), (90, 10, 30)])
    picks = cl.postprocess(mask, diameter_px_working=24, token_px=TOKEN, particle_fraction=0.001)
    x, y = blob_centre_px(60, 60, 6)
    assert len(picks) == 1 and np.hypot(picks.x[0] - x, picks.y[0] - y) <= 1.0  # edge blob and huge blob gone
    off = cl.postprocess(mask, diameter_px_working=24, token_px=TOKEN, particle_fraction=0.001, size_filter_factor=None)
    assert len(off) == 2  # huge blob (30x30 tokens) survives with the size filter off


def test_postprocess_scores_rank_a_particle_above_a_speck():
    mask = blob_mask((128, 128), [(40, 40, 6), (80, 80, 3)])
    picks = cl.postprocess(mask, diameter_px_working=24, token_px=TOKEN, particle_fraction=0.001)
    assert len(picks) == 2
    big = np.hypot(picks.x - blob_centre_px(40, 40, 6)[0], picks.y - blob_centre_px(40, 40, 6)[1]).argmin()
    assert picks.score[big] == picks.score.max() and 0 < picks.score.min() < picks.score.max() <= 1


def test_postprocess_empty_mask_gives_no_picks():
    picks = cl.postprocess(np.zeros((32, 32), bool), 24, TOKEN)
    assert len(picks) == 0 and list(picks.columns) == ["x", "y", "score", "area"]


def test_training_particle_fraction():
    coords = {"a": pd.DataFrame({"x": np.zeros(10), "y": np.zeros(10)}), "b": pd.DataFrame({"x": [], "y": []})}
    frac = cl.training_particle_fraction(coords, {"a": (100, 100), "b": (100, 100)}, diameter=10)
    assert frac == pytest.approx((10 * np.pi * 25 / 1e4 + 0) / 2)
    with pytest.raises(CryolibError, match="diameter"):
        cl.training_particle_fraction([coords["a"]], [(100, 100)])


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
    again = cl.CryoEMMAEPicker.from_state(StubEncoder(), state)
    assert again.reference_fraction == picker.reference_fraction
    pd.testing.assert_frame_equal(again.pick(mics[3][0], 24.0), picks)
    old = {**state, "config": {k: v for k, v in state["config"].items() if k != "standardize_tokens"}}
    assert cl.CryoEMMAEPicker.from_state(StubEncoder(), old).config.standardize_tokens is False  # predates it


def test_picker_particle_fraction_paper_default_or_measured_on_the_reference(fitted_picker):
    picker, mics = fitted_picker
    img, truth = mics[0]
    expected = len(truth) * np.pi * 24.0**2 / 4 / img.size
    assert picker.reference_fraction == pytest.approx(expected)
    assert picker.particle_fraction == 0.04  # the paper's value unless the config asks for the measured one
    measured = dataclasses.replace(picker, config=dataclasses.replace(picker.config, particle_fraction=None))
    assert measured.particle_fraction == pytest.approx(expected)
    with pytest.raises(CryolibError, match="no particle fraction"):
        _ = cl.CryoEMMAEPicker(StubEncoder(), config=cl.PickerConfig(particle_fraction=None)).particle_fraction


def test_picker_with_the_cpu_tiny_mae_runs_end_to_end():
    from cryolib.models.vit import build_model

    img, truth = synthetic_micrograph(7, size=192, n=8)
    config = cl.PickerConfig(target_diameter_px=24.0, global_kmeans_threads=1)
    picker = cl.CryoEMMAEPicker(build_model("cpu-tiny"), config=config)
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
        cl.CryoEMMAEPicker(StubEncoder()).pick(img, 24.0)
    with pytest.raises(CryolibError, match="lacks"):
        cl.CryoEMMAEPicker.from_state(StubEncoder(), {"config": {}})
    state = picker.state_dict()
    state["particle_cluster"] = 9
    with pytest.raises(CryolibError, match="not one of"):
        cl.CryoEMMAEPicker.from_state(StubEncoder(), state)
