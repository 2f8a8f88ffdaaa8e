"""The notebooks: thin (no definitions, no loops; committed without outputs) and, run through
papermill at the smoke profile, they write NAMED headline numbers inside stated ranges.

Notebooks run in order into one temporary data folder (later notebooks use the datasets that
01 builds), one temporary results folder (CRYOLIB_RESULTS) and one runs folder (CRYOLIB_RUNS).
The ranges were set from smoke runs with a margin (see each check).
"""

import ast
import json
import math
import os
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest

from cryolib.core.profiles import get_profile
from cryolib.io.datasets import datasets_with_role, load_registry
from cryolib.studies import cryoemmae_picking as cp
from test_studies_ablations import check_ablation_metrics
from test_studies_denoising import check_denoising_metrics

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: Syntax a thin notebook must not hold: definitions and loops belong in cryolib.studies.
FORBIDDEN = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.For, ast.AsyncFor, ast.While,
             ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp)


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _code(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in _cells(path) if c["cell_type"] == "code"]


def forbidden_syntax(source: str) -> list[str]:
    """``Name (line n)`` for every definition, loop or comprehension in ``source``."""
    return [f"{type(node).__name__} (line {node.lineno})" for node in ast.walk(ast.parse(source))
            if isinstance(node, FORBIDDEN)]


def test_notebooks_found():
    assert [p.stem for p in NOTEBOOKS][:3] == ["01_datasets", "02_pretrain_mae", "03_cryoemmae_picking"]


def test_the_thinness_check_can_fail():
    assert forbidden_syntax("x = [n for n in names]\nfor a in b:\n    pass") == ["For (line 2)", "ListComp (line 1)"]
    assert forbidden_syntax("def f():\n    return 1") == ["FunctionDef (line 1)"]
    assert forbidden_syntax("while True:\n    break") == ["While (line 1)"]
    assert forbidden_syntax("table = study.cross_dataset_table(s, p)\nfig = plot(table)") == []


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_thin_and_committed_without_outputs(notebook):
    cells = _cells(notebook)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "parameters" in code[0].get("metadata", {}).get("tags", []), "the first code cell must be tagged parameters"
    assert cells[0]["cell_type"] == "markdown" and "**Question.**" in "".join(cells[0]["source"])
    for i, source in enumerate(_code(notebook)):
        bad = forbidden_syntax(source)
        assert not bad, f"{notebook.name} code cell {i}: {bad}; move it into cryolib.studies"
    assert all(c.get("outputs") == [] and c.get("execution_count") is None for c in code), \
        f"{notebook.name} is committed with outputs; clear them"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("notebooks")
    old = {k: os.environ.get(k) for k in ("CRYOLIB_RESULTS", "CRYOLIB_RUNS")}
    os.environ["CRYOLIB_RESULTS"] = str(base / "results")
    os.environ["CRYOLIB_RUNS"] = str(base / "runs")
    yield base
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _check_datasets(m: dict, tables: Path) -> None:
    registry = load_registry()
    sim = get_profile("smoke").simulation
    assert m["n_datasets"] == len(registry)
    assert m["n_micrographs"] == sum(sim.micrographs_for(spec.roles) for spec in registry.values())
    assert set(m["snr_db"]) == set(registry)
    # true SNR of particle signal over shot noise: measured -22.8 .. -1.6 dB at smoke
    assert all(-35.0 < v < 5.0 for v in m["snr_db"].values()), m["snr_db"]
    assert len(set(m["snr_db"].values())) > 1  # analogs differ in dose, ice and contrast
    assert 1.0 < m["mean_particles_per_micrograph"] < 500.0  # measured 6.5 at smoke (256 px micrographs)
    assert 0.0 <= m["max_shift_error_rms_px"] < 1.0  # motion correction recovers the drift: measured 0.07 px
    assert len(pd.read_csv(tables / "datasets_statistics.csv")) == len(registry)


