"""cryolib.denoise: the registry, the tiled DRACO/MAE inference (any size, seamless, dtype-safe)
and the shipped-checkpoint error. ``tiny_checkpoint`` is reused by tests/test_cmd_denoise.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cryolib.core.errors import CryolibError
from cryolib.denoise import denoise_micrograph, denoiser_names, get_denoiser
from cryolib.denoise import networks
from cryolib.denoise.tiled import blend_window, denoise_image_tiled, denoise_shifted, denoise_tiled, tile_layout
from cryolib.models.draco import draco_objective
from cryolib.models.objectives import OptimConfig, mae_objective
from cryolib.models.vit import get_config
from cryolib.processing.triplets import TripletDataset
from cryolib.training.loop import TrainConfig, train

TINY = get_config("draco-tiny", img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                  decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, name="draco-test-32")
FAST = OptimConfig(base_lr=1e-3, weight_decay=0.0, betas=(0.9, 0.95), warmup_epochs=0, min_lr=0.0)


def tiny_checkpoint(out_dir: Path, kind: str = "draco") -> Path:
    """A one-step DRACO (or MAE) checkpoint of a 32 px model on random Poisson triplets."""
    rng = np.random.default_rng(0)
    odd = [rng.poisson(5.0, (64, 64)).astype(np.float32) for _ in range(2)]
    even = [rng.poisson(5.0, (64, 64)).astype(np.float32) for _ in range(2)]
    data = TripletDataset([o + e for o, e in zip(odd, even)], odd, even, tile_px=32)
    objective = draco_objective(TINY, optim=FAST) if kind == "draco" else mae_objective(TINY)
    dataset = data if kind == "draco" else data.full_view()
    cfg = TrainConfig(epochs=1, batch_size=4, max_steps=1, device="cpu", out_dir=out_dir, log_every_steps=1)
    return train(objective, dataset, cfg, progress=False).checkpoint


@pytest.fixture(scope="module")
def draco_ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("draco"), "draco")


@pytest.fixture(scope="module")
def mae_ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("mae"), "mae")


def test_registry_names_and_unknown():
    assert set(denoiser_names()) == {"draco", "mae", "topaz", "lowpass", "gaussian", "blockmean"}
    assert {"gaussian", "blockmean"}.isdisjoint(denoiser_names(command_line=True))
    with pytest.raises(CryolibError, match="unknown denoising method 'bm3d'"):
        get_denoiser("bm3d")
    with pytest.raises(CryolibError, match="takes no option"):
        denoise_micrograph("lowpass", np.zeros((8, 8)), 1.0, sigma=3)


def test_blend_window_partition_of_unity_at_half_overlap():
    w = np.sqrt(np.diag(blend_window(16)))  # the 1-D window
    assert (w > 0).all()
    np.testing.assert_allclose(w[:8] + w[8:], 1.0, atol=1e-6)  # sin² + cos² = 1
    before, after, starts = tile_layout(50, 16, 8)
    assert before == 8 and (starts[-1] + 16) == before + 50 + after and after >= 8


@pytest.mark.parametrize("shape", [(257, 391), (5, 3), (32, 32), (1, 40)])
def test_identity_network_is_seamless_on_a_ramp(shape):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    ramp = (0.25 * xx - 0.5 * yy + 3.0).astype(np.float32)
    out = denoise_image_tiled(ramp, lambda t: t, 32, clip=False)
    assert out.shape == ramp.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ramp, atol=1e-4)
    if min(shape) > 2:  # no tile edge: the second difference of a ramp stays 0 everywhere
        assert np.abs(np.diff(out, 2, axis=0)).max() < 1e-3 and np.abs(np.diff(out, 2, axis=1)).max() < 1e-3


def test_seams_would_show_without_blending():
    """The seam check can fail: a network that adds a tile-position-dependent offset leaves steps at
    tile edges when tiles do not overlap, and none when blended."""
    ramp = np.tile(np.arange(128, dtype=np.float32), (64, 1))
    bump = lambda t: t + torch.linspace(-1, 1, t.shape[-1])  # noqa: E731  (an edge-dependent error)
    hard = denoise_tiled(ramp, bump, 32, overlap=0.0)
    soft = denoise_tiled(ramp, bump, 32, overlap=0.5)
    assert np.abs(np.diff(hard, 2, axis=1)).max() > 1.0
    assert np.abs(np.diff(soft, 2, axis=1)).max() < 0.2


def _block_mean(tiles: torch.Tensor, patch: int = 16) -> torch.Tensor:
    """A network whose output is the mean of each patch: the worst case of a patch mosaic."""
    return torch.nn.functional.avg_pool2d(tiles, patch).repeat_interleave(patch, -1).repeat_interleave(patch, -2)


def test_shift_ensemble_halves_the_patch_grid_steps_and_keeps_identity():
    ramp = np.tile(np.arange(256, dtype=np.float32), (96, 1))  # slope 1 px⁻¹ along x
    one = denoise_shifted(ramp, _block_mean, 64, (0,))
    two = denoise_shifted(ramp, _block_mean, 64, (0, 8))
    inner = (slice(32, -32), slice(32, -32))  # away from the reflected borders
    # one pass: a staircase with 16 px steps of height 16; two offsets: 8 px steps of height 8
    assert np.abs(np.diff(one[inner], axis=1)).max() == pytest.approx(16.0, abs=1e-3)
    assert np.abs(np.diff(two[inner], axis=1)).max() == pytest.approx(8.0, abs=1e-3)
    assert np.abs(two[inner] - ramp[inner]).mean() < np.abs(one[inner] - ramp[inner]).mean()
    np.testing.assert_allclose(denoise_shifted(ramp, lambda t: t, 64, (0, 3, 8)), ramp, atol=1e-4)
    assert denoise_shifted(ramp[:5, :7], lambda t: t, 64, (0, 8)).shape == (5, 7)
    with pytest.raises(CryolibError, match="offsets"):
        denoise_shifted(ramp, lambda t: t, 64, (0, 64))


def test_shift_offsets_and_the_draco_option(draco_ckpt):
    assert networks.shift_offsets(16, 1) == [0] and networks.shift_offsets(16, 2) == [0, 8]
    assert networks.shift_offsets(16, 3) == [0, 5, 11]
    for bad in (0, 17, 1.5, True):
        with pytest.raises(CryolibError, match="shifts"):
            networks.shift_offsets(16, bad)
    image = np.random.default_rng(2).normal(100.0, 10.0, (40, 50)).astype(np.float32)
    out = denoise_micrograph("draco", image, checkpoint=draco_ckpt, shifts=2)
    assert out.shape == image.shape and np.isfinite(out).all()
    with pytest.raises(CryolibError, match="shifts"):
        denoise_micrograph("draco", image, checkpoint=draco_ckpt, shifts=0)


def test_draco_keeps_shape_dtype_and_constant(draco_ckpt):
    rng = np.random.default_rng(1)
    image = rng.normal(100.0, 10.0, (57, 91))
    for dtype in (np.float32, np.float16, np.int16):
        x = image.astype(dtype)
        out = denoise_micrograph("draco", x, 1.5, checkpoint=draco_ckpt)
        assert out.shape == x.shape and out.dtype == x.dtype and np.isfinite(out.astype(np.float64)).all()
        assert abs(float(out.astype(np.float64).mean()) - float(x.astype(np.float64).mean())) < 10.0  # input's units
    flat = np.full((40, 33), 7.5, np.float32)
    np.testing.assert_array_equal(denoise_micrograph("draco", flat, checkpoint=draco_ckpt), flat)
    flat16 = np.full((9, 70), -3, np.int16)
    np.testing.assert_array_equal(denoise_micrograph("draco", flat16, checkpoint=draco_ckpt), flat16)


def test_mae_denoiser_and_wrong_kind(draco_ckpt, mae_ckpt):
    x = np.random.default_rng(3).normal(0.0, 1.0, (45, 70)).astype(np.float32)
    out = denoise_micrograph("mae", x, checkpoint=mae_ckpt)
    assert out.shape == x.shape and np.isfinite(out).all()
    with pytest.raises(CryolibError, match="use the draco method"):
        denoise_micrograph("mae", x, checkpoint=draco_ckpt)
    with pytest.raises(CryolibError, match="use the mae method"):
        denoise_micrograph("draco", x, checkpoint=mae_ckpt)
    with pytest.raises(CryolibError, match="needs a checkpoint"):
        denoise_micrograph("mae", x)


def test_checkpoint_stats_option(draco_ckpt):
    x = np.random.default_rng(4).normal(10.0, 3.0, (40, 40)).astype(np.float32)
    a = denoise_micrograph("draco", x, checkpoint=draco_ckpt, stats="checkpoint")
    b = denoise_micrograph("draco", x, checkpoint=draco_ckpt, stats="micrograph")
    assert a.shape == b.shape and not np.allclose(a, b)
    with pytest.raises(CryolibError, match="stats must be"):
        denoise_micrograph("draco", x, checkpoint=draco_ckpt, stats="dataset")


def test_missing_shipped_checkpoint_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(networks, "SHIPPED_DRACO", tmp_path / "draco_denoiser.pt")
    with pytest.raises(CryolibError, match="shipped DRACO denoiser .* is not installed"):
        denoise_micrograph("draco", np.zeros((8, 8), np.float32) + np.arange(8))


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CryolibError, match="bad.pt"):
        denoise_micrograph("draco", np.ones((8, 8)), checkpoint=bad)


def test_bad_images():
    with pytest.raises(CryolibError, match="2-D"):
        denoise_micrograph("lowpass", np.zeros((2, 8, 8)), 1.0)
    with pytest.raises(CryolibError, match="NaN"):
        denoise_micrograph("lowpass", np.full((8, 8), np.nan), 1.0)
    with pytest.raises(CryolibError, match="needs the pixel size"):
        denoise_micrograph("lowpass", np.zeros((8, 8)), 0.0)
