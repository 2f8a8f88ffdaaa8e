"""cryolib.studies.cryoet at smoke size (fewer tilts) with the shipped DRACO model, the contrast measure on
constructed profiles, and the claims logic on constructed tables (so each claim can fail)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryolib.core.errors import CryolibError
from cryolib.studies import cryoet as ce
from cryolib.studies import plots_cryoet as plots
from cryolib.simulate.tilt_series import tilt_series_config


@pytest.fixture(scope="module")
def result() -> ce.CryoETResult:
    return ce.run_study("smoke", seed=0, config=tilt_series_config("smoke", tilt_step_deg=12.0))


def test_study_runs_every_panel_and_scores_it(result):
    s = result.series
    assert set(result.tilts) == set(ce.METHODS)
    assert all(t.shape == s.tilts.shape for t in result.tilts.values())
    assert np.array_equal(result.tilts[ce.RAW], s.tilts)
    assert result.slice_index == s.config.depth_px // 2 and s.angles_deg[result.zero_tilt] == 0.0
    table = ce.fig8_table(result)
    assert len(table) == len(ce.METHODS) + (len(ce.METHODS) + 1) + (len(ce.METHODS) - 1)
    assert set(table["panel"]) - {""} == set("abcde")
    scored = table[table["method"] != ce.REFERENCE]
    assert np.isfinite(scored["true_snr_db"]).all() and table["true_snr_db"].isna().sum() == 1
    assert (table["n_profiles"] >= 1).all() and np.isfinite(table["cnr"]).all()
    t = table.set_index(["stage", "method"])
    # sigma 0 is on the best-case Gaussian's grid: never worse than raw (per tilt, so also on average)
    assert t.loc[(ce.TILTS, ce.GAUSSIAN), "true_snr_db"] >= t.loc[(ce.TILTS, ce.RAW), "true_snr_db"] - 1e-6
    # the noise-free reconstruction has more contrast than the one from noisy tilts (physics, not a claim)
    assert t.loc[(ce.RECON, ce.REFERENCE), "cnr"] > t.loc[(ce.RECON, ce.RAW), "cnr"]
    claims = ce.claims_table(table)
    assert list(claims.columns) == ["claim", "paper", "ours", "holds"] and len(claims) == 6
    metrics = ce.headline_metrics(table, claims, result)
    assert set(metrics["slice_true_snr_db"]) == set(ce.METHODS) and ce.REFERENCE in metrics["slice_cnr"]
    assert metrics["n_tilts"] == 11 and metrics["tilt_series"]["tilt_step_deg"] == 12.0


def test_figures_and_summary(result):
    example = ce.profile_example(result)
    assert set(example["profiles"]) == {"c: raw", "d: from DRACO tilts", "e: DRACO on c", "noise-free WBP"}
    assert all(len(v) == len(example["cols"]) for v in example["profiles"].values())
    assert len(plots.fig8_figure(result, example).axes) == 8
    assert len(plots.xz_sections_figure(result, example).axes) == 4
    summary = ce.series_summary(result)
    assert "11 from -60° to 60°" in summary.set_index("item").loc["tilts", "value"]


def test_profile_cnr_on_a_constructed_profile():
    cols = np.arange(41)
    truth = np.where(np.abs(np.abs(cols - 20) - 8) <= 1, 1.0, 0.0)  # two walls at x = 12 and 28
    truth[np.abs(cols - 20) < 7] = 0.2  # a faint interior
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, cols.size)
    values = 5.0 * truth + noise
    background = np.abs(cols - 20) > 11
    expected = abs(values[truth >= 0.5].mean() - values[background].mean()) / values[background].std()
    assert ce.profile_cnr(values, truth, cols, 20.0, 9.0) == pytest.approx(expected)
    assert ce.profile_cnr(values, truth, cols, 20.0, 9.0) > ce.profile_cnr(0.2 * truth + noise, truth, cols, 20.0, 9.0)
    assert math.isnan(ce.profile_cnr(values, np.zeros(41), cols, 20.0, 9.0))  # no particle: undefined


def test_line_profile_averages_rows_and_rejects_lines_outside():
    image = np.arange(100.0).reshape(10, 10)
    cols, values = ce.line_profile(image, 5, 4, 2, band_px=1)
    assert list(cols) == [3, 4, 5, 6, 7] and values == pytest.approx(image[3:6, 3:8].mean(axis=0))
    with pytest.raises(CryolibError, match="misses"):
        ce.line_profile(image, 50, 50, 2)


def _table(cnr: dict, snr: dict) -> pd.DataFrame:
    keys = sorted(set(cnr) | set(snr))
    return pd.DataFrame({"stage": [k[0] for k in keys], "method": [k[1] for k in keys],
                         "cnr": [cnr.get(k, np.nan) for k in keys], "true_snr_db": [snr.get(k, np.nan) for k in keys]})


@pytest.mark.parametrize("better", [True, False])
def test_claims_follow_the_numbers(better):
    up, down = (2.0, 1.0) if better else (1.0, 2.0)
    cnr = {(ce.RECON, ce.DRACO): up, (ce.POST, ce.DRACO): up, (ce.RECON, ce.RAW): down,
           (ce.TILTS, ce.DRACO): up, (ce.TILTS, ce.RAW): down}
    snr = {(ce.TILTS, ce.DRACO): up, (ce.TILTS, ce.RAW): down, (ce.POST, ce.DRACO): up,
           (ce.POST, ce.GAUSSIAN): down, (ce.RECON, ce.DRACO): up, (ce.RECON, ce.GAUSSIAN): down}
    claims = ce.claims_table(_table(cnr, snr))
    assert claims["holds"].tolist() == [better] * 6
    snr[(ce.POST, ce.DRACO)] = np.nan  # an undefined number never supports a claim
    assert not ce.claims_table(_table(cnr, snr))["holds"].iloc[4]
