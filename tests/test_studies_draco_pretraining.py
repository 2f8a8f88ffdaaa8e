"""cryolib.studies.draco_pretraining: the checkpoint layout notebooks 05/06/08 rely on, warm-up + DRACO that
lowers both loss terms and resumes without retraining, the ablation runs, Figure 2, and shipping
(load_model of the shipped file denoises exactly as the trained model; size limit; nothing written on error)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from cryolib import CryolibError
from cryolib.core import profiles
from cryolib.io.datasets import datasets_with_role
from cryolib.io.micrographs import write_mrc
from cryolib.models.draco import denoise_tiles
from cryolib.studies import draco_pretraining as dp
from cryolib.training.checkpoint import load_checkpoint, load_model

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

N_MICROGRAPHS = 3  # per analog: 2 train, 1 val
SIZE_PX = 256  # one smoke crop (draco-tiny: 256 px, patch 16)


def _write_triplet_folder(root, name: str, seed: int) -> None:
    """A tiny CryoPPP-layout folder of Poisson counts: blobs of lower dose, odd + even = full exactly."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE_PX, 0:SIZE_PX]
    splits = ["train", "train", "val"]
    for i in range(N_MICROGRAPHS):
        signal = np.zeros((SIZE_PX, SIZE_PX))
        for cx, cy in rng.uniform(20, SIZE_PX - 20, size=(14, 2)):
            signal += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 8.0**2))
        rate = 40.0 * (1.0 - 0.6 * np.clip(signal, 0, 1))  # e-/px per half
        odd, even = rng.poisson(rate).astype(np.float32), rng.poisson(rate).astype(np.float32)
        stem = f"{name}_{i:04d}"
        for kind, image in (("micrographs", odd + even), ("movies/full", odd + even), ("movies/odd", odd),
                            ("movies/even", even)):
            write_mrc(root / kind / f"{stem}.mrc", image, 4.0)
    pd.DataFrame({"micrograph": [f"{name}_{i:04d}" for i in range(N_MICROGRAPHS)], "split": splits}).to_csv(
        root / "metadata.csv", index=False)
    (root / "dataset.yaml").write_text(yaml.safe_dump({"name": name, "diameter_px": 16.0, "pixel_size_A": 4.0}))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("draco_data")
    for k, name in enumerate(datasets_with_role(profiles.get_profile("smoke").draco.pretrain_role)):
        _write_triplet_folder(root / "smoke" / name, name, seed=k)
    return root


@pytest.fixture(scope="module")
def fast_smoke():
    """The smoke profile with more DRACO epochs and a larger lr, so that 6 epochs show the losses fall."""
    old = profiles.PROFILES["smoke"]
    draco = dataclasses.replace(old.draco, epochs=6, base_lr=0.05, lr_warmup_epochs=1)
    profiles.PROFILES["smoke"] = dataclasses.replace(old, draco=draco)
    yield profiles.PROFILES["smoke"]
    profiles.PROFILES["smoke"] = old