def _check_pretraining(m: dict, tables: Path) -> None:
    train_sets = datasets_with_role("cryoemmae_train")
    assert set(m) == set(train_sets) | {"all4"}
    for name, run in m.items():
        assert run["steps"] >= 1
        # masked-patch MSE on standardised tiles of a barely trained model: measured 1.96 .. 2.07 at smoke.
        # Smoke trains ONE logged step per model, so a fall of the loss cannot be checked here.
        assert 1.0 < run["first_step_loss"] < 3.0 and 1.0 < run["final_train_loss"] < 3.0, (name, run)
        assert run["final_train_loss"] <= run["first_step_loss"] + 1e-6  # the last epoch's mean is no worse than step 1
        if name != "all4":  # per-analog models have a validation split: measured 1.38 .. 2.61
            assert run["final_val_loss"] is not None and 0.5 < run["final_val_loss"] < 5.0, (name, run)
    assert m["all4"]["steps"] >= max(m[t]["steps"] for t in train_sets)  # the joint model sees all four sets
    assert len(pd.read_csv(tables / "mae_pretraining.csv")) == len(m)


def _check_picking(m: dict, tables: Path) -> None:
    assert m["rule"] == "overlap60"
    assert set(m["mean_f1"]) == set(cp.FIG2_METHODS) and set(m["generalisation_f1"]) == set(cp.GEN_METHODS)
    for key in ("mean_f1", "mean_precision", "mean_recall", "generalisation_f1", "picker_ablation_mean_f1",
                "topaz_training_length_f1"):
        assert all(0.0 <= v <= 1.0 for v in m[key].values()), (key, m[key])
    assert set(m["picker_ablation_mean_f1"]) == {"paper/repository", "cryolib default"}
    assert set(m["topaz_training_length_f1"]) == {"profile", "25x longer"}
    assert isinstance(m["shipped_beats_blob_and_topaz"], bool)
    train, evals, gens = (datasets_with_role(r) for r in ("cryoemmae_train", "cryoemmae_eval", "generalisation"))
    fig2 = pd.read_csv(tables / "fig2_cross_dataset.csv")
    assert len(fig2) == len(cp.FIG2_METHODS) * len(train) * len(evals)
    assert not fig2.duplicated(["method", "trained_on", "eval_set"]).any()
    assert set(fig2["trained_on"]) == set(train) and fig2["f1"].between(0, 1).all()
    calibrated = fig2[fig2["method"].isin([cp.BLOB, cp.TOPAZ_PRETRAINED])]
    assert calibrated["threshold"].notna().all()  # every calibrated row names its threshold
    assert fig2.loc[fig2["method"] == cp.EMMAE, "threshold"].isna().all()
    gen = pd.read_csv(tables / "generalisation_check.csv")
    assert len(gen) == len(gens) * len(cp.GEN_METHODS) and not gen.duplicated(["dataset", "method"]).any()
    assert set(gen["dataset"]) == set(gens) and gen["f1"].between(0, 1).all()


def _check_draco_pretraining(m: dict, tables: Path) -> None:
    """04: every run trained, both DRACO terms logged, the shipped file under 20 MB (smoke never installs)."""
    runs = m["runs"]
    assert {"mae", "draco-b", "draco-l"} <= set(runs) and any(r.startswith("warmup_") for r in runs)
    for name, run in runs.items():
        assert run["steps"] >= 1 and run["tiles_per_s"] > 0 and math.isfinite(run["final_loss"]), name
    for key in ("draco-b", "draco-l"):  # smoke: L_N2N 1.55, L_recon 1.33 (standardised units)
        assert 0.3 < runs[key]["final_loss_n2n"] < 5.0 and 0.3 < runs[key]["final_loss_recon"] < 5.0
    assert runs["mae"]["final_loss_n2n"] is None
    assert 0 < m["shipped_mb"] < 20 and m["installed"] is False
    assert len(m["claims_hold"]) >= 5 and all(isinstance(v, bool) for v in m["claims_hold"].values())
    assert len(pd.read_csv(tables / "draco_pretraining.csv")) == len(runs)
    assert list(pd.read_csv(tables / "draco_pretraining_claims.csv").columns) == ["claim", "paper", "ours", "holds"]


