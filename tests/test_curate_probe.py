"""cryolib.curate.probe / head / ship: the linear probe, Table 4 metrics, the head file and shipping it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cryolib.core.errors import CryolibError
from cryolib.curate import head as head_mod
from cryolib.curate import ship as ship_mod
from cryolib.curate.head import CurationHead, encoder_fingerprint, load_curation_head, load_encoder, save_curation_head
from cryolib.curate.probe import LinearProbe, class_balance_weights, classification_metrics, per_class_table
from test_curate_features import TINY, blob_micrographs


def make_tiny_checkpoint(out_dir, seed: int = 0):
    """A DRACO checkpoint of a 32 px / patch 8 model after one training step on Poisson triplets."""
    from cryolib.models.draco import draco_objective
    from cryolib.models.vit import get_config
    from cryolib.processing.triplets import TripletDataset
    from cryolib.training.loop import TrainConfig, train

    rng = np.random.default_rng(seed)
    odd = [rng.poisson(50.0, (64, 64)).astype(np.float32) for _ in range(2)]
    even = [rng.poisson(50.0, (64, 64)).astype(np.float32) for _ in range(2)]
    full = [o + e for o, e in zip(odd, even)]
    torch.manual_seed(seed)
    objective = draco_objective(get_config("draco-tiny", **TINY))
    train(objective, TripletDataset(full, odd, even, tile_px=32), TrainConfig(epochs=1, batch_size=4, out_dir=out_dir,
                                                                               device="cpu", max_steps=1, seed=seed))
    return out_dir / "checkpoint.pt"


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("draco"))


def _easy_set(n: int = 8, seed: int = 0):
    images = blob_micrographs(n, blobs=True, seed=seed) + blob_micrographs(n, blobs=False, seed=seed + 100)
    return images, np.array([1] * n + [0] * n)


def test_probe_separates_two_gaussian_clusters():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.0, 1.0, (100, 16)), rng.normal(0.0, 1.0, (100, 16)) + 1.5])
    y = np.array([0] * 100 + [1] * 100)
    probe = LinearProbe().fit(x[::2], y[::2])
    acc = (probe.predict(x[1::2]) == y[1::2].astype(bool)).mean()
    assert acc > 0.95
    # the same probe on shuffled labels cannot do it: the test can fail
    shuffled = LinearProbe().fit(x[::2], rng.permutation(y[::2]))
    assert (shuffled.predict(x[1::2]) == y[1::2].astype(bool)).mean() < 0.8


def test_image_statistics_probe_separates_empty_from_blobs():
    images, y = _easy_set(10)
    head = CurationHead("stats", LinearProbe(), {"kind": "image_statistics", "n_bands": 4})
    head.probe.fit(head.featurise(images), y)
    test_images, test_y = _easy_set(10, seed=7)
    assert ((head.scores(test_images) >= 0.5) == test_y.astype(bool)).mean() > 0.95


def _sandwich(n: int, seed: int):
    """One feature: good in [-1, 1], "blurred" below -2 and "textured" above 2 (good between two defects)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(-1, 1, n), rng.uniform(-4, -2, n), rng.uniform(2, 4, n)])
    noise = rng.normal(0.0, 1.0, (3 * n, 3))  # features that carry nothing
    return np.column_stack([x, noise]), np.array(["good"] * n + ["blurred"] * n + ["textured"] * n)


def test_class_head_accepts_good_between_two_defects_where_a_binary_head_cannot():
    x, names = _sandwich(60, 0)
    x_test, names_test = _sandwich(60, 1)
    truth = names_test == "good"
    binary = LinearProbe().fit(x, (names == "good").astype(int))
    by_class = LinearProbe().fit(x, names)
    assert by_class.classes == ("blurred", "good", "textured")
    assert (by_class.predict(x_test) == truth).mean() > 0.95
    assert (binary.predict(x_test) == truth).mean() < 0.8  # one hyperplane cannot bound good on both sides
    p = by_class.class_probabilities(x_test)
    assert p.shape == (180, 3) and np.allclose(p.sum(axis=1), 1.0)