@pytest.fixture(scope="module")
def runs(data_root, fast_smoke, tmp_path_factory):
    runs_root = tmp_path_factory.mktemp("draco_runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ckpts = dp.pretrain_draco("smoke", data_root, runs_root, seed=0, progress=False)
    finally:
        torch.set_num_threads(threads)
    return runs_root, ckpts


def _log_rows(ckpt) -> int:
    return len(pd.read_csv(ckpt.parent / "train_log.csv"))


def test_checkpoint_layout(tmp_path):
    paths = dp.draco_checkpoints("smoke", tmp_path)
    assert list(paths) == ["mae", "draco-b", "draco-l"]
    for key, path in paths.items():
        assert path == tmp_path / "smoke" / "draco" / key / "checkpoint.pt"
    with pytest.raises(CryolibError, match="unknown profile"):
        dp.draco_checkpoints("huge", tmp_path)


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(CryolibError, match="simulate them first"):
        dp.pretrain_draco("smoke", tmp_path / "nothing", tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs" / "smoke" / "draco").exists()


def test_pretrain_draco_writes_the_layout_and_warms_up_first(runs, fast_smoke):
    runs_root, ckpts = runs
    assert ckpts == dp.draco_checkpoints("smoke", runs_root)
    sizes = fast_smoke.draco
    warm = runs_root / "smoke" / "draco" / f"warmup_{sizes.model_b}_{sizes.warmup_epochs}ep" / "checkpoint.pt"
    for key in ("draco-b", "draco-l"):
        ckpt = load_checkpoint(ckpts[key])
        assert ckpt["objective"] == "draco" and ckpt["epoch"] == sizes.epochs
        assert ckpt["objective_config"]["init_from"] == str(warm)
        assert ckpt["objective_config"]["optim"]["base_lr"] == sizes.base_lr
    mae = load_checkpoint(ckpts["mae"])
    assert mae["objective"] == "mae" and mae["epoch"] == sizes.warmup_epochs + sizes.epochs
    assert load_checkpoint(warm)["epoch"] == sizes.warmup_epochs
    assert mae["data_stats"] == load_checkpoint(ckpts["draco-b"])["data_stats"]  # same tiles, same units


def test_draco_lowers_both_loss_terms(runs):
    curves = dp.training_curves(runs[1])
    for term in ("loss_n2n", "loss_recon"):
        t = curves[(curves["run"] == "draco-b") & (curves["term"] == term)].sort_values("step")
        assert len(t) >= 5
        # measured: L_N2N 1.76 -> 1.51 and L_recon 1.33 -> 1.05 (first two vs last two log rows)
        assert t["value"].iloc[-2:].mean() < 0.9 * t["value"].iloc[:2].mean(), (term, t["value"].tolist())
    claims = dp.pretraining_claims(curves, dp.throughput_table(runs[1]))
    falls = claims[claims["claim"].str.contains("falls")]
    assert len(falls) == 4 and falls["holds"].all()


def test_rerun_reuses_finished_checkpoints(runs, data_root):
    runs_root, ckpts = runs
    rows = {key: _log_rows(path) for key, path in ckpts.items()}
    steps = {key: load_checkpoint(path)["step"] for key, path in ckpts.items()}
    again = dp.pretrain_draco("smoke", data_root, runs_root, seed=0, progress=False)
    assert again == ckpts
    assert {key: _log_rows(path) for key, path in again.items()} == rows
    assert {key: load_checkpoint(path)["step"] for key, path in again.items()} == steps


def test_throughput_table_and_metrics(runs):
    table = dp.throughput_table(runs[1])
    assert set(table["run"]) >= {"mae", "draco-b", "draco-l"} and (table["stage"] == "MAE warm-up").sum() == 1
    assert (table["tiles_per_s"] > 0).all() and (table["steps"] >= 1).all()
    assert {"paper_epochs", "paper_hours", "paper_crops_per_s"} <= set(table.columns)
    assert table.loc[table["stage"] == "DRACO", "paper_epochs"].eq(400).all()
    metrics = dp.pretraining_metrics(table, dp.pretraining_claims(dp.training_curves(runs[1]), table))
    assert metrics["runs"]["draco-b"]["final_loss_n2n"] > 0 and metrics["runs"]["mae"]["final_loss_n2n"] is None


def test_shipping_checkpoint_is_draco_b_or_the_longer_run_it_names(runs, data_root, fast_smoke):
    runs_root, ckpts = runs
    assert fast_smoke.draco.shipped_epochs is None  # smoke ships its own DRACO-B: nothing new is trained
    assert dp.shipping_checkpoint("smoke", data_root, runs_root, progress=False) == ckpts["draco-b"]
    longer = dataclasses.replace(fast_smoke.draco, shipped_epochs=fast_smoke.draco.epochs + 2)
    profiles.PROFILES["smoke"] = dataclasses.replace(fast_smoke, draco=longer)
    try:
        ship = dp.shipping_checkpoint("smoke", data_root, runs_root, progress=False)
        again = dp.shipping_checkpoint("smoke", data_root, runs_root, progress=False)  # a finished run is reused
    finally:
        profiles.PROFILES["smoke"] = fast_smoke
    draco = runs_root / "smoke" / "draco"
    assert ship == again == dp.length_run_dir(draco, longer.shipped_epochs) / "checkpoint.pt"
    ckpt = load_checkpoint(ship)
    assert ckpt["epoch"] == longer.shipped_epochs
    assert ckpt["objective_config"]["init_from"] == str(dp.warmup_run_dir(draco, longer, longer.model_b) /
                                                       "checkpoint.pt")  # notebook 04's warm-up, not a new one
    table = dp.throughput_table(ckpts, ship)
    row = table[table["run"] == f"shipped ({ship.parent.name})"]
    assert len(row) == 1 and int(row["epochs"].iloc[0]) == longer.shipped_epochs
    assert len(dp.throughput_table(ckpts, ckpts["draco-b"])) == len(dp.throughput_table(ckpts))  # no double row


def test_shipped_epochs_must_be_a_positive_count(fast_smoke):
    for bad in (0, -4, 2.5, True):
        with pytest.raises(CryolibError, match="shipped_epochs"):
            dataclasses.replace(fast_smoke.draco, shipped_epochs=bad)
    assert profiles.get_profile("default").draco.shipped_epochs == 1024


def test_figure2_example(runs, data_root, fast_smoke):
    _, val = dp.pretraining_triplets(dp.pretraining_datasets("smoke", data_root), fast_smoke.draco)
    ex = dp.figure2_example(runs[1]["draco-b"], val, index=0, seed=3)
    code = ex["mask_code"][::16, ::16]  # one value per 16 px patch
    k = 256 // 4  # visible patches per half at γ = 0.75 on a 16 x 16 grid
    assert (code == 1).sum() == k and (code == 2).sum() == k and (code == 0).sum() == 256 - 2 * k
    odd_visible = ex["mask_code"] == 1
    np.testing.assert_array_equal(ex["n2n_target"][odd_visible], ex["even"][odd_visible])
    np.testing.assert_array_equal(ex["recon_target"][ex["mask_code"] == 0], ex["full"][ex["mask_code"] == 0])
    assert np.isnan(ex["odd_visible"][~odd_visible]).all()
    assert np.isfinite(ex["prediction"]).all() and ex["denoised"].shape == (256, 256)


def test_ablations_share_one_warm_up(runs, data_root):
    runs_root, _ = runs
    ckpts = dp.pretrain_draco_ablations("smoke", data_root, runs_root, seed=0, progress=False)
    assert tuple(ckpts) == dp.ABLATIONS
    configs = {name: load_checkpoint(path)["objective_config"] for name, path in ckpts.items()}
    assert [configs[f"mask{g:g}"]["mask_ratio"] for g in (0.5, 0.625, 0.75, 0.875)] == [0.5, 0.625, 0.75, 0.875]
    assert configs["no-n2n"]["n2n"] is False and configs["no-recon"]["recon"] is False
    assert len({c["init_from"] for c in configs.values()}) == 1
    assert ckpts["no-n2n"].parent.name == "ablation_no-n2n"


def _denoise(path, tiles, stats):
    model, _ = load_model(path)
    return denoise_tiles(model, tiles, stats["mean"], stats["std"])


def test_ship_round_trip_fp32_and_fp16(runs, tmp_path):
    source = runs[1]["draco-b"]
    stats = load_checkpoint(source)["data_stats"]
    tiles = torch.randn(2, 1, 256, 256) * stats["std"] + stats["mean"]
    reference = _denoise(source, tiles, stats)
    out32 = dp.ship_draco(source, tmp_path / "fp32", dtype="float32", profile="smoke", data=["sim-x"])
    assert torch.equal(_denoise(out32["checkpoint"], tiles, stats), reference)
    shipped = load_checkpoint(out32["checkpoint"])
    assert "optimizer" not in shipped and "rng" not in shipped and shipped["weights_dtype"] == "float32"
    assert out32["checkpoint"].stat().st_size < 0.6 * source.stat().st_size  # the optimiser moments are gone
    out16 = dp.ship_draco(source, tmp_path / "fp16", dtype="float16")
    assert out16["checkpoint"].stat().st_size < 0.6 * out32["checkpoint"].stat().st_size
    half = _denoise(out16["checkpoint"], tiles, stats)
    assert not torch.equal(half, reference) and torch.allclose(half, reference, atol=0.05 * stats["std"])
    card = out32["card"].read_text()
    assert "draco_default.pt" in card and "`smoke`" in card and "sim-x" in card and "commit" in card


def test_ship_install_and_errors(runs, tmp_path):
    table = dp.throughput_table(runs[1])
    assets = tmp_path / "assets"
    out = dp.ship_draco(runs[1]["draco-b"], tmp_path / "out", install=True, measured=table, assets_dir=assets)
    assert out["installed"] == assets / "draco_default.pt" and (assets / "draco_default.md").is_file()
    assert (assets / "draco_default.pt").read_bytes() == out["checkpoint"].read_bytes()
    assert dp.ship_draco.__module__.endswith("draco_shipping")
    from cryolib.studies.draco_shipping import shipped_draco

    assert shipped_draco(assets) == assets / "draco_default.pt"
    notes = dp.denoiser_notes(1024, 64)
    den = dp.ship_draco(runs[1]["draco-b"], tmp_path / "out", install=True, name=dp.DENOISER_NAME, notes=notes,
                        assets_dir=assets)
    assert den["installed"] == assets / "draco_denoiser.pt" and den["checkpoint"].name == "draco_denoiser.pt"
    card = (assets / "draco_denoiser.md").read_text()
    assert "`draco_denoiser.pt`" in card and "1024 DRACO epochs" in card and "trained for 64" in card
    assert (assets / "draco_default.pt").read_bytes() == out["checkpoint"].read_bytes()  # the backbone is untouched
    assert "same run as the backbone" in dp.denoiser_notes(64, 64)
    from cryolib.denoise.networks import SHIPPED_DRACO
    assert SHIPPED_DRACO.name == "draco_denoiser.pt"  # what `cryolib denoise` uses
    with pytest.raises(CryolibError, match="does not exist yet"):
        shipped_draco(tmp_path / "empty")
    with pytest.raises(CryolibError, match="not DRACO"):
        dp.ship_draco(runs[1]["mae"], tmp_path / "bad")
    with pytest.raises(CryolibError, match="over 0.1 MB"):
        dp.ship_draco(runs[1]["draco-b"], tmp_path / "bad", max_mb=0.1)
    with pytest.raises(CryolibError, match="dtype"):
        dp.ship_draco(runs[1]["draco-b"], tmp_path / "bad", dtype="int8")
    assert not (tmp_path / "bad").exists()
