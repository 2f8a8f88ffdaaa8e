"""Scoring pickers on a dataset folder, the Figure 2 claims table, and the model card."""

import numpy as np
import pandas as pd
import pytest

from cryolib.studies.cryoemmae_claims import claims_table
from cryolib.io.datasets import load_dataset
from cryolib.evaluate.scoring import best_threshold_scores, evaluation_micrographs, good_micrographs, score_picks
from cryolib.io.micrographs import write_coordinates, write_mrc


@pytest.fixture
def folder(tmp_path):
    """A CryoPPP-style folder with 3 micrographs, one labelled bad, and a 60/20/20 split."""
    root = tmp_path / "ds"
    for i in range(3):
        write_mrc(root / "micrographs" / f"m{i}.mrc", np.zeros((64, 64), np.float32), 4.0)
        write_coordinates(root / "ground_truth" / "particle_coordinates" / f"m{i}.csv",
                          pd.DataFrame({"x": [10.0, 40.0], "y": [10.0, 40.0], "diameter": [10.0, 10.0]}))
    pd.DataFrame({"micrograph": ["m0", "m1", "m2"], "split": ["train", "val", "test"],
                  "quality": ["good", "good", "bad"]}).to_csv(root / "metadata.csv", index=False)
    return load_dataset(root)


def test_bad_micrographs_are_not_scored(folder):
    assert [p.stem for p in good_micrographs(folder, list(folder.micrographs))] == ["m0", "m1"]
    assert [p.stem for p in evaluation_micrographs(folder, is_training_set=False)] == ["m0", "m1"]
    # the test split's only micrograph is bad: fall back to val, never to train
    assert [p.stem for p in evaluation_micrographs(folder, is_training_set=True)] == ["m1"]


def test_score_picks_counts_and_threshold(folder):
    paths = evaluation_micrographs(folder, is_training_set=False)
    picks = {"m0": pd.DataFrame({"x": [10.5, 25.0], "y": [10.0, 25.0], "diameter": 10.0, "score": [0.9, 0.1]})}
    s = score_picks(folder, picks, paths)
    assert (s["tp"], s["fp"], s["fn"]) == (1, 1, 3)  # m1 has no picks: both of its particles are missed
    s = score_picks(folder, picks, paths, threshold=0.5)
    assert (s["tp"], s["fp"]) == (1, 0) and s["precision"] == 1.0 and s["rule"] == "overlap60"
    best = best_threshold_scores(folder, picks, paths)
    assert best["precision"] == 1.0


def _fig2(topaz_in, topaz_out, emmae_in, emmae_out):
    rows = []
    for t in ("a", "b"):
        for e in ("a", "b", "c"):
            ind = t == e
            rows.append({"method": "Cryo-EMMAE", "trained_on": t, "eval_set": e, "f1": emmae_in if ind else emmae_out, "iou": 0.7, "in_domain": ind})
            rows.append({"method": "Topaz (from scratch)", "trained_on": t, "eval_set": e, "f1": topaz_in if ind else topaz_out, "iou": 0.8, "in_domain": ind})
    return pd.DataFrame(rows)


def test_claims_follow_the_numbers():
    supported = claims_table(_fig2(0.9, 0.3, 0.6, 0.58)).set_index("claim")["supported"]
    assert supported["Supervised methods drop on unseen data"] == "yes"
    assert supported["Cryo-EMMAE generalises stably"] == "yes"
    assert supported["In-domain F1: Cryo-EMMAE beats Topaz"] == "no"
    assert supported["In-domain IoU: supervised pickers centre better"] == "yes"
    assert supported["crYOLO (reported, not run)"] == "not testable"
    flipped = claims_table(_fig2(0.6, 0.58, 0.9, 0.3)).set_index("claim")["supported"]
    assert flipped["Supervised methods drop on unseen data"] == "no" and flipped["Cryo-EMMAE generalises stably"] == "no"