def test_class_balance_weights_by_hand():
    w = class_balance_weights(["good"] * 4 + ["a"] * 2 + ["b"])  # N = 7: good 0.5·7/4, a 0.25·7/2, b 0.25·7/1
    assert w == pytest.approx([0.875] * 4 + [0.875] * 2 + [1.75]) and w.mean() == pytest.approx(1.0)
    binary = class_balance_weights([1, 1, 1, 0])  # scikit-learn's "balanced": N / (2 n_class)
    assert binary == pytest.approx([4 / 6] * 3 + [2.0])
    assert class_balance_weights(["", "empty"]) == pytest.approx([1.0, 1.0])  # "" is good


def test_binary_head_is_a_plain_logistic_regression_and_reads_the_older_state():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 5))
    y = (x[:, 0] + 0.3 * rng.normal(size=40) > 0).astype(int)
    probe = LinearProbe().fit(x, y)
    assert probe.classes == ("good", "reject") and not probe.weight[0].any()  # scikit-learn's row is P(reject)'s
    z = (x - probe.mean) / probe.std
    logit_accept = -(z @ probe.weight[1] + probe.bias[1])
    assert probe.scores(x) == pytest.approx(1 / (1 + np.exp(-logit_accept)))
    # the older state stored the accept logit's weights as one row
    old = {"c": 1.0, "mean": probe.mean, "std": probe.std, "weight": -probe.weight[1], "bias": -float(probe.bias[1])}
    assert np.array_equal(LinearProbe.from_state(old).scores(x), probe.scores(x))
    assert np.array_equal(LinearProbe.from_state(probe.state_dict()).scores(x), probe.scores(x))


def test_probe_bad_labels_and_states():
    with pytest.raises(CryolibError, match="1 \\(accept\\) or 0"):
        LinearProbe().fit(np.eye(3), [0, 1, 2])
    with pytest.raises(CryolibError, match="both accepted"):
        LinearProbe().fit(np.eye(3), ["empty", "thick_ice", "empty"])
    with pytest.raises(CryolibError, match="quality-class names"):
        LinearProbe().fit(np.eye(2), [None, "good"])
    state = LinearProbe().fit(np.eye(3), ["good", "empty", "carbon_only"]).state_dict()
    with pytest.raises(CryolibError, match="class names"):
        LinearProbe.from_state({**state, "classes": ["good", "empty"]})
    with pytest.raises(CryolibError, match="no 'good' class"):
        LinearProbe.from_state({**state, "classes": ["a", "b", "c"]})


def test_probe_bad_inputs():
    with pytest.raises(CryolibError, match="not trained"):
        LinearProbe().scores(np.zeros((2, 3)))
    with pytest.raises(CryolibError, match="both"):
        LinearProbe().fit(np.zeros((4, 3)), [1, 1, 1, 1])
    with pytest.raises(CryolibError, match="labels"):
        LinearProbe().fit(np.zeros((4, 3)), [1, 0, 1])
    probe = LinearProbe().fit(np.eye(4), [0, 1, 0, 1])
    with pytest.raises(CryolibError, match="dimensions"):
        probe.scores(np.zeros((1, 5)))
    with pytest.raises(CryolibError, match="positive"):
        LinearProbe(c=0.0)


def test_classification_metrics_by_hand():
    truth = [True, True, True, False, False, False, False, True]
    pred = [True, True, False, True, False, False, False, True]  # tp 3, fp 1, fn 1, tn 3
    m = classification_metrics(truth, pred)
    assert m == pytest.approx({"accuracy": 6 / 8, "precision": 3 / 4, "recall": 3 / 4, "f1": 3 / 4})
    assert classification_metrics([True, False], [False, False])["precision"] == 0.0


def test_per_class_table_counts_accepts_for_good_and_rejects_for_defects():
    table = per_class_table(["good", "good", "empty", "thick_ice", "", "empty"], [True, False, False, True, True, True])
    t = table.set_index("class")
    assert list(table["class"]) == ["good", "empty", "thick_ice"]
    assert t.loc["good", "n"] == 3 and t.loc["good", "correct"] == pytest.approx(2 / 3)
    assert t.loc["empty", "correct"] == 0.5 and t.loc["thick_ice", "correct"] == 0.0


