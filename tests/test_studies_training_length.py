"""cryolib.studies.draco_training_length: the sweep trains resumably on the smoke profile, scores every
checkpoint beside the peers on the same micrographs, and its claims follow constructed numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cryolib.core import profiles
from cryolib.core.errors import CryolibError
from cryolib.io.datasets import datasets_with_role
from cryolib.studies import draco_denoising as dn
from cryolib.studies import draco_training_length as tl
from cryolib.studies.plots_denoising import frc_figure, length_figure
from test_denoise_networks import tiny_checkpoint
from test_studies_draco_pretraining import _write_triplet_folder

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def test_train_lengths_shares_the_warm_up_and_resumes(tmp_path):
    for k, name in enumerate(datasets_with_role(profiles.get_profile("smoke").draco.pretrain_role)):
        _write_triplet_folder(tmp_path / "data" / "smoke" / name, name, seed=k)
    ckpts = tl.train_lengths("smoke", (1, 2), tmp_path / "data", tmp_path / "runs", progress=False)
    assert sorted(ckpts) == [1, 2] and all(p.is_file() for p in ckpts.values())
    draco = tmp_path / "runs" / "smoke" / "draco"
    assert sorted(p.name for p in draco.iterdir() if p.name.startswith("warmup_")) == ["warmup_draco-tiny_1ep"]
    logs = {e: (p.parent / "train_log.csv").read_text() for e, p in ckpts.items()}
    again = tl.train_lengths("smoke", (1, 2), tmp_path / "data", tmp_path / "runs", progress=False)
    assert again == ckpts
    assert {e: (p.parent / "train_log.csv").read_text() for e, p in again.items()} == logs  # no step is redone


def test_patch_variant_trains_the_same_steps_on_smaller_crops(tmp_path):
    for k, name in enumerate(datasets_with_role(profiles.get_profile("smoke").draco.pretrain_role)):
        _write_triplet_folder(tmp_path / "data" / "smoke" / name, name, seed=k)
    ckpt = tl.train_patch_variant("smoke", 8, 128, 1, tmp_path / "data", tmp_path / "runs", progress=False)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["model_config"]["patch_size"] == 8 and state["model_config"]["img_size"] == 128
    steps = len((ckpt.parent / "train_log.csv").read_text().splitlines()) - 1
    assert steps >= 1 and tl.same_steps_length("smoke", 128, 1) == 4  # 4 crops of 128 px per 256 px crop
    with pytest.raises(CryolibError, match="whole patches"):
        tl.train_patch_variant("smoke", 8, 100, 1, tmp_path / "data", tmp_path / "runs")


def test_recipe_variant_without_warm_up_starts_from_random_weights(tmp_path):
    for k, name in enumerate(datasets_with_role(profiles.get_profile("smoke").draco.pretrain_role)):
        _write_triplet_folder(tmp_path / "data" / "smoke" / name, name, seed=k)
    ckpt = tl.train_recipe_variant("smoke", "no warm-up", tmp_path / "data", tmp_path / "runs", progress=False)
    assert ckpt.parent.name == "recipe_nowarmup_1ep" and ckpt.is_file()
    draco = tmp_path / "runs" / "smoke" / "draco"
    assert not [p for p in draco.iterdir() if p.name.startswith("warmup_")]  # no warm-up was trained
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["objective_config"]["init_from"] is None
    log = (ckpt.parent / "train_log.csv").read_text()
    assert tl.train_recipe_variant("smoke", "no warm-up", tmp_path / "data", tmp_path / "runs", progress=False) == ckpt
    assert (ckpt.parent / "train_log.csv").read_text() == log  # resumed: no step is redone
    with pytest.raises(CryolibError, match="unknown recipe variant"):
        tl.train_recipe_variant("smoke", "4x lr", tmp_path / "data", tmp_path / "runs")
    assert tl.recipe_label("4x lr", 64) == "DRACO-B, 4x lr, 64 epochs"


def test_recipe_variants_change_only_real_profile_fields():
    fields = set(profiles.DracoSizes.__dataclass_fields__)
    for variants in tl.RECIPE_VARIANTS.values():
        for variant in variants.values():
            assert set(variant.sizes) <= fields and variant.slug.isidentifier()


def test_train_lengths_rejects_bad_lengths(tmp_path):
    with pytest.raises(CryolibError, match="positive"):
        tl.train_lengths("smoke", (0,), tmp_path, tmp_path)


@pytest.fixture(scope="module")
def scored(tiny_sim_10291, tmp_path_factory):
    base = tmp_path_factory.mktemp("lengths")
    ckpts = {1: tiny_checkpoint(base / "a", "draco"), 3: tiny_checkpoint(base / "b", "draco")}
    mae = tiny_checkpoint(base / "mae", "mae")
    study = dn.DenoisingStudy("smoke", 0, {"sim-10291": tiny_sim_10291}, {}, dn._check_checkpoints(
        {"mae": mae, "draco-b": ckpts[1], "draco-l": ckpts[3]}), n_micrographs=1, n_pairs=5)
    return ckpts, *tl.score_lengths(study, ckpts, n_rings=8)


def test_every_checkpoint_is_scored_beside_the_peers(scored):
    ckpts, rows, frc = scored
    labels = [*tl.BASELINES, tl.length_label(1), tl.length_label(3)]
    assert list(rows["method"]) == labels
    assert np.isfinite(rows[["true_snr_db", "band_snr_db"]].to_numpy()).all()
    assert len(frc) == 8 * len(labels) and frc["frc"].between(-1, 1).all()
    summary = tl.length_summary(rows, ckpts)
    assert summary.set_index("method")["epochs"].dropna().to_dict() == {tl.length_label(1): 1, tl.length_label(3): 3}
    mean = tl.frc_summary(frc)
    assert len(mean) == 8 * len(labels)
    assert -1.0 <= tl.mean_frc_above(mean, tl.RAW, 0.25) <= 1.0
    with pytest.raises(CryolibError, match="no FRC rings"):
        tl.mean_frc_above(mean, "nobody", 0.25)
    fig = frc_figure(mean, labels)
    assert len(fig.axes[0].lines) >= len(labels)


def test_score_lengths_needs_checkpoints(scored):
    with pytest.raises(CryolibError, match="no DRACO checkpoints"):
        tl.score_lengths(None, {})


def _summary(short: float, long: float, topaz: float, lowpass: float, block: float | None = None) -> pd.DataFrame:
    rows = []
    for d in ("a", "b"):
        for method, v in ((tl.length_label(4), short), (tl.length_label(64), long), (dn.TOPAZ, topaz),
                          (dn.LOWPASS, lowpass), *(((dn.BLOCK, block),) if block is not None else ())):
            rows.append({"dataset": d, "method": method, "snr_eq11_db": v, "true_snr_db": v, "band_snr_db": v})
    return pd.DataFrame(rows)


def test_variant_claims_follow_the_numbers():
    summary = _summary(-5.0, 1.0, 2.0, -9.0)
    frc = pd.DataFrame({"method": [tl.length_label(4)] * 2 + [tl.length_label(64)] * 2, "ring": [0, 1, 0, 1],
                        "low_cycles_per_px": [0.0, 0.25] * 2, "high_cycles_per_px": [0.25, 0.5] * 2,
                        "frc": [0.9, 0.1, 0.9, 0.3]})
    claims = tl.variant_claims(summary, frc, tl.length_label(64), tl.length_label(4), above_cycles_per_px=0.25)
    assert claims["supported"].all() and "0.300 vs 0.100" in claims["our_numbers"].iloc[-1]
    assert not tl.variant_claims(summary, frc, tl.length_label(4), tl.length_label(64), 0.25)["supported"].any()


def test_claims_follow_the_numbers():
    ckpts = {4: "x", 64: "y"}
    better = tl.length_claims(_summary(-5.0, 1.0, 2.0, -9.0), ckpts).set_index("claim")["supported"]
    assert better["64 epochs raise snr_eq11_db over 4"] and not better["64 epochs beat Topaz-Denoise on snr_eq11_db"]
    assert better["64 epochs beat Low-pass on true_snr_db"]
    worse = tl.length_claims(_summary(1.0, -5.0, -9.0, -9.0), ckpts).set_index("claim")["supported"]
    assert not worse["64 epochs raise band_snr_db over 4"] and worse["64 epochs beat Topaz-Denoise on band_snr_db"]
    with pytest.raises(CryolibError, match="two training lengths"):
        tl.length_claims(_summary(1.0, 1.0, 1.0, 1.0), {4: "x"})
    assert len(better) == 9
    with_block = tl.length_claims(_summary(-5.0, 1.0, 2.0, -9.0, block=1.5), ckpts).set_index("claim")["supported"]
    assert len(with_block) == 11 and not with_block[f"64 epochs beat {dn.BLOCK} on true_snr_db"]
    assert f"64 epochs beat {dn.BLOCK} on snr_eq11_db" not in with_block  # +inf where a box sits in one block
    assert tl.length_claims(_summary(-5.0, 1.0, 2.0, -9.0, block=0.5), ckpts).set_index("claim")["supported"][
        f"64 epochs beat {dn.BLOCK} on band_snr_db"]


def _curve_summary() -> pd.DataFrame:
    """Two analogs; DRACO gains 2 dB per doubling from 4 to 16 epochs and 1 dB per doubling from 16 to 64;
    Topaz sits at 6 dB; the block mean's Eq. 11 is +inf on one analog."""
    rows = []
    for d, shift in (("a", -1.0), ("b", 1.0)):
        for method, epochs, v in ((tl.length_label(4), 4, 0.0), (tl.length_label(16), 16, 4.0),
                                  (tl.length_label(64), 64, 6.0 - 4.0), (dn.TOPAZ, np.nan, 6.0),
                                  (dn.BLOCK, np.nan, 1.0)):
            eq11 = np.inf if (method == dn.BLOCK and d == "a") else v + shift
            rows.append({"dataset": d, "method": method, "epochs": epochs, "snr_eq11_db": eq11,
                         "true_snr_db": v + shift, "band_snr_db": v + shift})
    return pd.DataFrame(rows)


