"""cryolib.studies.draco_ablations: the six ablation runs trained at smoke size on tiny triplet folders,
scored on a tiny simulated analog (Tables 5 and 6 have their rows, our columns and the paper's), the
claims logic on constructed numbers (it follows the numbers), and ``check_ablation_metrics``
(notebook 08's metrics check, for tests/test_notebooks.py's CHECKS table)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryolib.core import profiles
from cryolib.core.errors import CryolibError
from cryolib.core.results import save_table
from cryolib.io.datasets import datasets_with_role
from cryolib.studies import draco_ablations as ab
from cryolib.studies import draco_curation as dc
from cryolib.studies import plots_ablations
from cryolib.studies import plots_denoising
from cryolib.studies.draco_pretraining import ABLATIONS, pretrain_draco_ablations
from test_studies_draco_pretraining import _write_triplet_folder

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

TINY_CURATION = dc.CurationSizes(micrograph_px=64, n_frames=2, n_good=1, n_per_defect=1, n_train_analogs=1,
                                 n_test_analogs=1, resnet_px=32, resnet_epochs=1, max_tiles=2)
TABLE_NAMES = ("table5_mask_ratio", "table6_denoising", "ablation_claims", "ablation_snr")


def check_ablation_metrics(m: dict, tables) -> None:
    """Notebook 08's metrics.json section and tables: named keys, finite numbers in range."""
    ratios = {f"{g:g}" for g in ab.MASK_RUNS.values()}
    assert set(m["f1_by_mask_ratio"]) == ratios and set(m["accuracy_by_mask_ratio"]) == ratios
    assert all(0.0 <= v <= 1.0 for k in ("f1_by_mask_ratio", "accuracy_by_mask_ratio") for v in m[k].values()), m
    assert set(m["true_snr_db_by_mask_ratio"]) == ratios
    # true SNR (dB) of a denoised micrograph. A smoke run (one epoch on a few tiles) is barely trained and its output
    # is nearly uncorrelated with the clean image: measured -85 .. -43 dB; raw micrographs -3 .. -2 dB
    assert all(-150.0 < v < 60.0 for v in m["true_snr_db_by_mask_ratio"].values()), m["true_snr_db_by_mask_ratio"]
    assert set(m["snr_eq11_db_by_mask_ratio"]) == set(ab.TABLE5_SETS)
    assert all(-150.0 < v < 60.0 for d in m["snr_eq11_db_by_mask_ratio"].values() for v in d.values())
    assert m["best_mask_ratio_f1"] in ab.MASK_RUNS.values() and m["best_mask_ratio_true_snr"] in ab.MASK_RUNS.values()
    assert set(m["table6_true_snr_db"]) == set(ab.LOSS_RUNS) and set(m["table6_snr_eq11_db"]) <= set(ab.LOSS_RUNS)
    assert all(-150.0 < v < 60.0 for v in m["table6_true_snr_db"].values())
    assert -60.0 < m["raw_true_snr_db"] < 40.0
    assert 1 <= m["claims_tested"] <= m["claims_total"] and len(m["claims_supported"]) == m["claims_tested"]
    assert all(isinstance(v, bool) for v in m["claims_supported"].values())
    t5 = pd.read_csv(tables / "table5_mask_ratio.csv")
    assert list(t5["run"]) == [*ab.MASK_RUNS, ab.RAW] and t5["paper_f1"].notna().sum() == len(ab.MASK_RUNS)
    t6 = pd.read_csv(tables / "table6_denoising.csv")
    assert list(t6["run"]) == [*ab.LOSS_RUNS, ab.RAW] and t6["paper_snr_db"].notna().sum() == len(ab.LOSS_RUNS)
    claims = pd.read_csv(tables / "ablation_claims.csv")
    assert list(claims.columns) == ["claim", "paper_statement", "paper_numbers", "our_numbers", "supported"]
    assert set(claims["supported"]) <= {"yes", "no", "not testable"}


# ------------------------------------------------------------------------------------- the runs, for real


@pytest.fixture(scope="module")
def ablation_runs(tmp_path_factory):
    """The six runs of ``pretrain_draco_ablations`` at the smoke profile on tiny triplet folders."""
    root = tmp_path_factory.mktemp("ablation_data")
    for k, name in enumerate(datasets_with_role(profiles.get_profile("smoke").draco.pretrain_role)):
        _write_triplet_folder(root / "smoke" / name, name, seed=k)
    return pretrain_draco_ablations("smoke", root, tmp_path_factory.mktemp("ablation_runs"), seed=0, progress=False)


