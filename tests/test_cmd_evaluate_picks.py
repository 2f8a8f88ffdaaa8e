"""`cryolib evaluate-picks` end to end on temporary files, and its bad inputs (exit 2, one line, nothing written);
cryolib.evaluate.pick_files, the library function it calls."""

import json

import yaml

import numpy as np
import pandas as pd
import pytest

from cryolib.cli import main
from cryolib.io.micrographs import read_coordinates, write_coordinates
from cryolib.evaluate.metrics import score_dataset
from cryolib.evaluate.pick_files import evaluate_pick_dirs, format_report

DIAMETER = 30.0


def _write_truth(folder, stem, xy, diameter=DIAMETER):
    folder.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"X-Coordinate": xy[:, 0], "Y-Coordinate": xy[:, 1]})
    if diameter is not None:
        table["Diameter"] = diameter
    table.to_csv(folder / f"{stem}.csv", index=False)


@pytest.fixture
def dirs(tmp_path):
    """Three micrographs: truth as CryoPPP CSV, picks as csv, star and box (one format each)."""
    rng = np.random.default_rng(0)
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    for m, fmt in enumerate(("csv", "star", "box")):
        gt = rng.uniform(40, 900, (30, 2))
        _write_truth(truth, f"mic{m}", gt)
        xy = np.concatenate([gt[:25] + rng.normal(0, 2, (25, 2)), rng.uniform(40, 900, (8, 2))])
        score = np.concatenate([rng.normal(2, 1, 25), rng.normal(0, 1, 8)])
        df = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "diameter": DIAMETER, "score": score})
        write_coordinates(pred / f"mic{m}.{fmt}", df)
    return pred, truth


def _expected(pred, truth, rule="overlap60", threshold=None, diameter=DIAMETER):
    p = {f.stem: read_coordinates(f) for f in pred.iterdir() if f.suffix in (".csv", ".star", ".box")}
    if threshold is not None:
        p = {k: v[v["score"] >= threshold] for k, v in p.items()}
    t = {f.stem: read_coordinates(f) for f in truth.iterdir()}
    return score_dataset(p, t, diameter, rule)


