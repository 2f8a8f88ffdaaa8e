import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml

from cryolib.core.atomic import atomic_path, atomic_write_text
from cryolib.core.results import RunRecord, read_metrics, save_figure, save_table, write_metrics


def test_save_figure_and_table(results_root):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    png = save_figure(fig, "fig_test", "smoke")
    assert png.read_bytes()[:4] == b"\x89PNG"
    csv = save_table(pd.DataFrame({"a": [1.0, 2.0], "paper_a": [1.5, np.nan]}), "table_test", "smoke")
    assert pd.read_csv(csv)["a"].tolist() == [1.0, 2.0]
    assert "paper_a" in csv.with_suffix(".md").read_text()


def test_metrics_merge_sections_and_drop_non_finite(results_root):
    write_metrics("01", {"x": np.float32(1.5), "nested": {"y": float("nan")}}, "smoke")
    write_metrics("02", {"z": 3}, "smoke")
    data = read_metrics("smoke")
    assert data["01"]["x"] == 1.5 and data["01"]["nested"]["y"] is None and data["02"]["z"] == 3
    json.loads((results_root / "smoke" / "metrics.json").read_text())


def test_run_record_writes_provenance(results_root):
    path = RunRecord("nb", "smoke", 7, {"a": 1}).finish(note="x")
    entry = yaml.safe_load(path.read_text())["nb"]
    assert entry["seed"] == 7 and entry["parameters"] == {"a": 1} and entry["note"] == "x"
    assert {"git_commit", "packages", "wall_time_s", "profile"} <= set(entry)
    assert entry["packages"]["numpy"] == np.__version__


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_paths_inside_the_repository_are_written_relative(results_root):
    from cryolib.core.results import REPO_ROOT

    path = RunRecord("nb", "smoke", 0, {"runs": REPO_ROOT / "runs" / "smoke", "other": "/elsewhere/x"}).finish()
    entry = yaml.safe_load(path.read_text())["nb"]
    assert entry["parameters"] == {"runs": "runs/smoke", "other": "/elsewhere/x"}


def test_machine_info_describes_this_machine():
    """One machine record for every benchmark: the CPU count and torch's threads of this process."""
    import os

    import torch

    from cryolib.core.provenance import machine_info

    info = machine_info()
    assert info["cpus"] == os.cpu_count() and info["torch_threads"] == torch.get_num_threads()
    assert info["torch"] == torch.__version__ and (info["gpu"] is None) == (not torch.cuda.is_available())
    assert info["load_average_1min"] is None or info["load_average_1min"] >= 0
