"""The detector's generalisation check: its tables by hand, and one method end to end on a tiny analog."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cryolib.studies import picking_generalisation as pg


def _rows(values: dict[str, tuple[float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": d, "method": m, "f1": f} for m, fs in values.items()
                         for d, f in zip(("a", "b"), fs)])


def test_summary_and_leader_by_hand():
    rows = _rows({pg.DETECTOR: (0.8, 0.4), pg.BLOB: (0.5, 0.5), pg.TOPAZ: (0.9, 0.1)})
    wide = pg.summary(rows)
    assert list(wide.index) == [pg.DETECTOR, pg.BLOB, pg.TOPAZ]
    assert wide.loc[pg.DETECTOR, "mean"] == pytest.approx(0.6) and wide.loc[pg.TOPAZ, "mean"] == pytest.approx(0.5)
    lead = pg.detector_leads(rows)
    assert lead["detector_leads"] is True and lead["runner_up"] in (pg.BLOB, pg.TOPAZ)
    assert lead["margin_f1"] == pytest.approx(0.1)


def test_detector_that_trails_is_reported_with_a_negative_margin():
    lead = pg.detector_leads(_rows({pg.DETECTOR: (0.3, 0.3), pg.BLOB: (0.5, 0.5)}))
    assert lead == {"leader": pg.BLOB, "detector_mean_f1": pytest.approx(0.3), "runner_up": pg.BLOB,
                    "margin_f1": pytest.approx(-0.2), "detector_leads": False}


def test_blob_row_on_a_tiny_analog(tiny_sim_10291, tmp_path):
    rows = pg.check_dataset(tiny_sim_10291, tmp_path, methods=(pg.BLOB, pg.TOPAZ))
    assert [r["method"] for r in rows] == [pg.BLOB, pg.TOPAZ]
    for r in rows:
        assert r["dataset"] == "sim-10291" and r["n_scored"] >= 1 and r["n_reference_labels"] >= 1
        assert 0.0 <= r["f1"] <= 1.0 and r["seconds"] > 0
    assert math.isnan(rows[0]["threshold"]) and not math.isnan(rows[1]["threshold"])  # calibrated vs oracle