@pytest.fixture(scope="module")
def curation_set(tmp_path_factory):
    """One training and one held-out curation analog: 1 good + 1 per defect each, 64 px."""
    root = tmp_path_factory.mktemp("ablation_curation")
    parts = []
    for split, name in (("train", dc.TRAIN_ANALOGS[0]), ("test", dc.TEST_ANALOGS[0])):
        ds = dc.build_curation_analog(name, root / name, TINY_CURATION, seed=0)
        meta = ds.metadata
        parts.append(pd.DataFrame({"analog": name, "micrograph": meta["micrograph"],
                                   "path": [str(ds.path_of(s)) for s in meta["micrograph"]],
                                   "quality": meta["quality"], "defect": meta["defect"].fillna(""), "split": split}))
    return dc.CurationData(pd.concat(parts, ignore_index=True), TINY_CURATION)


def test_tables_claims_figures_and_metrics_from_real_runs(ablation_runs, curation_set, tiny_sim_10291, results_root):
    # every scored analog name points at the one tiny simulated analog (3 micrographs of 192 px)
    study = ab.AblationStudy("smoke", 0, ab.check_checkpoints(ablation_runs),
                             {name: tiny_sim_10291 for name in ab.scored_sets()}, n_micrographs=1, n_pairs=5)
    rows = ab.score_snr(study)
    assert set(rows["run"]) == {ab.RAW, *ABLATIONS} and len(rows) == len(ab.scored_sets()) * (1 + len(ABLATIONS))
    assert np.isfinite(rows["true_snr_db"]).all() and np.isfinite(rows["band_snr_db"]).all()
    summary = ab.snr_summary(rows)
    assert set(summary.columns) >= {"dataset", "run", "snr_eq11_db", "true_snr_db", "band_snr_db", "n_pairs"}
    curation = ab.curation_by_run(study.checkpoints, curation_set, seed=0)
    assert set(curation) == set(ab.MASK_RUNS) and all(0 <= c["f1"] <= 1 for c in curation.values())
    t5, t6 = ab.table5(summary, curation), ab.table6_denoising(summary)
    assert list(t5["run"]) == [*ab.MASK_RUNS, ab.RAW] and list(t6["run"]) == [*ab.LOSS_RUNS, ab.RAW]
    assert list(t5["mask_ratio"].iloc[:4]) == [0.5, 0.625, 0.75, 0.875]
    for s in ab.TABLE5_SETS:
        assert {f"snr_eq11_db_{s}", f"paper_snr_eq11_db_{s}", f"true_snr_db_{s}"} <= set(t5.columns)
    assert t5.set_index("run").loc["mask0.75", "paper_f1"] == 0.964
    assert t5.set_index("run").loc[ab.RAW, "paper_snr_eq11_db_sim-11521"] == -4.69  # the paper's Table 2 Raw
    assert t6.set_index("run").loc["no-n2n", "paper_snr_db"] == -4.94
    assert np.isfinite(t5["mean_true_snr_db"]).all() and np.isfinite(t6["mean_true_snr_db"]).all()
    claims = ab.claims_table(t5, t6)
    m = ab.headline_metrics(t5, t6, claims)
    for name, table in zip(TABLE_NAMES, (t5, t6, claims, summary)):
        save_table(table, name, "smoke")
    check_ablation_metrics(m, results_root / "smoke" / "tables")
    examples = ab.figure6_examples(study)
    assert list(examples) == list(ab.FIG6_SETS) and set(ab.FIG6_COLUMNS) <= set(examples[ab.FIG6_SETS[0]])
    assert len(plots_denoising.crops_figure(examples, ab.FIG6_COLUMNS).axes) == 2 * len(ab.FIG6_COLUMNS)
    assert len(plots_ablations.mask_ratio_figure(t5).axes) == 3
    assert len(plots_ablations.loss_ablation_figure(t6).axes) == 2


def test_missing_runs_and_data_are_clear_errors(ablation_runs, tmp_path):
    partial = {k: v for k, v in ablation_runs.items() if k != "no-recon"}
    with pytest.raises(CryolibError, match="no-recon"):
        ab.check_checkpoints(partial)
    with pytest.raises(CryolibError, match="notebook 01"):
        ab.load_study("smoke", ablation_runs, data_root=tmp_path)
    with pytest.raises(CryolibError, match="unknown profile"):
        ab.load_study("huge", ablation_runs)
    study = ab.AblationStudy("smoke", 0, dict(ablation_runs), {}, 1)
    with pytest.raises(CryolibError, match="score_snr"):
        ab.figure6_examples(study)