def test_length_curve_and_trend_follow_the_numbers():
    ckpts = {64: "z", 4: "x", 16: "y"}
    curve = tl.length_curve(_curve_summary(), ckpts)
    assert list(curve["method"]) == [tl.length_label(4), tl.length_label(16), tl.length_label(64), dn.TOPAZ, dn.BLOCK]
    assert curve["epochs"].iloc[:3].tolist() == [4, 16, 64] and curve["epochs"].iloc[3:].isna().all()
    assert curve["true_snr_db"].tolist() == pytest.approx([0.0, 4.0, 2.0, 6.0, 1.0])  # mean of -1 and +1 shifts
    assert np.isinf(curve.set_index("method").loc[dn.BLOCK, "snr_eq11_db"])
    trend = tl.length_trend(curve).set_index("metric")
    # 16 -> 64 epochs is 2 doublings and -2 dB: falling, so no extrapolation
    assert trend.loc["true_snr_db", "gain_per_doubling_db"] == pytest.approx(-1.0)
    assert trend.loc["true_snr_db", "gap_to_topaz_denoise_db"] == pytest.approx(-4.0)
    assert np.isnan(trend.loc["true_snr_db", "doublings_to_reach_at_this_rate"])
    rising = curve.assign(true_snr_db=[0.0, 2.0, 4.0, 6.0, 1.0])  # 1 dB per doubling, 2 dB short of Topaz
    again = tl.length_trend(rising).set_index("metric").loc["true_snr_db"]
    assert again["gain_per_doubling_db"] == pytest.approx(1.0) and again["doublings_to_reach_at_this_rate"] == 2.0
    assert np.isnan(tl.length_trend(rising, peer=dn.BLOCK).set_index("metric").loc["true_snr_db",
                                                                                     "doublings_to_reach_at_this_rate"])
    fig = length_figure(curve, tl.METRIC_LABELS)
    eq11, true = fig.axes[0], fig.axes[1]
    assert len(eq11.lines) == 2 and len(true.lines) == 3  # DRACO + Topaz (block +inf left out) / + block
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["DRACO-B", dn.TOPAZ, dn.BLOCK]


