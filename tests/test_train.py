"""cryolib.training.loop (schedule, sampler, loop, checkpoints, resume, DDP), the dataset contract
(cryolib.training.data) and cryolib.processing.tiles."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn

import cryolib.training.loop as train_mod
from cryolib.cli import main as cli_main
from cryolib.training.data import TrainingDataset, batch_size_of
from cryolib.training.distributed import param_digest
from cryolib.core.errors import CryolibError
from cryolib.models.objectives import MAEObjective, OptimConfig, cryoemmae_objective, mae_objective
from cryolib.models.vit import get_config
from cryolib.processing.tiles import TileDataset, image_to_tiles, synthetic_blob_images, tile_stats, tiles_to_grid
from cryolib.training.loop import (
    CHECKPOINT_NAME,
    TrainConfig,
    load_checkpoint,
    load_model,
    lr_at,
    save_checkpoint,
    train,
)

SMALL = get_config("cpu-tiny", img_size=32, name="cpu-tiny-32")  # 8x8 patches: fast loop tests


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(scope="module")
def small_data() -> TileDataset:
    return TileDataset(synthetic_blob_images(4, 64, seed=1), tile_px=32)  # 16 tiles of 32 px


def fast_objective(model=SMALL, base_lr: float = 1e-2) -> MAEObjective:
    optim = OptimConfig(base_lr=base_lr, weight_decay=1e-5, betas=(0.9, 0.999), warmup_epochs=0, min_lr=1e-6)
    return MAEObjective(model, mask_ratio=0.5, norm_pix_loss=False, optim=optim, name="cryoemmae")


# --------------------------------------------------------------------------------------------- schedule, sampler


def test_lr_schedule_warmup_then_half_cosine():
    kw = dict(peak_lr=1e-3, warmup_steps=10, total_steps=110, min_lr=1e-6)
    assert lr_at(0, **kw) == 0.0
    assert lr_at(5, **kw) == pytest.approx(5e-4)
    assert lr_at(10, **kw) == pytest.approx(1e-3)  # end of warm-up: the peak
    assert lr_at(60, **kw) == pytest.approx((1e-3 + 1e-6) / 2)  # half-way down the cosine
    assert lr_at(110, **kw) == pytest.approx(1e-6)  # the end: min_lr
    assert lr_at(0, peak_lr=1e-3, warmup_steps=0, total_steps=10) == pytest.approx(1e-3)
    values = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


# --------------------------------------------------------------------------------------------- tiles


def test_tile_dataset_counts_standardisation_and_subsampling():
    images = [np.random.default_rng(i).normal(5.0, 2.0, (130, 200)).astype(np.float32) for i in range(3)]
    ds = TileDataset(images, tile_px=64)
    assert len(ds) == 3 * 2 * 3  # crop: 2 rows x 3 cols per image
    x = torch.stack([ds[i] for i in range(len(ds))])
    assert x.shape == (18, 1, 64, 64)
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1.0) < 1e-3
    assert ds.stats == {"mean": ds.mean, "std": ds.std, "tile_px": 64}
    assert (ds.mean, ds.std) == pytest.approx(tile_stats(images, 64))
    sub = TileDataset(images, 64, max_tiles_per_image=2, rng=np.random.default_rng(0))
    assert len(sub) == 6
    val = TileDataset(images[:1], 64, mean=ds.mean, std=ds.std)
    assert torch.equal(val[0], ds[0])
    with pytest.raises(CryolibError):
        TileDataset([np.zeros((32, 32), np.float32)], 64)
    with pytest.raises(CryolibError):
        TileDataset([np.zeros((2, 64, 64), np.float32)], 64)
    with pytest.raises(CryolibError):
        TileDataset(images, 64, mean=0.0)


def test_image_to_tiles_and_back():
    img = np.arange(130 * 200, dtype=np.float32).reshape(130, 200)
    tiles, grid = image_to_tiles(img, 64)
    assert grid == (2, 3) and tiles.shape == (6, 1, 64, 64)
    assert np.array_equal(tiles[4, 0], img[64:128, 64:128])  # row-major: tile 4 = row 1, col 1
    assert np.array_equal(tiles_to_grid(tiles[:, 0], grid), img[:128, :192])
    padded, pgrid = image_to_tiles(img, 64, mode="pad")
    assert pgrid == (3, 4)
    full = tiles_to_grid(padded[:, 0], pgrid)
    assert np.array_equal(full[:130, :200], img) and np.allclose(full[130:, :], img.mean())
    emb = torch.randn(6, 16, 16, 8)  # per-tile embeddings [n, h, w, D]
    out = tiles_to_grid(emb, grid)
    assert out.shape == (32, 48, 8) and torch.equal(out[16:, 16:32], emb[4])
    with pytest.raises(CryolibError):
        image_to_tiles(img, 64, mode="wrap")


# --------------------------------------------------------------------------------------------- the loop


def test_loss_decreases_on_structured_tiles():
    data = TileDataset(synthetic_blob_images(8, 128, seed=0), tile_px=64)  # 32 tiles of 64 px
    cfg = TrainConfig(epochs=10, batch_size=8, seed=0, log_every_steps=1, device="cpu")
    result = train(fast_objective(get_config("cpu-tiny")), data, cfg, progress=False)
    loss = result.history["loss"].to_numpy()
    assert len(loss) == 40
    assert loss[-10:].mean() < 0.8 * loss[:5].mean(), loss  # measured: ~0.63
    assert {"step", "epoch", "lr", "loss", "mse_masked", "images_per_s"} <= set(result.history.columns)


def test_same_seed_same_history_and_validation_per_epoch(small_data):
    cfg = TrainConfig(epochs=2, batch_size=4, seed=7, log_every_steps=1, device="cpu")
    a = train(fast_objective(), small_data, cfg, val_dataset=small_data, progress=False)
    b = train(fast_objective(), small_data, cfg, val_dataset=small_data, progress=False)
    assert a.history["loss"].tolist() == b.history["loss"].tolist()
    assert len(a.val_history) == 2 and a.val_history["val_loss"].notna().all()
    assert a.val_history["val_loss"].tolist() == b.val_history["val_loss"].tolist()
    c = train(fast_objective(), small_data, TrainConfig(**{**cfg.__dict__, "seed": 8}), progress=False)
    assert a.history["loss"].tolist() != c.history["loss"].tolist()


def test_resume_equals_uninterrupted(small_data, tmp_path):
    base = dict(epochs=3, batch_size=4, seed=3, log_every_steps=2, checkpoint_every_steps=3, device="cpu")
    full = train(fast_objective(), small_data, TrainConfig(**base, out_dir=tmp_path / "a", max_steps=11),
                 val_dataset=small_data, progress=False)
    first = train(fast_objective(), small_data, TrainConfig(**base, out_dir=tmp_path / "b", max_steps=5),
                  val_dataset=small_data, progress=False)
    assert load_checkpoint(first.checkpoint)["step"] == 5  # mid-epoch (4 steps per epoch)
    again = TrainConfig(**base, out_dir=tmp_path / "b", max_steps=11, resume=True)
    resumed = train(fast_objective(), small_data, again, val_dataset=small_data, progress=False)
    for (name, p), q in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name
    cols = ["step", "epoch", "lr", "loss"]
    assert full.history[cols].equals(resumed.history[cols])
    assert full.val_history.equals(resumed.val_history)
    log_a = (tmp_path / "a" / "train_log.csv").read_text().splitlines()
    log_b = (tmp_path / "b" / "train_log.csv").read_text().splitlines()
    assert len(log_a) == len(log_b) == 1 + 5  # header + rows at steps 2, 4, 6, 8, 10
    assert [r.split(",")[:4] for r in log_a] == [r.split(",")[:4] for r in log_b]


def test_checkpoint_contents_and_load_model(small_data, tmp_path):
    res = train(fast_objective(), small_data, TrainConfig(epochs=1, batch_size=8, out_dir=tmp_path, device="cpu"),
                progress=False)
    ckpt = load_checkpoint(res.checkpoint)
    assert res.checkpoint == tmp_path / CHECKPOINT_NAME
    for key in ("model", "optimizer", "scaler", "epoch", "step", "rng", "sampler", "objective", "model_config"):
        assert key in ckpt
    assert ckpt["objective"] == "cryoemmae" and ckpt["model_config"]["name"] == "cpu-tiny-32"
    assert ckpt["data_stats"] == small_data.stats and ckpt["step"] == 2
    model, _ = load_model(res.checkpoint)
    x = small_data[0][None]
    assert torch.equal(model.embed(x), res.model.eval().embed(x))


def test_checkpoint_is_never_half_written(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"format": train_mod.CHECKPOINT_FORMAT, "step": 1})

    def dying_save(obj, f, *a, **k):
        Path(f).write_bytes(b"PK\x03\x04 half")  # a partial zip, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"format": train_mod.CHECKPOINT_FORMAT, "step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary left behind
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04 half")
    with pytest.raises(CryolibError, match="truncated"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(CryolibError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_incompatible_checkpoint_raises(small_data, tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=8, out_dir=tmp_path, device="cpu")
    train(fast_objective(), small_data, cfg, progress=False)
    resume = TrainConfig(**{**cfg.__dict__, "resume": True})
    with pytest.raises(CryolibError, match="objective 'cryoemmae', not 'mae'"):
        train(mae_objective(SMALL), small_data, resume, progress=False)
    with pytest.raises(CryolibError, match="model 'cpu-tiny-32'.*depth"):
        train(fast_objective(get_config(SMALL, depth=3)), small_data, resume, progress=False)
    with pytest.raises(CryolibError, match="objective"):
        load_model(tmp_path / CHECKPOINT_NAME, objective=mae_objective(SMALL))
    with pytest.raises(CryolibError, match="batch size"):
        train(fast_objective(), small_data, TrainConfig(**{**resume.__dict__, "batch_size": 4}), progress=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, out: str, port: int) -> None:
    """One rank, with the environment torchrun would set; runs `cryolib pretrain --synthetic`."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    argv = ["pretrain", "--objective", "cryoemmae", "--model", "cpu-tiny", "--synthetic", "4", "--profile", "smoke",
            "--batch-size", "4", "--epochs", "2", "--max-steps", "3", "--device", "cpu", "--out", out]
    if cli_main(argv) != 0:
        raise RuntimeError(f"rank {rank} failed")


