"""cryolib.studies.denoised_resolution (notebook 05's Table 3) at smoke size: one tiny simulated analog,
tiny checkpoints; the claims logic on constructed numbers."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from cryolib.studies import denoised_resolution as dr
from cryolib.studies import draco_denoising as dn
from cryolib.studies import plots_resolution
from test_denoise_networks import tiny_checkpoint

matplotlib.use("agg")


@pytest.fixture(scope="module")
def study(tiny_sim_10291, tmp_path_factory):
    base = tmp_path_factory.mktemp("ckpts")
    draco, mae = tiny_checkpoint(base / "draco", "draco"), tiny_checkpoint(base / "mae", "mae")
    ckpts = dn._check_checkpoints({"mae": mae, "draco-b": draco, "draco-l": draco})
    # keyed as a Table 3 analog so the paper column fills in; all 3 micrographs (a handful of particles)
    return dn.DenoisingStudy("smoke", 0, {"sim-10421": tiny_sim_10291}, {}, ckpts, n_micrographs=3, n_pairs=5)


def test_table3_on_a_tiny_analog(study, monkeypatch, one_thread):
    rows, curves = dr.table3(study, progress=False)
    assert list(rows["method"]) == list(dr.TABLE3_METHODS)
    assert rows["n_particles"].nunique() == 1 and rows["n_particles"].iloc[0] >= 2  # same particles everywhere
    assert np.isfinite(rows["resolution_A"]).all() and (rows["resolution_A"] >= rows["nyquist_A"] - 1e-9).all()
    paper = rows.set_index("method")["paper_resolution_A"]
    assert paper[dn.DRACO_B] == 2.05 and math.isnan(paper[dn.RAW]) and math.isnan(paper[dn.DRACO_L])
    assert set(curves.columns) == {"dataset", "method", "shell", "frequency_per_A", "resolution_A", "fsc"}
    assert len(curves) == len(rows) * curves["shell"].nunique()
    # the same seed and cap give the same table; a cap of 2 particles is honoured
    again, _ = dr.table3(study, methods=(dn.RAW, dn.DRACO_B), progress=False)
    pd.testing.assert_frame_equal(rows[rows["method"].isin([dn.RAW, dn.DRACO_B])].reset_index(drop=True), again)
    capped, _ = dr.table3(study, max_particles=2, methods=(dn.RAW,), progress=False)
    assert capped["n_particles"].tolist() == [2]
    fig = plots_resolution.fsc_curves_figure(curves, dr.TABLE3_METHODS, rows)
    assert len(fig.axes) == 2  # one panel and its resolution axis
    # after Table 2 the denoised images are reused, not recomputed
    dn.table2(study)
    assert set(study.denoised["sim-10421"]) == set(study.datasets["sim-10421"].stems)
    monkeypatch.setattr(dn, "denoise_all", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    reused, _ = dr.table3(study, progress=False)
    assert np.isfinite(reused["resolution_A"]).all()


def _rows(values: dict[str, list[float]]) -> pd.DataFrame:
    sets = list(dr.PAPER_TABLE3)
    return pd.DataFrame([{"dataset": d, "method": m, "resolution_A": v[i], "n_particles": 100}
                         for m, v in values.items() for i, d in enumerate(sets)])


def test_claims_follow_the_numbers():
    good = _rows({dn.RAW: [20, 20, 20, 20], dn.LOWPASS: [19, 19, 19, 19], dn.TOPAZ: [18, 18, 18, 18],
                  dn.MAE: [17, 17, 17, 17], dn.DRACO_B: [15, 15, 15, 30], dn.DRACO_L: [16, 16, 16, 31]})
    claims = dr.table3_claims(good).set_index("claim")
    assert claims.loc["DRACO gives the best resolution on most sets", "supported"] == "yes"
    assert claims.loc["DRACO gives the best resolution on most sets", "our_numbers"] == "3/4 analogs"
    assert claims.loc["DRACO gives the best resolution on most sets", "paper_numbers"] == "3/4 sets"
    assert claims.loc["DRACO beats the plain MAE", "paper_numbers"] == "4/4 sets"
    assert claims.loc["Every denoiser beats raw particles (ours)", "supported"] == "no"  # DRACO loses on one set
    bad = _rows({dn.RAW: [10] * 4, dn.LOWPASS: [11] * 4, dn.TOPAZ: [12] * 4, dn.MAE: [13] * 4,
                 dn.DRACO_B: [14] * 4, dn.DRACO_L: [14] * 4})
    assert (dr.table3_claims(bad)["supported"] == "no").all()
    m = dr.table3_metrics(good, claims.reset_index())
    assert m["table3_mean_resolution_A"][dn.RAW] == 20 and m["table3_n_particles"]["sim-10421"] == 100
    assert m["table3_draco_b_resolution_A"]["sim-11521"] == 30
    assert all(isinstance(v, bool) for v in m["table3_claims_supported"].values())


def test_unknown_method_raises(study):
    from cryolib.core.errors import CryolibError

    with pytest.raises(CryolibError, match="unknown Table 3 methods"):
        dr.table3(study, methods=("Wiener",), progress=False)