# ------------------------------------------------------------------------------ the claims follow the numbers


def _summary(eq11: dict[str, float], true: dict[str, float]) -> pd.DataFrame:
    """A per-analog summary where each run has the same Eq. 11 and true SNR on every analog."""
    rows = [{"dataset": d, "run": r, "snr_eq11_db": eq11[r], "true_snr_db": true[r], "band_snr_db": true[r],
             "n_micrographs": 1, "n_pairs": 5} for d in ab.scored_sets() for r in eq11]
    return pd.DataFrame(rows)


def _tables(f1: dict[str, float], eq11: dict[str, float], true: dict[str, float]):
    summary = _summary(eq11, true)
    curation = {r: {"accuracy": v, "precision": v, "recall": v, "f1": v} for r, v in f1.items()}
    return ab.table5(summary, curation), ab.table6_denoising(summary)


GOOD_F1 = {"mask0.5": 0.90, "mask0.625": 0.88, "mask0.75": 0.95, "mask0.875": 0.93}
GOOD_SNR = {ab.RAW: -10.0, "mask0.5": 1.0, "mask0.625": 1.5, "mask0.75": 2.0, "mask0.875": 0.5,
            "no-n2n": -1.0, "no-recon": 0.0}


def _supported(claims: pd.DataFrame) -> list[str]:
    return list(claims["supported"])


def test_claims_follow_the_numbers():
    good = _supported(ab.claims_table(*_tables(GOOD_F1, GOOD_SNR, GOOD_SNR)))
    assert good == ["yes"] * 7
    # γ 0.5 far ahead on every measure, and both loss ablations better than the full run
    flipped = {**GOOD_SNR, "mask0.5": 5.0, "no-n2n": 3.0, "no-recon": 4.0}
    bad = _supported(ab.claims_table(*_tables({**GOOD_F1, "mask0.5": 0.99}, flipped, flipped)))
    assert bad == ["no"] * 6 + ["yes"]
    # every run below the raw micrograph: only the last claim flips
    worse = {**GOOD_SNR, ab.RAW: 10.0}
    assert _supported(ab.claims_table(*_tables(GOOD_F1, worse, worse)))[-1] == "no"
    # within the tolerance counts as near-best; a missing Eq. 11 is not testable, not a failure
    near = {**GOOD_SNR, "mask0.5": 2.0 + ab.SNR_TOL_DB / 2}
    near_f1 = {**GOOD_F1, "mask0.5": 0.95 + ab.F1_TOL / 2}
    assert _supported(ab.claims_table(*_tables(near_f1, near, near)))[:3] == ["yes"] * 3
    missing = {**GOOD_SNR, "no-n2n": math.nan}
    assert _supported(ab.claims_table(*_tables(GOOD_F1, missing, GOOD_SNR)))[3] == "not testable"


def test_paper_numbers_under_our_rule():
    """The paper's own Table 5 puts γ 0.75 first on F1 and on HA Trimer, and 0.36 dB behind on RNA polymerase."""
    t5, t6 = _tables(GOOD_F1, GOOD_SNR, GOOD_SNR)
    claims = ab.claims_table(t5, t6).set_index("claim")["paper_numbers"]
    assert claims.iloc[0] == "γ 0.75 0.964, best γ 0.75 0.964 (spread 0.031)" and claims.iloc[1] == "2/2 sets"
    assert ab.near_best({"a": 10.13, "b": 10.49}, "a", 0.5) and not ab.near_best({"a": 10.13, "b": 10.49}, "a", 0.3)
    assert ab.near_best({"a": 1.0, "b": math.nan}, "a", 0.5) is None


def test_headline_metrics_name_every_ratio_and_scheme():
    t5, t6 = _tables(GOOD_F1, GOOD_SNR, GOOD_SNR)
    m = ab.headline_metrics(t5, t6, ab.claims_table(t5, t6))
    assert m["f1_by_mask_ratio"] == {"0.5": 0.90, "0.625": 0.88, "0.75": 0.95, "0.875": 0.93}
    assert m["best_mask_ratio_f1"] == 0.75 and m["best_mask_ratio_true_snr"] == 0.75
    assert m["table6_snr_eq11_db"] == {"no-n2n": -1.0, "no-recon": 0.0, "mask0.75": 2.0}
    assert m["raw_true_snr_db"] == -10.0 and m["claims_tested"] == m["claims_total"] == 7