def test_head_round_trip_gives_identical_scores(tiny_ckpt, tmp_path):
    images, y = _easy_set(4)
    model, _ = load_encoder(tiny_ckpt)
    head = CurationHead("tiny", LinearProbe(), {"kind": "encoder", "max_tiles": 4}, encoder=str(tiny_ckpt),
                        encoder_sha256=encoder_fingerprint(model), threshold=0.4, card={"trained_on": "blobs"})
    head.probe.fit(head.featurise(images), y)
    path = save_curation_head(tmp_path / "head.pt", head)
    back = load_curation_head(path)
    assert back.name == "tiny" and back.threshold == 0.4 and back.card == {"trained_on": "blobs"}
    assert np.array_equal(back.scores(images), head.scores(images))
    assert path.stat().st_size < 100_000  # the probe only, no encoder weights


def test_head_on_encoder_and_statistics_round_trips_with_class_labels(tiny_ckpt, tmp_path):
    images, y = _easy_set(4)
    names = ["good" if v else ("empty" if i % 2 else "carbon_only") for i, v in enumerate(y)]
    model, _ = load_encoder(tiny_ckpt)
    head = CurationHead("tiny+stats", LinearProbe(), {"kind": "encoder+image_statistics", "max_tiles": 4,
                                                      "n_bands": 4}, encoder=str(tiny_ckpt),
                        encoder_sha256=encoder_fingerprint(model))
    features = head.featurise(images)
    assert features.shape == (8, model.cfg.embed_dim + 2 + 4)  # embedding, then the statistics
    head.probe.fit(features, names)
    back = load_curation_head(save_curation_head(tmp_path / "head.pt", head))
    assert back.probe.classes == ("carbon_only", "empty", "good")
    assert np.array_equal(back.scores(images), head.scores(images))
    with pytest.raises(CryolibError, match="needs its encoder"):
        CurationHead("x", LinearProbe(), {"kind": "encoder+image_statistics"})


def test_out_of_range_names_the_statistic_far_from_the_training_micrographs(tiny_ckpt):
    images, y = _easy_set(8)
    head = CurationHead("stats", LinearProbe(), {"kind": "image_statistics", "n_bands": 4}).fit(images, y)
    rng = head.features["range"]  # the training statistics' mean and std, by hand
    stats = head.absolute_features(images)
    assert rng["mean"] == pytest.approx(stats.mean(axis=0).tolist()) and rng["std"] == pytest.approx(stats.std(axis=0).tolist())
    same_dose, _ = _easy_set(4, seed=11)
    assert head.out_of_range(head.absolute_features(same_dose)) == [""] * 8
    low_dose = [np.random.default_rng(5).poisson(1.0, (64, 64)).astype(np.float32)]  # 1 e/px: 100x below training
    flag = head.out_of_range(head.absolute_features(low_dose))[0]
    assert flag.startswith("log10_mean_counts z=-")
    expected = (np.log10(low_dose[0].mean()) - rng["mean"][0]) / rng["std"][0]  # the statistic's own z
    assert float(flag.split("z=")[1]) == pytest.approx(expected, abs=0.051)  # printed to 0.1
    assert head.out_of_range(head.absolute_features(low_dose), z_max=1e9) == [""]
    legacy = CurationHead("old", head.probe, {"kind": "image_statistics", "n_bands": 4})  # no stored range
    assert legacy.out_of_range(head.absolute_features(low_dose))[0] == flag  # the probe's standardisation: the same
    encoder_only = CurationHead("enc", LinearProbe(), {"kind": "encoder"}, encoder=str(tiny_ckpt))
    assert encoder_only.out_of_range(np.zeros((3, 5))) == [""] * 3  # no statistics, no check


