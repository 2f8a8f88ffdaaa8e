"""cryolib.studies.picking_resolution (notebook 07's Table 1 resolution column) on a tiny simulated analog:
the cap rule, the paper column, reported-only rows, and that better picks give a better map."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryolib.io.micrographs import read_micrograph
from cryolib.reconstruct import poses as P
from cryolib.studies import draco_picking as dp
from cryolib.studies import picking_resolution as pr


@pytest.fixture(scope="module")
def tiny(tiny_sim_10291, tmp_path_factory):
    ds = tiny_sim_10291
    stems = ds.stems
    shapes = {s: read_micrograph(ds.path_of(s))[0].shape for s in stems}
    gt = P.ground_truth_picks(ds, stems)
    n = {s: len(df) for s, df in gt.items()}
    # keyed as a Table 1 analog so the paper column fills in
    study = dp.PickingStudy("smoke", 0, {"sim-10407": ds}, {}, {}, tmp_path_factory.mktemp("runs"))
    picks = {"sim-10407": {
        dp.DRACO_B: gt,
        dp.TOPAZ: P.mix_false_positives(gt, 0.5, shapes, ds.diameter_px, seed=0),
        dp.SCRATCH: P.random_picks(shapes, n, seed=0),
        dp.MAE: {stems[0]: gt[stems[0]].iloc[:1]},  # one pick: no map
    }}
    return study, picks, sum(n.values())


def test_cap_rule():
    few = {"a": {"m": pd.DataFrame({"x": [1.0] * 3, "y": [1.0] * 3})}, "b": {"m": pd.DataFrame({"x": [1.0] * 80,
                                                                                              "y": [1.0] * 80})}}
    assert pr.resolution_cap(few) == pr.MIN_PARTICLES
    many = {"a": {"m": pd.DataFrame({"x": [1.0] * 90, "y": [1.0] * 90})}, "b": {"m": pd.DataFrame({"x": [1.0] * 70,
                                                                                                 "y": [1.0] * 70})}}
    assert pr.resolution_cap(many) == 70 and pr.resolution_cap(many, 20) == 20


def test_table1_resolution_on_a_tiny_study(tiny, one_thread):
    study, picks, n_gt = tiny
    table = pr.table1_resolution(study, picks)
    ours = table[table["source"] == "ours"].set_index("method")
    assert set(ours.index) == {dp.DRACO_B, dp.TOPAZ, dp.SCRATCH, dp.MAE}
    cap = max(pr.MIN_PARTICLES, 1)
    assert (ours["max_particles"] == cap).all()
    assert ours.loc[dp.DRACO_B, "n_particles"] == min(cap, n_gt) and ours.loc[dp.DRACO_B, "n_false_positive"] == 0
    assert math.isnan(ours.loc[dp.MAE, "resolution_A"]) and ours.loc[dp.MAE, "n_particles"] == 1
    # perfect picks beat half false positives beat random picks, at the same count
    res = ours["resolution_A"]
    assert res[dp.DRACO_B] < res[dp.TOPAZ] < res[dp.SCRATCH]
    assert ours.loc[dp.SCRATCH, "n_true_positive"] < 0.3 * ours.loc[dp.SCRATCH, "n_particles"]
    assert ours.loc[dp.DRACO_B, "paper_resolution_A"] == 2.61 and ours.loc[dp.TOPAZ, "paper_resolution_A"] == 2.80
    reported = table[table["source"] == "reported (paper)"].set_index("method")
    assert set(reported.index) == set(dp.REPORTED) and reported["resolution_A"].isna().all()
    assert reported.loc["crYOLO", "paper_resolution_A"] == 2.78
    again = pr.table1_resolution(study, picks)
    pd.testing.assert_frame_equal(table, again)
    assert np.isfinite(ours.loc[dp.DRACO_B, "nyquist_A"])


def test_resolution_claims_and_metrics(tiny, one_thread):
    study, picks, _ = tiny
    table = pr.table1_resolution(study, picks)
    claims = pr.resolution_claims(table).set_index("claim")
    # on the tiny analog DRACO-B's picks are the ground truth, Topaz's half false: DRACO-B wins
    assert claims.loc["DRACO-B's picks give a better map than Topaz's", "holds"] == "yes"
    assert claims.loc["DRACO-B's picks give a better map than Topaz's", "paper"] == "3/3 sets"
    assert claims.loc["DRACO-B's picks give a better map than the MAE detector's", "ours"] == "0/0 analogs"  # no MAE map
    m = pr.resolution_metrics(table, claims.reset_index())
    assert set(m["table1_resolution_A"]["sim-10407"]) == {dp.DRACO_B, dp.TOPAZ, dp.SCRATCH, dp.MAE}
    assert m["table1_resolution_cap"] == {"sim-10407": pr.MIN_PARTICLES}
    assert all(isinstance(v, bool) for v in m["table1_resolution_claims"].values())
    wide = pr.resolution_wide(table[table["source"] == "ours"])
    assert wide.index[0] == dp.DRACO_B
