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
from cryolib.curate.probe import LinearProbe, classification_metrics, per_class_table
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


def test_probe_bad_inputs():
    with pytest.raises(CryolibError, match="not trained"):
        LinearProbe().scores(np.zeros((2, 3)))
    with pytest.raises(CryolibError, match="both"):
        LinearProbe().fit(np.zeros((4, 3)), [1, 1, 1, 1])
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