def test_a_session_relative_head_scores_a_session_at_another_dose_as_at_its_own():
    images, y = _easy_set(8)
    relative = CurationHead("rel", LinearProbe(), {"kind": "image_statistics", "n_bands": 4, "session_relative": True})
    absolute = CurationHead("abs", LinearProbe(), {"kind": "image_statistics", "n_bands": 4})
    for head in (relative, absolute):
        head.fit(images, y)
    raw = relative.absolute_features(images)
    assert np.array_equal(absolute.session_features(raw), raw)  # no flag: nothing changes
    moved = relative.session_features(raw, ["s"] * 8 + ["t"] * 8)
    assert np.median(moved[:8, 0]) == 0.0 and np.median(moved[8:, 0]) == 0.0 and np.array_equal(moved[:, 1:], raw[:, 1:])
    brighter = blob_micrographs(4, blobs=True, seed=9, dose=400.0) + blob_micrographs(4, blobs=False, seed=19,
                                                                                       dose=400.0)  # 4x the dose
    truth = np.array([True] * 4 + [False] * 4)
    assert ((relative.scores(brighter) >= 0.5) == truth).mean() > 0.95
    assert relative.out_of_range(relative.absolute_features(brighter)) == [""] * 8
    assert all(flag.startswith("log10_mean_counts") for flag in absolute.out_of_range(absolute.absolute_features(brighter)))


def test_an_all_relative_head_centres_every_feature_but_keeps_an_absolute_range():
    images, y = _easy_set(8)
    sessions = ["s"] * 4 + ["t"] * 4 + ["s"] * 4 + ["t"] * 4  # each session half good, half bad
    head = CurationHead("all", LinearProbe(), {"kind": "image_statistics", "n_bands": 4, "session_relative": "all"})
    head.fit(images, y, sessions)
    raw = head.absolute_features(images)
    centred = head.session_features(raw, sessions)
    for s in ("s", "t"):  # every column minus its session median
        rows = np.array(sessions) == s
        assert np.allclose(centred[rows], raw[rows] - np.median(raw[rows], axis=0))
    assert ((head.scores(images, sessions) >= 0.5) == y.astype(bool)).mean() > 0.95
    # a session of alike, normalised (not counts) images looks ordinary relative to itself, but the range sees it
    normalised = [(im - im.mean()) / im.std() for im in images[:4] + images[8:12]]
    flags = head.out_of_range(head.absolute_features(normalised))
    assert all(flags), flags
    unranged = CurationHead("x", head.probe, {"kind": "image_statistics", "n_bands": 4, "session_relative": "all"})
    with pytest.raises(CryolibError, match="no training range"):
        unranged.out_of_range(raw)
    with pytest.raises(CryolibError, match="session_relative"):
        CurationHead("x", LinearProbe(), {"kind": "image_statistics", "session_relative": "some"})


def test_a_head_with_particle_coverage_takes_it_as_its_last_feature(tmp_path):
    images, y = _easy_set(8)
    coverage = np.where(y == 1, -1.5, -3.0) + np.random.default_rng(0).normal(0, 0.1, len(y))
    sessions = ["s"] * 4 + ["t"] * 4 + ["s"] * 4 + ["t"] * 4
    head = CurationHead("cov", LinearProbe(), {"kind": "image_statistics", "n_bands": 4, "session_relative": "all",
                                               "particles": {"picker": "detector", "min_score": 0.7}})
    assert head.needs_coverage
    with pytest.raises(CryolibError, match="--diameter-px"):
        head.absolute_features(images)
    with pytest.raises(CryolibError, match="one finite particle coverage"):
        head.absolute_features(images, coverage[:3])
    raw = head.absolute_features(images, coverage)
    assert raw.shape == (16, 2 + 4 + 1) and np.array_equal(raw[:, -1], coverage)  # statistics, then the coverage
    head.fit(images, y, sessions, coverage=coverage)
    assert len(head.features["range"]["mean"]) == 2 + 4  # the training range covers the statistics only
    # an empty session (no particle anywhere) is no image-statistics outlier
    assert head.out_of_range(head.absolute_features(images, np.full(16, -4.0)), sessions) == [""] * 16
    back = load_curation_head(save_curation_head(tmp_path / "cov.pt", head))
    assert back.needs_coverage and np.array_equal(back.scores(images, sessions, coverage),
                                                  head.scores(images, sessions, coverage))