def test_end_to_end_out_folder(dirs, tmp_path, capsys):
    pred, truth = dirs
    out_dir = tmp_path / "eval"
    assert main(["evaluate-picks", "--pred", str(pred), "--truth", str(truth), "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "rule: overlap60" in out and "POOLED" in out and "mic2" in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["evaluation.json", "run.yaml"]
    assert not (pred / "evaluation.json").exists()  # the input folder is never written to
    report = json.loads((out_dir / "evaluation.json").read_text())
    run = yaml.safe_load((out_dir / "run.yaml").read_text())
    assert run["command"] == "evaluate-picks" and run["parameters"]["pred"] == str(pred)
    assert run["f1"] == pytest.approx(report["pooled"]["f1"]) and run["n_micrographs"] == 3
    expected = _expected(pred, truth)
    for key in ("tp", "fp", "fn", "precision", "recall", "f1", "mean_iou"):
        assert report["pooled"][key] == pytest.approx(expected[key])
    assert report["rule"] == report["pooled"]["rule"] == "overlap60"
    assert [row["micrograph"] for row in report["per_micrograph"]] == ["mic0", "mic1", "mic2"]
    assert report["pooled"]["diameter_px"] == DIAMETER  # from the truth's Diameter column
    assert 0 < report["ranking"]["average_precision"] <= 1
    assert report["unpaired_pred"] == [] and report["unpaired_truth"] == []


def test_rule_threshold_diameter_and_out(dirs, tmp_path, capsys):
    pred, truth = dirs
    out = tmp_path / "reports" / "iou"
    argv = ["evaluate-picks", "--pred", str(pred), "--truth", str(truth), "--rule", "iou60",
            "--threshold", "1.0", "--diameter-px", "40", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "evaluation.json").read_text())
    expected = _expected(pred, truth, "iou60", 1.0, 40.0)
    assert report["rule"] == "iou60" and report["threshold"] == 1.0
    assert (report["pooled"]["tp"], report["pooled"]["n_pred"]) == (expected["tp"], expected["n_pred"])
    assert report["diameter_source"] == "--diameter-px"
    assert not (pred / "evaluation.json").exists()


def test_repo_rule_and_unpaired_files(dirs, capsys):
    pred, truth = dirs
    _write_truth(truth, "only_truth", np.array([[100.0, 100.0]]))
    write_coordinates(pred / "only_pred.csv", pd.DataFrame({"x": [5.0], "y": [5.0]}))
    report = evaluate_pick_dirs(pred, truth, rule="repo-nearest")
    assert report["pooled"]["rule"] == "repo-nearest" and report["pooled"]["n_micrographs"] == 3
    assert report["unpaired_pred"] == ["only_pred"] and report["unpaired_truth"] == ["only_truth"]


def test_without_out_prints_only(dirs, capsys):
    pred, truth = dirs
    before = sorted(p.name for p in pred.iterdir())
    assert main(["evaluate-picks", "--pred", str(pred), "--truth", str(truth)]) == 0
    assert "POOLED" in capsys.readouterr().out
    assert sorted(p.name for p in pred.iterdir()) == before


def test_library_report_matches_metrics_and_formats(dirs):
    pred, truth = dirs
    report = evaluate_pick_dirs(pred, truth, threshold=0.5)
    expected = _expected(pred, truth, threshold=0.5)
    assert (report["pooled"]["tp"], report["pooled"]["n_pred"]) == (expected["tp"], expected["n_pred"])
    text = format_report(report)
    assert text.splitlines()[0].startswith("rule: overlap60  threshold: 0.5") and "average precision" in text


def _bad(argv, capsys, message, json_path):
    """Exit 2, one line on stderr naming ``message``, no report; ``--out`` (if not given) must not appear."""
    out = json_path.parent.parent / "out"
    if "--out" not in argv:
        argv = [*argv, "--out", str(out)]
    assert main(["evaluate-picks", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cryolib evaluate-picks: error:") and err.count("\n") == 1, err
    assert message in err, err
    assert not json_path.exists() and not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--rule", "nearest"], "invalid choice: 'nearest'"),
    (["--threshold", "high"], "invalid float value: 'high'"),
    (["--diameter-px"], "expected one argument"),
])
def test_bad_flags_one_line(dirs, capsys, argv, message):
    pred, truth = dirs
    _bad(["--pred", str(pred), "--truth", str(truth), *argv], capsys, message, pred / "evaluation.json")


def test_missing_required_flag(dirs, capsys):
    _, truth = dirs
    _bad(["--truth", str(truth)], capsys, "required: --pred", truth / "evaluation.json")


def test_out_is_a_file(dirs, tmp_path, capsys):
    pred, truth = dirs
    target = tmp_path / "report.json"
    target.write_text("{}")
    _bad(["--pred", str(pred), "--truth", str(truth), "--out", str(target)], capsys, "is a file",
         pred / "evaluation.json")
    assert target.read_text() == "{}"


def test_missing_and_empty_folders(dirs, tmp_path, capsys):
    pred, truth = dirs
    _bad(["--pred", str(tmp_path / "nope"), "--truth", str(truth)], capsys, "is not a folder", pred / "evaluation.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.md").write_text("no coordinates here")
    _bad(["--pred", str(empty), "--truth", str(truth)], capsys, "holds no coordinate files", empty / "evaluation.json")
    _bad(["--pred", str(pred), "--truth", str(empty)], capsys, "holds no coordinate files", pred / "evaluation.json")


def test_no_common_stems_names_files(dirs, tmp_path, capsys):
    pred, _ = dirs
    other = tmp_path / "other"
    _write_truth(other, "frame_A", np.array([[10.0, 10.0]]))
    _bad(["--pred", str(pred), "--truth", str(other)], capsys, "no micrograph stems in common",
         pred / "evaluation.json")
    # both sides are named so the user sees the mismatch
    assert main(["evaluate-picks", "--pred", str(pred), "--truth", str(other)]) == 2
    err = capsys.readouterr().err
    assert "mic0" in err and "frame_A" in err


@pytest.mark.parametrize("diameter", ["0", "-5", "nan"])
def test_bad_diameter(dirs, capsys, diameter):
    pred, truth = dirs
    _bad(["--pred", str(pred), "--truth", str(truth), "--diameter-px", diameter], capsys, "--diameter-px",
         pred / "evaluation.json")


def test_malformed_files(dirs, capsys):
    pred, truth = dirs
    (pred / "mic0.csv").write_text("X-Coordinate,Y-Coordinate\n1.0,banana\n")
    _bad(["--pred", str(pred), "--truth", str(truth)], capsys, "mic0.csv", pred / "evaluation.json")


def test_truth_without_diameter_needs_flag(tmp_path, dirs, capsys):
    pred, _ = dirs
    truth = tmp_path / "nodiam"
    for m in range(3):
        _write_truth(truth, f"mic{m}", np.array([[100.0, 100.0]]), diameter=None)
    _bad(["--pred", str(pred), "--truth", str(truth)], capsys, "pass --diameter-px", pred / "evaluation.json")
    assert main(["evaluate-picks", "--pred", str(pred), "--truth", str(truth), "--diameter-px", "30"]) == 0


def test_two_formats_for_one_micrograph(dirs, capsys):
    pred, truth = dirs
    write_coordinates(pred / "mic0.star", read_coordinates(pred / "mic0.csv"))
    _bad(["--pred", str(pred), "--truth", str(truth)], capsys, "two coordinate files", pred / "evaluation.json")


def test_threshold_needs_scores(dirs, capsys):
    pred, truth = dirs
    df = read_coordinates(pred / "mic0.csv").drop(columns="score")
    write_coordinates(pred / "mic0.csv", df)
    _bad(["--pred", str(pred), "--truth", str(truth), "--threshold", "0"], capsys, "without a score",
         pred / "evaluation.json")
