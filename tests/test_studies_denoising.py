"""cryolib.studies.draco_denoising on one tiny simulated analog with tiny checkpoints, the claims
logic on constructed numbers, and ``check_denoising_metrics`` (notebook 05's metrics check, for
tests/test_notebooks.py's CHECKS table)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryolib.studies import denoised_resolution as dr
from cryolib.studies import draco_denoising as dn
from cryolib.studies import plots_denoising as plots
from test_denoise_networks import tiny_checkpoint


def check_denoising_metrics(m: dict, tables) -> None:
    """Notebook 05's metrics.json section and tables: named, finite, in range."""
    assert set(m["mean_snr_eq11_db"]) <= set(dn.METHODS) and dn.RAW in m["mean_snr_eq11_db"]
    for key in ("mean_snr_eq11_db", "mean_true_snr_db", "mean_band_snr_db", "generalisation_true_snr_db"):
        assert m[key] and all(math.isfinite(v) and -80.0 < v < 60.0 for v in m[key].values()), (key, m[key])
    assert set(m["generalisation_true_snr_db"]) == set(dn.GEN_METHODS)
    assert m["n_pairs"] >= 1 and m["generalisation_model"]
    assert all(isinstance(v, bool) for v in m["claims_supported"].values())
    summary = pd.read_csv(tables / "table2_snr.csv")
    assert set(summary["method"]) == set(dn.METHODS) and summary["paper_snr_eq11_db"].notna().any()
    # Table 3: resolution (Å) from denoised particles, poses fixed
    res = m["table3_mean_resolution_A"]
    assert set(res) == set(dr.TABLE3_METHODS) and all(math.isfinite(v) and 0.0 < v < 1e4 for v in res.values()), res
    assert m["table3_n_particles"] and all(n >= 2 for n in m["table3_n_particles"].values())
    assert set(m["table3_draco_b_resolution_A"]) == set(m["table3_n_particles"])
    assert m["table3_claims_supported"] and all(isinstance(v, bool) for v in m["table3_claims_supported"].values())
    t3 = pd.read_csv(tables / "table3_resolution.csv")
    assert set(t3["method"]) == set(dr.TABLE3_METHODS) and t3["paper_resolution_A"].notna().any()
    assert (t3["resolution_A"] >= t3["nyquist_A"] - 1e-6).all()
    assert t3.groupby("dataset")["n_particles"].nunique().eq(1).all()  # every method on the same particles


@pytest.fixture(scope="module")
def study(tiny_sim_10291, tmp_path_factory):
    base = tmp_path_factory.mktemp("ckpts")
    draco, mae = tiny_checkpoint(base / "draco", "draco"), tiny_checkpoint(base / "mae", "mae")
    ckpts = dn._check_checkpoints({"mae": mae, "draco-b": draco, "draco-l": draco})
    return dn.DenoisingStudy("smoke", 0, {"sim-10291": tiny_sim_10291}, {"sim-10291": tiny_sim_10291}, ckpts,
                             n_micrographs=1, n_pairs=5)


def test_table2_on_one_analog(study, monkeypatch):
    monkeypatch.setattr(dn, "SHIPPED_DRACO", study.checkpoints["draco-b"].with_name("absent.pt"))
    rows = dn.table2(study)
    assert set(rows["method"]) == set(dn.METHODS) and len(rows) == len(dn.METHODS)
    assert np.isfinite(rows["true_snr_db"]).all() and np.isfinite(rows["band_snr_db"]).all()
    raw, gauss = (rows.set_index("method").loc[k] for k in (dn.RAW, dn.GAUSSIAN))
    assert gauss["true_snr_db"] >= raw["true_snr_db"] - 1e-6  # sigma 0 is on the grid: never worse than raw
    summary = dn.table2_summary(rows)
    assert summary["paper_snr_eq11_db"].isna().all()  # sim-10291 is not a Table 2 set
    gen = dn.generalisation_check(study)
    assert list(gen["method"]) == list(dn.GEN_METHODS) and "not installed" in gen["model"].iloc[0]
    with pytest.raises(Exception, match="not installed"):
        dn.generalisation_check(study, require_shipped=True)
    crops = dn.example_crops(study, study.datasets)
    fig = plots.crops_figure(crops, list(dn.METHODS) + ["Clean"])
    assert len(fig.axes) == len(dn.METHODS) + 1
    recs = dn.reconstruction_examples(study, n_examples=1)
    assert np.isnan(recs[0]["masked odd"]).any() and np.isfinite(recs[0]["DRACO prediction"]).all()
    # masks are complementary where one half is visible: no patch visible in both
    assert not (np.isfinite(recs[0]["masked odd"]) & np.isfinite(recs[0]["masked even"])).any()