def test_length_curve_and_trend_reject_what_they_cannot_use():
    summary = _curve_summary()
    with pytest.raises(CryolibError, match="none of the sweep"):
        tl.length_curve(summary, {256: "w"})
    with pytest.raises(CryolibError, match="two training lengths"):
        tl.length_trend(tl.length_curve(summary, {4: "x"}))
    with pytest.raises(CryolibError, match="not in the curve"):
        tl.length_trend(tl.length_curve(summary, {4: "x", 16: "y"}), peer="nobody")


def test_curation_by_length_scores_notebook06s_probe_per_encoder(tmp_path):
    from test_curate_probe import make_tiny_checkpoint
    from test_studies_curation import build_tiny_set

    from cryolib.studies import draco_curation as dc
    data = build_tiny_set(tmp_path)
    ckpts = {8: make_tiny_checkpoint(tmp_path / "b", seed=1), 2: make_tiny_checkpoint(tmp_path / "a", seed=0)}
    table = tl.curation_by_length(data, ckpts)
    assert table["epochs"].tolist() == [2, 8] and table["method"].tolist() == [tl.length_label(2), tl.length_label(8)]
    for row, (_, ckpt) in zip(table.to_dict("records"), sorted(ckpts.items())):
        expected = dc.curation_metrics(ckpt, data)
        assert row["f1"] == pytest.approx(expected["f1"]) and row["accuracy"] == pytest.approx(expected["accuracy"])
        assert row["correct_good"] == pytest.approx(expected["per_class"].set_index("class").loc["good", "correct"])
    assert {f"correct_{c}" for c in ("good", "empty", "carbon_only")} <= set(table.columns)
    with pytest.raises(CryolibError, match="no DRACO checkpoints"):
        tl.curation_by_length(data, {})
