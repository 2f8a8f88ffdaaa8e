"""Notebook 03's study functions on a tiny simulated analog (cryolib.studies.cryoemmae_*).

One 192 px analog (3 micrographs: 2 train, 1 test; tests/conftest.py) plays the training, the
evaluation and the generalisation analog; one short smoke-profile MAE. These check the rules of
the study (which micrograph is the reference, which threshold is applied, what is scored), not
picking quality.
"""

from __future__ import annotations

import dataclasses
import math
import shutil

import pandas as pd
import pytest

from cryolib.core.errors import CryolibError
from cryolib.evaluate.scoring import good_micrographs, score_picks
from cryolib.io.micrographs import read_micrograph
from cryolib.pick import get_picker, pick_micrographs
from cryolib.pick.cryoemmae import load_picker, pretrain_mae
from cryolib.core.model_card import picker_card
from cryolib.studies import cryoemmae_generalisation as gs
from cryolib.studies import cryoemmae_picking as cp
from cryolib.studies import mae_pretraining as mp

NAME = "sim-10291"


@pytest.fixture(scope="module")
def ds(tiny_sim_10291):
    return tiny_sim_10291


@pytest.fixture(scope="module")
def study(ds, tmp_path_factory):
    """A study over the tiny analog with its MAE (also standing in for the joint ``all4`` model)."""
    runs = tmp_path_factory.mktemp("runs")
    pretrain_mae(ds.split("train"), ds.diameter_px, runs / f"mae_{NAME}", profile="smoke", seed=0, progress=False)
    shutil.copytree(runs / f"mae_{NAME}", runs / "mae_all4")
    return cp.study_from_datasets({NAME: ds}, [NAME], [NAME], [NAME], "smoke", 0, runs)


@pytest.fixture(scope="module")
def pickers(study):
    return cp.fit_pickers(study)


def test_reference_is_the_first_good_training_micrograph(ds):
    train = ds.split("train")
    path, coords = cp.reference_micrograph(ds)
    assert path == good_micrographs(ds, train)[0] and len(coords) == len(ds.coordinates(path.stem)) > 0
    meta = ds.metadata.copy()
    meta.loc[meta["micrograph"] == train[0].stem, "quality"] = "bad"
    assert cp.reference_micrograph(dataclasses.replace(ds, metadata=meta))[0] == train[1]
    meta["quality"] = "bad"
    with pytest.raises(CryolibError, match="no good micrograph in its training split"):
        cp.reference_micrograph(dataclasses.replace(ds, metadata=meta))


def test_study_scores_the_test_split_not_the_reference(study, ds):
    ref = cp.reference_micrograph(ds)[0]
    assert study.scored[NAME] == ds.split("test")[:1] and ref not in study.scored[NAME]
    assert cp.scored_summary(study)["scored_micrographs"].tolist() == [1]
    with pytest.raises(CryolibError, match="not open"):
        cp.study_from_datasets({NAME: ds}, [NAME], ["sim-10077"], [], "smoke", 0, study.runs)


def test_fig2_applies_the_reference_calibrated_threshold(study, pickers, ds):
    fig2 = cp.cross_dataset_table(study, pickers, methods=(cp.EMMAE, cp.BLOB))
    assert fig2["method"].tolist() == [cp.EMMAE, cp.BLOB]
    blob = fig2[fig2["method"] == cp.BLOB].iloc[0]
    expected = get_picker("blob").calibrate(cp.reference_micrograph(ds), ds.diameter_px)
    assert blob["threshold"] == pytest.approx(expected) and blob["trained_on"] == NAME and blob["in_domain"]
    everything = pick_micrographs("blob", study.scored[NAME], ds.diameter_px, threshold=-math.inf, progress=False)
    n_kept = sum(int((df["score"] >= expected).sum()) for df in everything.values())
    assert blob["tp"] + blob["fp"] == n_kept  # the calibrated threshold, not the default, cut the picks
    assert blob["f1"] == pytest.approx(score_picks(ds, everything, study.scored[NAME], "overlap60", expected)["f1"])
    emmae = fig2[fig2["method"] == cp.EMMAE].iloc[0]
    own = pickers[NAME].pick(read_micrograph(study.scored[NAME][0])[0], ds.diameter_px)
    assert math.isnan(emmae["threshold"]) and emmae["tp"] + emmae["fp"] == len(own)  # every Cryo-EMMAE pick
    with pytest.raises(CryolibError, match="topaz_models"):
        cp.cross_dataset_table(study, pickers, methods=(cp.TOPAZ_SCRATCH,))


