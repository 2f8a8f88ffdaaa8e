"""cryolib.studies.draco_curation and curation_set: the curation set (balanced, resumable), Table 4 with the
paper beside ours, the claims, the headline metrics, and curation_metrics on a tiny encoder."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryolib.core.errors import CryolibError
from cryolib.curate.features import COVERAGE_FLOOR, N_BANDS
from cryolib.curate.probe import QUALITY_CLASSES, per_class_table
from cryolib.studies import draco_curation as dc
from test_curate_features import blob_micrographs
from test_curate_probe import make_tiny_checkpoint

TINY_SIZES = dc.CurationSizes(micrograph_px=64, n_frames=2, n_good=1, n_per_defect=1, n_train_analogs=1,
                              n_test_analogs=1, resnet_px=32, resnet_epochs=1, max_tiles=4)


def test_class_plan_is_balanced_and_covers_every_defect():
    plan = dc.class_plan(3, 2)
    assert plan[:3] == ["good"] * 3 and len(plan) == 3 + 2 * 6
    assert {c: plan.count(c) for c in dc.DEFECT_CLASSES} == {c: 2 for c in dc.DEFECT_CLASSES}


def test_profiles_have_sizes_and_held_out_analogs_are_disjoint():
    assert set(dc.CURATION_SIZES) == {"smoke", "default", "full"}
    assert not set(dc.TRAIN_ANALOGS) & set(dc.TEST_ANALOGS)
    default = dc.curation_sizes("default")
    n = (default.n_good + 6 * default.n_per_defect) * (default.n_train_analogs + default.n_test_analogs)
    assert 100 <= n <= 200 and default.micrograph_px == 1024  # 30–100 particles each, ~2 min to simulate on 2 cores
    with pytest.raises(CryolibError, match="unknown profile"):
        dc.curation_sizes("huge")


def build_tiny_set(root) -> dc.CurationData:
    """One training and one held-out analog under ``root``, 7 micrographs each (1 good + 1 per defect) of 64 px."""
    parts = [dc.analog_rows(name, dc.build_curation_analog(name, root / name, TINY_SIZES, seed=0), split)
             for split, name in (("train", dc.TRAIN_ANALOGS[0]), ("test", dc.TEST_ANALOGS[0]))]
    return dc.CurationData(pd.concat(parts, ignore_index=True), TINY_SIZES)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("curation")
    return root, build_tiny_set(root)


def test_curation_analog_has_the_planned_labels_and_resumes(tiny_set):
    root, data = tiny_set
    name = dc.TRAIN_ANALOGS[0]
    rows = data.table[data.table["analog"] == name]
    assert list(rows["quality"]) == ["good"] + ["bad"] * 6
    assert data.classes("train") == ["good", *dc.DEFECT_CLASSES]
    mrc = root / name / "micrographs" / f"{name}_cur000.mrc"
    before = mrc.stat().st_mtime_ns
    again = dc.build_curation_analog(name, root / name, TINY_SIZES, seed=0)  # resumed: nothing redone
    assert mrc.stat().st_mtime_ns == before and len(again.micrographs) == 7
    assert list(data.accept("train")) == [1, 0, 0, 0, 0, 0, 0]


def test_a_folder_that_is_not_a_curation_set_is_refused(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "dataset.yaml").write_text("name: sim-10291\nseed: 0\n")
    with pytest.raises(CryolibError, match="not a curation set"):
        dc.build_curation_analog("sim-10291", tmp_path / "x", TINY_SIZES)


def test_curation_metrics_on_a_tiny_encoder(tiny_set, tmp_path):
    _, data = tiny_set
    ckpt = make_tiny_checkpoint(tmp_path / "run")
    m = dc.curation_metrics(ckpt, data, seed=0)
    assert set(m) >= {"accuracy", "precision", "recall", "f1", "per_class"}
    assert all(0.0 <= m[k] <= 1.0 for k in ("accuracy", "precision", "recall", "f1"))
    assert list(m["per_class"]["class"]) == ["good", *dc.DEFECT_CLASSES]
    assert dc.curation_metrics(ckpt, data, seed=0)["accuracy"] == m["accuracy"]  # deterministic


def _results(f1_by_method: dict[str, float]) -> dict:
    """Fake run_methods results with the given F1 (accuracy, precision, recall equal to it)."""
    classes = ["good", "good", "empty", "thick_ice"]
    return {m: {"accuracy": f, "precision": f, "recall": f, "f1": f,
                "per_class": per_class_table(classes, [True, False, False, True])} for m, f in f1_by_method.items()}


def test_table4_puts_the_paper_beside_ours_and_reports_miffi():
    t4 = dc.table4(_results({"DRACO-B": 0.97, "DRACO-L": 0.98, dc.ENCODER_METHODS["mae"]: 0.9, dc.RESNET: 0.8,
                             dc.STATS: 0.7}))
    assert list(t4.columns) == ["method", "source", "accuracy", "precision", "recall", "f1", "paper_accuracy",
                                "paper_precision", "paper_recall", "paper_f1"]
    row = t4.set_index("method")
    assert row.loc["DRACO-L", "paper_f1"] == 0.984 and row.loc[dc.RESNET, "paper_recall"] == 0.960
    assert math.isnan(row.loc[dc.MIFFI, "f1"]) and row.loc[dc.MIFFI, "paper_f1"] == 0.871
    assert math.isnan(row.loc[dc.STATS, "paper_f1"])  # not in the paper


def test_claims_follow_the_numbers():
    good = dc.claims_table(dc.table4(_results({"DRACO-B": 0.96, "DRACO-L": 0.98, dc.ENCODER_METHODS["mae"]: 0.9,
                                               dc.DRACO_STATS: 0.97, dc.DRACO_PARTICLES: 0.99, dc.RESNET: 0.8,
                                               dc.STATS: 0.7})))
    assert list(good["supported"]) == ["yes"] * 9 + ["not testable"]
    bad = dc.claims_table(dc.table4(_results({"DRACO-B": 0.6, "DRACO-L": 0.5, dc.ENCODER_METHODS["mae"]: 0.9,
                                              dc.DRACO_STATS: 0.6, dc.DRACO_PARTICLES: 0.6, dc.RESNET: 0.8,
                                              dc.STATS: 0.7})))
    assert list(bad["supported"]) == ["no"] * 9 + ["not testable"]
    # the combined heads are DRACO's own: they never count as peers DRACO has to beat
    ours = dc.claims_table(dc.table4(_results({"DRACO-B": 0.96, "DRACO-L": 0.98, dc.ENCODER_METHODS["mae"]: 0.9,
                                               dc.DRACO_STATS: 0.99, dc.DRACO_PARTICLES: 1.0, dc.RESNET: 0.8,
                                               dc.STATS: 0.7})))
    assert ours["supported"].iloc[0] == "yes"
    without = dc.claims_table(dc.table4(_results({"DRACO-B": 0.96, "DRACO-L": 0.98, dc.ENCODER_METHODS["mae"]: 0.9,
                                                  dc.RESNET: 0.8, dc.STATS: 0.7})))
    assert list(without["supported"]) == ["yes"] * 6 + ["not testable"] * 4
    with pytest.raises(CryolibError, match="no DRACO row"):
        dc.claims_table(dc.table4(_results({dc.RESNET: 0.8})))


def test_headline_metrics_and_per_class_results(tiny_set):
    _, data = tiny_set
    res = _results({"DRACO-B": 0.96, "DRACO-L": 0.98, dc.ENCODER_METHODS["mae"]: 0.9, dc.RESNET: 0.8, dc.STATS: 0.7})
    t4 = dc.table4(res)
    per_class = dc.per_class_results(res)
    assert list(per_class.columns) == ["method", "class", "n", "accepted", "rejected", "correct"]
    m = dc.headline_metrics(t4, dc.claims_table(t4), per_class, data)
    assert m["best_draco"] == "DRACO-L" and m["best_draco_f1"] == 0.98 and m["draco_beats_resnet"] is True
    assert m["n_train"] == 7 and m["n_test"] == 7 and m["claims_supported"] == m["claims_tested"] == 6
    assert set(m["f1"]) == {"DRACO-B", "DRACO-L", dc.ENCODER_METHODS["mae"], dc.RESNET, dc.STATS}
    assert m["per_class_correct"]["DRACO-B"]["good"] == 0.5


def test_the_shipped_head_sees_the_embedding_the_statistics_and_the_particles(tiny_set, tmp_path):
    _, data = tiny_set
    ckpt = make_tiny_checkpoint(tmp_path / "run")
    head = dc.encoder_head(ckpt, data, seed=0, with_statistics=True, with_particles=True)
    assert head.features["kind"] == "encoder+image_statistics" and head.features["session_relative"] == "all"
    assert head.needs_coverage and head.features["particles"]["picker"] == "detector"
    assert len(head.features["range"]["mean"]) == len(head.features["range"]["std"]) == 2 + N_BANDS
    assert data.sessions("test") == [dc.TEST_ANALOGS[0]] * 7
    assert data.coverage("test").shape == (7,) and np.isfinite(data.coverage("test")).all()
    strict = data.coverage("test", {**head.features["particles"], "min_score": 1.0})  # the head's spec decides
    assert np.all(strict == np.log10(COVERAGE_FLOOR))  # no pick scores above 1: nothing counted
    assert head.probe.classes == tuple(sorted(QUALITY_CLASSES))  # trained on the quality classes
    scores = dc.split_scores(head, data)
    assert scores.shape == (7,) and np.all((scores >= 0) & (scores <= 1))
    results = {dc.DRACO_PARTICLES: {"head": head, "scores": scores, **dc.evaluate_scores(scores, data)}}
    shipped, evaluation, per_class = dc.shipping_head(data, results)
    assert shipped.name == "draco-curation" and shipped.features == head.features
    assert evaluation["f1"].iloc[0] == results[dc.DRACO_PARTICLES]["f1"] and len(per_class) == 7


def test_missing_encoders_raise_a_clear_error(tmp_path):
    with pytest.raises(CryolibError, match="notebook 04"):
        dc.curation_encoders("smoke", tmp_path)
    with pytest.raises(CryolibError, match="unknown encoder"):
        dc.run_methods(dc.CurationData(pd.DataFrame(), TINY_SIZES), {"draco-xl": tmp_path / "x.pt"})


def test_class_examples_one_per_class(tiny_set):
    _, data = tiny_set
    ex = dc.class_examples(data)
    assert list(ex) == ["good", *dc.DEFECT_CLASSES] and all(isinstance(v, np.ndarray) and v.shape == (64, 64) for v in ex.values())


def test_table4_tick_labels_stay_distinct():
    from cryolib.studies.plots_curation import short_method_names, table4_figure

    methods = ["DRACO-B", dc.ENCODER_METHODS["mae"], dc.DRACO_STATS, dc.DRACO_PARTICLES, dc.STATS, dc.RESNET,
               dc.RESNET_CLASSES]
    assert short_method_names(methods) == ["DRACO-B", "MAE", "DRACO-B + image statistics",
                                           "DRACO-B + image statistics + particle coverage", "Image statistics",
                                           "ResNet18, from scratch", "ResNet18, quality classes"]
    fig = table4_figure(dc.table4(_results({m: 0.8 for m in methods})))
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert len(labels) == len(set(labels)) == len(methods) + 1  # Miffi's reported row too


def test_unseen_settings_results_score_every_method_per_session(tiny_set):
    _, data = tiny_set
    head = dc.stats_head(data)
    accept_all = type("AcceptAll", (), {"scores": lambda self, images: np.ones(len(images))})()
    table = dc.unseen_settings_results({dc.STATS: {"head": head}, "everything": {"model": accept_all}}, data)
    assert list(table["method"]) == [dc.STATS, "everything"]
    row = table.set_index("method").loc["everything"]
    assert row["micrographs"] == 7 and row["good"] == 1 and row["bad"] == 6
    assert row["good_accepted"] == 1.0 and row["bad_rejected"] == 0.0 and row["precision"] == pytest.approx(1 / 7)
    expected = dc.evaluate_scores(head.scores(data.images("test"), data.sessions("test")), data)
    assert table.set_index("method").loc[dc.STATS, "f1"] == expected["f1"]


def test_the_coverage_counter_counts_the_detectors_confident_picks():
    from cryolib.studies import curation_particles as cp

    image = blob_micrographs(1, blobs=True, seed=4)[0]
    coverage = cp.coverage_counter(8.0)(image)
    assert np.log10(COVERAGE_FLOOR) <= coverage <= 0.0
    strict = cp.counter_for(cp.particles_spec(min_score=1.0), 8.0)(image)  # no pick scores above 1
    assert strict == np.log10(COVERAGE_FLOOR) and strict <= coverage
    with pytest.raises(CryolibError, match="diameter"):
        cp.coverage_counter(0.0)
    with pytest.raises(CryolibError, match="min_score"):
        cp.particles_spec(min_score=1.5)
    with pytest.raises(CryolibError, match="picker"):
        cp.counter_for({"picker": "crystal-ball"}, 8.0)