def _summary(draco_gain: float) -> pd.DataFrame:
    rows = []
    for d in dn.PAPER_TABLE2:
        for m, v in dn.PAPER_TABLE2[d].items():
            rows.append({"dataset": d, "method": m, "snr_eq11_db": v + (draco_gain if "DRACO" in m else 0.0),
                         "true_snr_db": v, "band_snr_db": v, "n_micrographs": 5, "n_pairs": 100})
        rows.append({"dataset": d, "method": dn.GAUSSIAN, "snr_eq11_db": 0.0, "true_snr_db": -3.0,
                     "band_snr_db": -3.0, "n_micrographs": 5, "n_pairs": 100})
    out = pd.DataFrame(rows)
    out["paper_snr_eq11_db"] = [dn.PAPER_TABLE2[d].get(m, math.nan) for d, m in zip(out["dataset"], out["method"])]
    return out


def test_claims_follow_the_numbers():
    good = dn.claims_table(_summary(0.0)).set_index("claim")["supported"]
    assert (good.iloc[:4] == "yes").all()  # the paper's own numbers support the paper's claims
    bad = dn.claims_table(_summary(-30.0)).set_index("claim")["supported"]
    assert (bad.iloc[:3] == "no").all()  # DRACO 30 dB worse: the claims fail
    wide = dn.table2_pivot(_summary(0.0))
    assert wide.loc[dn.DRACO_L, "sim-11521"] == pytest.approx(12.21) and "mean" in wide
    assert not any("shift" in c for c in good.index)  # no shift-ensemble row, no claim about it
    assert not any("patches (true SNR" in c for c in good.index)  # no block-mean row, no claim about it


def test_block_mean_claim_follows_the_numbers():
    def with_block(draco_minus_block: float) -> pd.DataFrame:
        base = _summary(0.0)
        row = base[base["method"] == dn.DRACO_B].assign(method=dn.BLOCK)
        row["true_snr_db"] -= draco_minus_block
        return pd.concat([base, row], ignore_index=True)
    claim = "DRACO-B beats the mean of each of its 16 px patches (true SNR; ours)"
    assert dn.claims_table(with_block(0.5)).set_index("claim").loc[claim, "supported"] == "yes"
    beaten = dn.claims_table(with_block(-0.5)).set_index("claim").loc[claim]
    assert beaten["supported"] == "no" and beaten["our_numbers"] == "0/4 analogs"
    assert dn.METHODS[dn.BLOCK] == ("blockmean", None) and dn.METHOD_OPTIONS[dn.BLOCK] == {"block_px": 16}


def test_shift_ensemble_claims_follow_the_numbers():
    def with_shifts(gain: float) -> pd.DataFrame:
        base = _summary(0.0)
        peers = base[base["method"].isin([dn.TOPAZ, dn.LOWPASS])].groupby("dataset", sort=False)
        best = peers[["snr_eq11_db", "true_snr_db"]].max()
        row = base[base["method"] == dn.DRACO_B].assign(method=dn.DRACO_B_SHIFTS).set_index("dataset")
        row[["snr_eq11_db", "true_snr_db"]] = best.loc[row.index] + gain
        return pd.concat([base, row.reset_index()], ignore_index=True)
    claim = "DRACO-B with a 2 x 2 shift ensemble beats Topaz-Denoise and low-pass (Eq. 11; ours)"
    assert dn.claims_table(with_shifts(1.0)).set_index("claim").loc[claim, "supported"] == "yes"
    assert dn.claims_table(with_shifts(-1.0)).set_index("claim").loc[claim, "supported"] == "no"
    assert dn.METHOD_OPTIONS[dn.DRACO_B_SHIFTS] == {"shifts": 2} and dn.METHODS[dn.DRACO_B_SHIFTS] == ("draco", "draco-b")


def test_headline_metrics_list_an_infinite_eq11_apart():
    base = _summary(0.0)
    block = base[base["method"] == dn.DRACO_B].assign(method=dn.BLOCK)
    block.loc[block.index[0], "snr_eq11_db"] = math.inf  # a background box inside one block: zero variance
    summary = pd.concat([base, block], ignore_index=True)
    gen = pd.DataFrame({"dataset": ["g"], "method": [dn.RAW], "true_snr_db": [0.0], "band_snr_db": [0.0],
                        "model": ["m"]})
    m = dn.headline_metrics(summary, dn.claims_table(summary), gen)
    assert m["infinite_snr_eq11"] == [dn.BLOCK] and dn.BLOCK not in m["mean_snr_eq11_db"]
    assert all(math.isfinite(v) for v in m["mean_snr_eq11_db"].values()) and dn.BLOCK in m["mean_true_snr_db"]


def test_paper_table2_is_the_papers():
    t = pd.DataFrame(dn.PAPER_TABLE2)
    assert t.loc[dn.RAW].tolist() == [-10.01, -6.52, -12.52, -4.69]
    assert t.loc[dn.DRACO_B].tolist() == [1.92, 3.69, -0.13, 10.13]
    assert set(t.columns) == set(__import__("cryolib.io.datasets", fromlist=["x"]).datasets_with_role("draco_denoising"))