def test_generalisation_check_calibrates_on_an_unscored_reference(study, pickers, ds):
    gen = gs.generalisation_check(study, pickers[NAME])
    (ref_path, _), rest = gs.generalisation_reference(ds)
    good = good_micrographs(ds, list(ds.micrographs))
    assert ref_path == good[0] and ref_path not in rest and len(rest) == len(good) - 1
    assert gen["method"].tolist() == list(gs.GEN_METHODS) and len(gen) == len(gs.GEN_METHODS)
    assert (gen["reference"] == ref_path.stem).all() and (gen["micrographs"] == len(rest)).all()
    blob = gen.set_index("method").loc[gs.GEN_BLOB]
    thr = cp.calibrated_threshold("blob", gs.generalisation_reference(ds)[0], ds.diameter_px)
    picks = pick_micrographs("blob", rest, ds.diameter_px, threshold=-math.inf, progress=False)
    assert blob["threshold"] == pytest.approx(thr)
    assert blob["f1"] == pytest.approx(score_picks(ds, picks, rest, "overlap60", thr)["f1"])
    assert gen["f1"].between(0, 1).all()


def test_ablation_covers_every_setting_and_dataset(study, pickers):
    ablation = gs.picker_ablation(study, {"a": pickers[NAME], "b": pickers[NAME]})
    assert len(ablation) == 2 and set(ablation["setting"]) == {"a", "b"}  # the analog plays eval and gen: once
    table = gs.ablation_f1(ablation)
    assert table.loc["mean", "a"] == pytest.approx(ablation.loc[ablation["setting"] == "a", "f1"].mean())


def test_fig1_picks_the_median_f1_micrograph(study, pickers):
    example = cp.fig1_example(study, pickers)
    assert example["path"] in study.scored[NAME] and len(example["f1_table"]) == len(study.scored[NAME])
    assert len(example["stages"]["sequential_masks"]) == 4 and example["image"].shape == (192, 192)


def test_median_f1_rule():
    table = pd.DataFrame({"micrograph": ["a", "b", "c", "d"], "f1": [0.9, 0.1, 0.5, 0.3]})
    assert cp.median_f1_micrograph(table) == "d"  # 0.1 b, 0.3 d | 0.5 c, 0.9 a: the lower middle
    assert cp.median_f1_micrograph(table.iloc[:3]) == "c"  # 0.1, 0.5, 0.9
    assert cp.median_f1_micrograph(pd.DataFrame({"micrograph": ["z", "y", "x"], "f1": [0.5] * 3})) == "y"
    with pytest.raises(CryolibError):
        cp.median_f1_micrograph(pd.DataFrame({"micrograph": [], "f1": []}))


def _gen_table(emmae: float, blob: float, topaz: float) -> pd.DataFrame:
    rows = []
    for dataset, shift in (("g1", 0.0), ("g2", 0.2)):
        for m, f1 in ((gs.GEN_EMMAE_REF, emmae), (gs.GEN_EMMAE_DEFAULT, 0.0), (gs.GEN_BLOB, blob), (gs.GEN_TOPAZ, topaz)):
            rows.append({"dataset": dataset, "method": m, "f1": f1 + shift})
    return pd.DataFrame(rows)