def _check_curation(m: dict, tables: Path) -> None:
    """06: Table 4 for every method, counts of the balanced curation set, the claims tested."""
    from cryolib.studies import draco_curation as dc
    methods = {"DRACO-B", "DRACO-L", dc.ENCODER_METHODS["mae"], dc.DRACO_STATS, dc.DRACO_PARTICLES, dc.RESNET,
               dc.RESNET_CLASSES, dc.STATS}
    assert set(m["f1"]) == methods and set(m["accuracy"]) == methods
    assert m["shipped_head_f1"] == m["f1"][dc.DRACO_PARTICLES]
    assert set(m["unseen_settings_f1"]) == methods  # every method also on the settings no training saw
    unseen = pd.read_csv(tables / "curation_unseen_settings.csv")
    assert len(unseen) == len(methods) and (unseen["micrographs"] == unseen["good"] + unseen["bad"]).all()
    assert all(0.0 <= v <= 1.0 for v in [*m["f1"].values(), *m["accuracy"].values()])
    assert m["best_draco"] in ("DRACO-B", "DRACO-L") and 0.0 <= m["best_draco_f1"] <= 1.0
    assert isinstance(m["draco_beats_resnet"], bool)
    sizes = dc.curation_sizes("smoke")
    per_analog = sizes.n_good + 6 * sizes.n_per_defect
    assert m["n_train"] == per_analog * sizes.n_train_analogs and m["n_test"] == per_analog * sizes.n_test_analogs
    assert m["claims_tested"] == 9 and 0 <= m["claims_supported"] <= 9
    t4 = pd.read_csv(tables / "table4_curation.csv")
    assert len(t4) == 9 and t4["paper_f1"].notna().sum() == 5 and t4["f1"].notna().sum() == 8
    per_class = pd.read_csv(tables / "table4_per_class.csv")
    assert len(per_class) == 8 * 7 and per_class["correct"].between(0, 1).all()
    assert len(pd.read_csv(tables / "table4_claims.csv")) == 10


def _check_draco_picking(m: dict, tables: Path) -> None:
    """07: Table 1 for every method on each analog, Table 6's three runs, the few-shot curve of both methods."""
    from cryolib.studies import draco_picking as dp
    ours = {*dp.BACKBONES, dp.ADAPTED, dp.TOPAZ, dp.BLOB, dp.EMMAE_MAE, dp.EMMAE_DRACO}
    assert set(m["table1_mean_f1"]) == ours
    assert all(0.0 <= v <= 1.0 for v in m["table1_mean_f1"].values())
    assert set(m["table6_f1"]) == set(dp.PAPER_TABLE6) and all(0.0 <= v <= 1.0 for v in m["table6_f1"].values())
    t1 = pd.read_csv(tables / "table1_picking.csv")
    n_sets = t1["dataset"].nunique()
    assert n_sets == 3 and (t1["source"] == "reported (paper)").sum() == len(dp.REPORTED) * n_sets
    assert len(t1[t1["source"] == "ours"]) == len(ours) * n_sets
    assert t1.loc[t1["source"] == "ours", "paper_f1"].notna().sum() == 5 * n_sets  # Topaz + the 4 backbones
    few = pd.read_csv(tables / "few_shot_picking.csv")
    assert set(few["method"]) == {"Detector (DRACO-B)", dp.TOPAZ_TRAINED} and (few["n_labels"] >= 1).all()
    assert few["f1"].between(0, 1).all() and few["f1_oracle"].between(0, 1).all()
    assert m["claims"] == 5 and 0 <= m["claims_holding"] <= 5
    assert list(pd.read_csv(tables / "picking_claims.csv").columns) == ["claim", "paper", "ours", "holds"]