def test_head_checks_its_encoder_fingerprint(tiny_ckpt, tmp_path):
    other = make_tiny_checkpoint(tmp_path / "other", seed=1)
    head = CurationHead("tiny", LinearProbe().fit(np.eye(32)[:4], [0, 1, 0, 1]), {"kind": "encoder"},
                        encoder=str(other), encoder_sha256=encoder_fingerprint(load_encoder(tiny_ckpt)[0]))
    with pytest.raises(CryolibError, match="fingerprint"):
        head.scores(blob_micrographs(1))


def test_load_curation_head_bad_files(tmp_path, monkeypatch):
    with pytest.raises(CryolibError, match="not found"):
        load_curation_head(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(CryolibError, match="could not be read"):
        load_curation_head(corrupt)
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CryolibError, match="not a curation head"):
        load_curation_head(tmp_path / "other.pt")
    monkeypatch.setattr(head_mod, "DEFAULT_HEAD", tmp_path / "absent" / "draco_curation.pt")
    with pytest.raises(CryolibError, match="shipped curation head"):
        load_curation_head(None)


def test_asset_encoder_reference_needs_the_shipped_model(tmp_path, monkeypatch):
    monkeypatch.setattr(head_mod, "ASSETS_DIR", tmp_path)
    with pytest.raises(CryolibError, match="does not exist yet"):
        head_mod.resolve_encoder("asset:draco_default.pt")


def test_ship_installs_head_and_card_for_the_shipped_encoder(tiny_ckpt, tmp_path, monkeypatch):
    assets = tmp_path / "assets"
    monkeypatch.setattr(head_mod, "ASSETS_DIR", assets)
    monkeypatch.setattr(ship_mod, "ASSETS_DIR", assets)
    images, y = _easy_set(4)
    model, _ = load_encoder(tiny_ckpt)
    head = CurationHead("draco-curation", LinearProbe(), {"kind": "encoder", "max_tiles": 4}, encoder=str(tiny_ckpt),
                        encoder_sha256=encoder_fingerprint(model))
    head.probe.fit(head.featurise(images), y)
    evaluation = pd.DataFrame([{"method": "DRACO-B", "f1": 1.0}])
    with pytest.raises(CryolibError, match="does not exist yet"):  # no shipped DRACO model yet: nothing written
        ship_mod.ship_curation_head(head, evaluation, tmp_path / "out", install=True)
    assert not (tmp_path / "out").exists()
    pt = ship_mod.ship_curation_head(head, evaluation, tmp_path / "out")  # not installed: references the run
    assert load_curation_head(pt).encoder == str(tiny_ckpt) and pt.with_suffix(".md").is_file()
    assets.mkdir()
    (assets / "draco_default.pt").write_bytes(tiny_ckpt.read_bytes())
    ship_mod.ship_curation_head(head, evaluation, tmp_path / "out", install=True, card={"run": "test"})
    installed = load_curation_head(assets / "draco_curation.pt")
    assert installed.encoder == "asset:draco_default.pt" and installed.card == {"run": "test"}
    assert np.array_equal(installed.scores(images), head.scores(images))
    assert "DRACO-B" in (assets / "draco_curation.md").read_text()
    assert "--diameter-px" not in (assets / "draco_curation.md").read_text()  # this head counts no particles
    counting = CurationHead("counts", LinearProbe(), {"kind": "encoder", "max_tiles": 4,
                                                      "particles": {"picker": "detector", "min_score": 0.7}},
                            encoder=str(tiny_ckpt), encoder_sha256=encoder_fingerprint(model))
    counting.fit(images, y, coverage=np.where(y == 1, -2.0, -4.0))
    card = ship_mod.ship_curation_head(counting, evaluation, tmp_path / "counting").with_suffix(".md").read_text()
    assert "`--diameter-px`" in card  # the card tells its user what cryolib curate then needs