def test_ddp_two_gloo_processes_agree(tmp_path):
    """2 gloo processes (forked, so torch is not re-imported; `torchrun` sets the same variables)."""
    out = tmp_path / "ddp"
    mp.start_processes(_ddp_worker, args=(str(out), _free_port()), nprocs=2, start_method="fork")
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT_NAME, "run.yaml", "train_log.csv"]  # rank 0 only
    ckpt = load_checkpoint(out / CHECKPOINT_NAME)
    assert ckpt["world_size"] == 2 and ckpt["step"] == 3 and len(ckpt["rng"]) == 2
    digests = ckpt["rank_param_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    model, _ = load_model(out / CHECKPOINT_NAME)
    assert param_digest(model) == digests[0]
    assert ckpt["steps_per_epoch"] == 2  # 16 tiles / 2 ranks / batch 4
    assert ckpt["rng"][0]["torch"].ne(ckpt["rng"][1]["torch"]).any()  # ranks draw different masks
    assert [row["samples"] for row in ckpt["history"]] == [8, 8, 8]  # 2 ranks x batch 4, every step logged


# --------------------------------------------------------------------------------------------- dataset contract


def test_batch_size_of_tensor_tuple_and_dict():
    x = torch.zeros(5, 1, 8, 8)
    assert batch_size_of(x) == 5
    assert batch_size_of((x, torch.arange(5))) == 5
    assert batch_size_of([x, "names", 3]) == 5  # non-tensor items are ignored
    assert batch_size_of({"full": x[:2], "odd": x[:2], "even": x[:2]}) == 2
    with pytest.raises(CryolibError, match="disagree"):
        batch_size_of({"full": x, "odd": x[:4]})
    with pytest.raises(CryolibError, match="disagree"):
        batch_size_of((x, torch.zeros(3)))
    with pytest.raises(CryolibError, match="0-d"):
        batch_size_of({"x": torch.tensor(1.0)})
    with pytest.raises(CryolibError, match="holds no tensor"):
        batch_size_of({"name": "a"})
    with pytest.raises(CryolibError, match="must be a tensor"):
        batch_size_of(np.zeros((3, 2)))


class DictTiles:
    """Tiles as ``{"x": tile}`` samples (the shape of DRACO's batches)."""

    def __init__(self, tiles: TileDataset):
        self.tiles = tiles

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.tiles[i]}

    @property
    def stats(self) -> dict:
        return {**self.tiles.stats, "wrapped": "dict"}