def _check_report(m: dict, tables: Path) -> None:
    """10: REPORT.md has every registered artifact; its claim counts match a recount of the claims CSVs."""
    from cryolib.studies.report_artifacts import ARTIFACTS
    assert m["n_artifacts"] == len(ARTIFACTS) and 0 < m["n_present"] <= m["n_artifacts"]
    assert m["unregistered_claims"] == []  # every *_claims.csv is in the registry, so the recount below is fair
    holds = pd.concat([pd.read_csv(p).filter(["holds", "supported"]).iloc[:, 0] for p in tables.glob("*_claims.csv")])
    verdicts = holds.astype(str).str.lower()
    assert m["claims_tested"] == verdicts.isin(["true", "false", "yes", "no"]).sum() >= 20  # 03-06, 08: 29 at smoke
    assert m["claims_holding"] == verdicts.isin(["true", "yes"]).sum()
    text = (tables.parent / "REPORT.md").read_text()
    assert all(f"### {a.name}: {a.title}" in text for a in ARTIFACTS)


def _check_cryoet(m: dict, tables: Path) -> None:
    """09: Figure 8's true SNR and CNR for every stage and method, the claims tested."""
    from cryolib.studies import cryoet as ce
    assert m["n_tilts"] == 21 and m["n_particles"] >= 1 and math.isclose(m["dose_per_tilt_e_per_A2"], 100 / 21)
    for key, methods in (("tilt_true_snr_db", ce.METHODS), ("slice_true_snr_db", ce.METHODS),
                         ("denoised_slice_true_snr_db", ce.METHODS[1:]), ("tilt_cnr", ce.METHODS),
                         ("slice_cnr", (ce.REFERENCE, *ce.METHODS)), ("denoised_slice_cnr", ce.METHODS[1:])):
        assert set(m[key]) == set(methods), key  # smoke: SNR -53 .. +2 dB, CNR 0.3 .. 9.9
        assert all(math.isfinite(v) and -80.0 < v < 60.0 for v in m[key].values()), (key, m[key])
    assert m["slice_cnr"][ce.REFERENCE] > m["slice_cnr"][ce.RAW]  # noise-free WBP beats noisy tilts (9.9 vs 2.3)
    assert len(m["claims_hold"]) == 6 and all(isinstance(v, bool) for v in m["claims_hold"].values())
    table = pd.read_csv(tables / "fig8_cryoet.csv")
    assert len(table) == 12 and set(table["panel"].dropna()) == set("abcde")
    assert list(pd.read_csv(tables / "fig8_claims.csv").columns) == ["claim", "paper", "ours", "holds"]


CHECKS = {"01_datasets": _check_datasets, "02_pretrain_mae": _check_pretraining,
          "03_cryoemmae_picking": _check_picking, "04_pretrain_draco": _check_draco_pretraining,
          "05_denoising": check_denoising_metrics, "06_curation": _check_curation,
          "07_draco_picking": _check_draco_picking,
          "08_ablations": check_ablation_metrics, "09_cryoet_zero_shot": _check_cryoet, "10_report": _check_report}


def test_every_notebook_has_a_metrics_check():
    assert set(CHECKS) == {p.stem for p in NOTEBOOKS}


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_at_smoke(notebook, workspace):
    if notebook.stem == "07_draco_picking":
        pytest.importorskip("detectron2", reason="the detector needs detectron2 (./run_all.sh --setup-only installs it)")
    out = workspace / "executed" / notebook.name
    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(notebook),
        str(out),
        parameters={"profile": "smoke", "seed": 0, "data_root": str(workspace / "data")},
        kernel_name="python3",
        cwd=str(notebook.parent),
        progress_bar=False,
    )
    results = workspace / "results" / "smoke"
    metrics = json.loads((results / "metrics.json").read_text())
    section = metrics.get(notebook.stem)
    assert section, f"{notebook.name} wrote no metrics.json section"
    CHECKS[notebook.stem](section, results / "tables")
    assert notebook.stem in (results / "run.yaml").read_text()
