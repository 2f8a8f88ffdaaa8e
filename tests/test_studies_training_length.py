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
from cryolib.studies.plots_denoising import frc_figure
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