def test_headline_metrics_by_hand():
    fig2 = pd.DataFrame({"method": [cp.EMMAE, cp.EMMAE, cp.BLOB], "f1": [0.2, 0.6, 0.5], "precision": [1.0, 0.0, 0.5],
                         "recall": [0.1, 0.3, 0.5], "iou": [0.7, 0.9, 0.8]})
    ablation = pd.DataFrame({"setting": ["paper", "paper", "ours"], "f1": [0.0, 0.5, 0.4]})
    length = pd.DataFrame({"schedule": ["profile", "25x longer"], "f1_calibrated": [0.1, 0.3]})
    m = cp.headline_metrics(fig2, _gen_table(0.5, 0.4, 0.45), ablation, length, "overlap60")
    assert m["mean_f1"] == pytest.approx({cp.EMMAE: 0.4, cp.BLOB: 0.5})
    assert m["mean_precision"][cp.EMMAE] == pytest.approx(0.5) and m["mean_iou"][cp.EMMAE] == pytest.approx(0.8)
    assert m["generalisation_f1"][gs.GEN_EMMAE_REF] == pytest.approx(0.6)  # (0.5 + 0.7) / 2
    assert m["picker_ablation_mean_f1"] == pytest.approx({"paper": 0.25, "ours": 0.4})
    assert m["topaz_training_length_f1"] == {"profile": 0.1, "25x longer": 0.3}
    assert m["shipped_beats_blob_and_topaz"] is True
    assert cp.headline_metrics(fig2, _gen_table(0.44, 0.4, 0.45), ablation, length, "x")["shipped_beats_blob_and_topaz"] is False
    with pytest.raises(CryolibError, match="lacks methods"):
        cp.headline_metrics(fig2, _gen_table(0.5, 0.4, 0.4).query("method != @gs.GEN_TOPAZ"), ablation, length, "x")


def test_long_topaz_schedule_is_25x_the_crops():
    assert gs.long_schedule(2, 20, 64) == (10, 50, 128)
    assert gs.long_schedule(1, 1, 1, (0.1, 1, 1)) == (1, 1, 1)


def test_ship_checkpoint_writes_picker_and_card_and_installs(pickers, tmp_path):
    gen = _gen_table(0.512, 0.25, 0.125).assign(precision=0.5, recall=0.5)
    with pytest.raises(CryolibError, match="generalisation table"):
        gs.ship_checkpoint(pickers[NAME], gen.iloc[:0], tmp_path / "out")
    assets = tmp_path / "assets"
    pt = gs.ship_checkpoint(pickers[NAME], gen, tmp_path / "out", extra_card={"train_sets": [NAME]}, install=False,
                            assets_dir=assets)
    assert pt.is_file() and pt.with_suffix(".md").is_file() and not assets.exists()
    card = pt.with_suffix(".md").read_text()
    assert "0.512" in card and gs.GEN_BLOB in card and NAME in card
    assert picker_card(pt)["card"]["train_sets"] == [NAME]
    pt = gs.ship_checkpoint(pickers[NAME], gen, tmp_path / "out2", install=True, assets_dir=assets)
    for suffix in (".pt", ".md"):
        installed = assets / f"{gs.SHIPPED_NAME}{suffix}"
        assert installed.read_bytes() == pt.with_suffix(suffix).read_bytes()
    assert sorted(p.name for p in assets.iterdir()) == [f"{gs.SHIPPED_NAME}.md", f"{gs.SHIPPED_NAME}.pt"]
    assert load_picker(assets / f"{gs.SHIPPED_NAME}.pt").particle_cluster == pickers[NAME].particle_cluster


def test_mae_run_summary(study):
    ckpt = study.runs / f"mae_{NAME}" / "checkpoint.pt"
    summary = mp.run_summaries({NAME: ckpt})
    row = summary.iloc[0]
    log = pd.read_csv(ckpt.parent / "train_log.csv")
    assert row["steps"] == log["step"].max() > 0 and row["first_step_loss"] == pytest.approx(log["loss"].iloc[0])
    assert row["final_train_loss"] == pytest.approx(log.loc[log["epoch"] == log["epoch"].max(), "loss"].mean())
    metrics = mp.pretraining_metrics(summary)
    assert set(metrics[NAME]) == {"first_step_loss", "final_train_loss", "final_val_loss", "steps"}
    with pytest.raises(CryolibError, match="train_log.csv"):
        mp.run_summary(study.runs / "nowhere" / "checkpoint.pt")