class ConvObjective:
    """A trivial objective on dict batches: a 1x1 convolution trained to output zeros."""

    name = "dict-toy"

    def build_model(self) -> nn.Module:
        return nn.Conv2d(1, 1, 1)

    def loss(self, model, batch):
        loss = model(batch["x"]).pow(2).mean()
        return loss, {"out_sq": float(loss.detach())}

    def optimizer_config(self) -> OptimConfig:
        return OptimConfig(base_lr=1e-2, weight_decay=0.0)

    def describe(self) -> dict:
        return {"name": self.name, "model_config": {"name": "conv1x1"}}


def test_loop_counts_dict_batches_by_samples(small_data, tmp_path):
    data = DictTiles(small_data)  # 16 samples
    assert isinstance(data, TrainingDataset)
    cfg = TrainConfig(epochs=1, batch_size=4, log_every_steps=2, out_dir=tmp_path, device="cpu")
    res = train(ConvObjective(), data, cfg, val_dataset=DictTiles(small_data), progress=False)
    assert res.history["step"].tolist() == [2, 4]
    assert res.history["samples"].tolist() == [8, 8]  # 2 steps x 4 samples, not 2 x 1 key
    assert (res.history["images_per_s"] > 0).all()
    logged = pd.read_csv(tmp_path / "train_log.csv")
    assert logged["samples"].tolist() == [8, 8]
    ckpt = load_checkpoint(res.checkpoint)
    assert ckpt["data_stats"] == data.stats and ckpt["objective"] == "dict-toy"
    with torch.no_grad():  # the validation loss is the sample-weighted mean over the val set
        expected = float(torch.stack([res.model(s["x"][None]).pow(2).mean() for s in data]).mean())
    assert res.val_history["val_loss"].iloc[-1] == pytest.approx(expected, rel=1e-5)


def test_dataset_without_stats_is_refused(small_data):
    plain = torch.utils.data.TensorDataset(torch.zeros(8, 1, 32, 32))
    with pytest.raises(CryolibError, match="lacks stats"):
        train(ConvObjective(), plain, TrainConfig(epochs=1, batch_size=4, device="cpu"), progress=False)
