"""cryolib.models.draco and draco_masks: DRACO masking (§4), Eq. 6 merge, Eq. 8–10 loss, training, warm-up."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from cryolib.core.errors import CryolibError
from cryolib.models.draco import (
    DracoModel,
    DracoNeck,
    DracoObjective,
    DracoOutput,
    denoise_tiles,
    draco_loss,
    draco_objective,
    init_from_mae,
)
from cryolib.models.draco_masks import complementary_masking, merge_latents, scatter_to_grid, visible_per_half
from cryolib.models.objectives import MAEObjective, Objective, OptimConfig
from cryolib.models.vit import get_config, patchify
from cryolib.processing.tiles import synthetic_blob_images
from cryolib.processing.triplets import TripletDataset
from cryolib.training.loop import TrainConfig, load_checkpoint, train

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

TINY = get_config("draco-tiny", img_size=32, patch_size=4, name="draco-tiny-32")  # 8x8 = 64 patches
FAST = OptimConfig(base_lr=1e-2, weight_decay=1e-4, betas=(0.9, 0.95), warmup_epochs=0, min_lr=1e-5)


def blob_triplets(n: int = 4, size: int = 64, dose: float = 10.0, seed: int = 0):
    """Clean blobs, independent Poisson odd/even halves, full = odd + even (counts); and the clean dose map."""
    rng = np.random.default_rng(seed)
    clean = [dose * (1.0 + 2.0 * c) for c in synthetic_blob_images(n, size, seed=seed, n_blobs=10, noise=0.0)]
    odd = [rng.poisson(c / 2).astype(np.float32) for c in clean]
    even = [rng.poisson(c / 2).astype(np.float32) for c in clean]
    return [o + e for o, e in zip(odd, even)], odd, even, clean


@pytest.fixture(scope="module")
def triplets() -> TripletDataset:
    full, odd, even, _ = blob_triplets()
    return TripletDataset(full, odd, even, tile_px=32)  # 16 triplets of 32 px


# --------------------------------------------------------------------------------------------- masking


@pytest.mark.parametrize("gamma", [0.5, 0.625, 0.75, 0.875])
@pytest.mark.parametrize("length", [64, 256])
def test_masks_are_disjoint_with_the_right_visible_fraction(gamma, length):
    n = 6
    masks = complementary_masking(n, length, gamma, generator=torch.Generator().manual_seed(1))
    k = round(length * (1 - gamma))
    assert masks.ids_odd.shape == masks.ids_even.shape == (n, k)
    assert masks.mask_odd.shape == masks.mask_even.shape == (n, length)
    vis_odd, vis_even = 1 - masks.mask_odd, 1 - masks.mask_even
    assert torch.equal(vis_odd.sum(1), torch.full((n,), float(k)))  # visible fraction 1 − γ per image
    assert torch.equal(vis_even.sum(1), torch.full((n,), float(k)))
    assert float((vis_odd * vis_even).sum()) == 0.0  # no patch visible in both
    assert torch.equal((masks.mask_odd * masks.mask_even).sum(1), torch.full((n,), float(length - 2 * k)))
    for i in range(n):  # ids and masks agree
        assert torch.equal(torch.sort(masks.ids_odd[i]).values, torch.nonzero(vis_odd[i]).flatten())
        assert torch.equal(torch.sort(masks.ids_even[i]).values, torch.nonzero(vis_even[i]).flatten())
    assert not torch.equal(masks.mask_odd[0], masks.mask_odd[1])  # a fresh permutation per sample


def test_masking_is_seeded_and_rejects_low_ratios():
    a = complementary_masking(3, 64, 0.75, generator=torch.Generator().manual_seed(5))
    b = complementary_masking(3, 64, 0.75, generator=torch.Generator().manual_seed(5))
    c = complementary_masking(3, 64, 0.75, generator=torch.Generator().manual_seed(6))
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not torch.equal(a.mask_odd, c.mask_odd)
    for bad in (0.4, 1.0, -0.1):
        with pytest.raises(CryolibError, match="0.5"):
            complementary_masking(2, 64, bad)
    assert visible_per_half(9, 0.5) == 4  # odd L: halves stay disjoint
    with pytest.raises(CryolibError, match="0.5"):
        draco_objective(TINY, mask_ratio=0.3)


# --------------------------------------------------------------------------------------------- Eq. 5-6 merge


def test_merge_latents_follows_eq6_on_hand_built_latents():
    # patch 0 visible in odd, patch 1 visible in even, patches 2 and 3 masked in both
    z_odd = scatter_to_grid(torch.tensor([[[1.0, 2.0]]]), torch.tensor([[0]]), 4)
    z_even = scatter_to_grid(torch.tensor([[[3.0, 4.0]]]), torch.tensor([[1]]), 4)
    assert torch.equal(z_odd, torch.tensor([[[1.0, 2.0], [0, 0], [0, 0], [0, 0]]]))  # Eq. 5 zero padding
    mask_odd, mask_even = torch.tensor([[0.0, 1, 1, 1]]), torch.tensor([[1.0, 0, 1, 1]])
    z = merge_latents(z_odd, z_even, mask_odd, mask_even, torch.tensor([9.0, -9.0]))
    assert torch.equal(z, torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, -9.0], [9.0, -9.0]]]))
    # Eq. 6 literally: a patch's own latent is weighted by (1 − m) of its image only
    z2 = merge_latents(torch.ones(1, 4, 2), 2 * torch.ones(1, 4, 2), mask_odd, mask_even, torch.zeros(2))
    assert torch.equal(z2[0, :, 0], torch.tensor([1.0, 2.0, 0.0, 0.0]))
    with pytest.raises(CryolibError):
        merge_latents(z_odd, z_even[:, :3], mask_odd, mask_even, torch.zeros(2))


def test_model_decoder_input_is_the_eq6_merge(monkeypatch):
    torch.manual_seed(0)
    model = DracoModel(TINY)
    seen = {}
    monkeypatch.setattr(model.decoder, "forward_tokens", lambda z: seen.setdefault("z", z))
    odd, even = torch.randn(2, 1, 32, 32), torch.randn(2, 1, 32, 32)
    masks = complementary_masking(2, 64, 0.75, generator=torch.Generator().manual_seed(0))
    lat_odd, lat_even = model.forward_encoder(odd, even, masks)
    model.forward_decoder(lat_odd, lat_even, masks)
    z = seen["z"]  # [N, L, Dd]
    emb_odd, emb_even = model.decoder.embed(lat_odd), model.decoder.embed(lat_even)
    for i in range(2):
        assert torch.allclose(z[i, masks.ids_odd[i]], emb_odd[i])
        assert torch.allclose(z[i, masks.ids_even[i]], emb_even[i])
        both = torch.nonzero(masks.mask_odd[i] * masks.mask_even[i]).flatten()
        assert torch.allclose(z[i, both], model.decoder.mask_token[0].expand(len(both), -1))
    # the same encoder encodes each half on its own (Eq. 5): odd latents do not depend on the even image
    lat_odd2, _ = model.forward_encoder(odd, torch.randn_like(even), masks)
    assert torch.allclose(lat_odd, lat_odd2)


def test_neck_starts_as_identity_and_sits_in_the_decoder():
    neck = DracoNeck(16)
    x = torch.randn(2, 16, 4, 4)
    assert torch.equal(neck(x), x)
    nn.init.ones_(neck.norm3.weight)
    assert not torch.allclose(neck(x), x)
    assert any(k.startswith("decoder.neck.conv2") for k in DracoModel(TINY).state_dict())
    with pytest.raises(CryolibError, match="cls token"):
        DracoModel(get_config("cpu-tiny"))


# --------------------------------------------------------------------------------------------- Eq. 8-10 loss


def _targets(full, odd, even, masks, p):
    """The prediction equal to every target: even on odd-only, odd on even-only, full on masked-in-both."""
    mo, me = masks.mask_odd.unsqueeze(-1), masks.mask_even.unsqueeze(-1)
    t_full, t_odd, t_even = (patchify(x, p) for x in (full, odd, even))
    return (1 - mo) * t_even + (1 - me) * t_odd + mo * me * t_full, t_full, t_odd, t_even


def test_each_loss_term_is_zero_at_its_target_and_switches_remove_it():
    torch.manual_seed(0)
    full, odd, even = (torch.randn(3, 1, 32, 32) for _ in range(3))
    masks = complementary_masking(3, 64, 0.75)
    mo, me = masks.mask_odd, masks.mask_even
    oracle, t_full, t_odd, t_even = _targets(full, odd, even, masks, 4)
    loss, parts = draco_loss(oracle, full, odd, even, mo, me, 4)
    assert float(loss) == 0.0 and parts == {"loss_n2n": 0.0, "loss_recon": 0.0}
    # right on N2N patches, wrong on masked-in-both ones
    junk = oracle + mo.unsqueeze(-1) * me.unsqueeze(-1) * 1.0
    loss, parts = draco_loss(junk, full, odd, even, mo, me, 4, recon_weight=0.5)
    assert parts["loss_n2n"] == 0.0 and parts["loss_recon"] == pytest.approx(1.0)
    assert float(loss) == pytest.approx(0.5)
    assert float(draco_loss(junk, full, odd, even, mo, me, 4, recon=False)[0]) == 0.0
    # right on masked-in-both patches, wrong on N2N ones
    junk = oracle + (1 - mo * me).unsqueeze(-1) * 2.0
    loss, parts = draco_loss(junk, full, odd, even, mo, me, 4)
    assert parts["loss_recon"] == 0.0 and parts["loss_n2n"] == pytest.approx(4.0) and float(loss) == pytest.approx(4.0)
    assert float(draco_loss(junk, full, odd, even, mo, me, 4, n2n=False)[0]) == 0.0
    # N2N crosses the halves: predicting a visible patch's own input is NOT its target
    identity = (1 - mo.unsqueeze(-1)) * t_odd + (1 - me.unsqueeze(-1)) * t_even + (mo * me).unsqueeze(-1) * t_full
    assert draco_loss(identity, full, odd, even, mo, me, 4)[1]["loss_n2n"] > 1.0
    with pytest.raises(CryolibError):
        draco_loss(oracle, full, odd, even, mo, me, 4, n2n=False, recon=False)


class OracleStub(nn.Module):
    """Stands in for DracoModel: returns the exact targets of the batch it was built with (not of its inputs)."""

    def __init__(self, batch, p=4):
        super().__init__()
        self.batch, self.p, self.w = batch, p, nn.Parameter(torch.zeros(()))

    def forward(self, odd, even, mask_ratio=0.75):
        masks = complementary_masking(odd.shape[0], (odd.shape[-1] // self.p) ** 2, mask_ratio)
        pred, *_ = _targets(self.batch["full"], self.batch["odd"], self.batch["even"], masks, self.p)
        return DracoOutput(pred + 0 * self.w, masks.mask_odd, masks.mask_even)


def test_objective_wires_the_targets_and_follows_the_protocol():
    torch.manual_seed(1)
    batch = {k: torch.randn(2, 1, 32, 32) for k in ("full", "odd", "even")}
    obj = draco_objective(TINY)
    loss, parts = obj.loss(OracleStub(batch), batch)
    assert float(loss.detach()) == 0.0 and set(parts) == {"loss_n2n", "loss_recon"}
    swapped = {"full": batch["full"], "odd": batch["even"], "even": batch["odd"]}  # targets no longer cross
    assert obj.loss(OracleStub(batch), {**batch, "full": batch["full"] + 1})[1]["loss_recon"] == pytest.approx(1.0)
    assert obj.loss(OracleStub(swapped), batch)[1]["loss_n2n"] > 0.5
    assert isinstance(obj, Objective) and obj.model_name == "draco-tiny-32"
    desc = obj.describe()
    assert desc["name"] == "draco" and desc["model_config"] == TINY.as_dict() and desc["mask_ratio"] == 0.75
    assert obj.optimizer_config().betas == (0.9, 0.95)
    with pytest.raises(CryolibError, match="full, odd, even"):
        obj.loss(OracleStub(batch), {"full": batch["full"]})
    with pytest.raises(CryolibError, match="loss term"):
        DracoObjective(TINY, n2n=False, recon=False)
    with pytest.raises(CryolibError, match="recon_weight"):
        DracoObjective(TINY, recon_weight=-1.0)


# --------------------------------------------------------------------------------------------- training


def test_tiny_draco_run_lowers_both_losses_and_denoises():
    full, odd, even, clean = blob_triplets()
    data = TripletDataset(full, odd, even, tile_px=32)
    cfg = TrainConfig(epochs=40, batch_size=8, seed=0, log_every_steps=1, device="cpu")
    result = train(draco_objective(TINY, optim=FAST), data, cfg, progress=False)
    h = result.history
    assert len(h) == 80 and {"loss", "loss_n2n", "loss_recon"} <= set(h.columns)
    assert h["loss_n2n"].iloc[-10:].mean() < 0.6 * h["loss_n2n"].iloc[:5].mean()  # measured ~0.44
    assert h["loss_recon"].iloc[-10:].mean() < 0.8 * h["loss_recon"].iloc[:5].mean()  # measured ~0.63
    # zero-shot denoising of the full tiles moves them towards the clean signal
    plain = TripletDataset(full, odd, even, tile_px=32, augment=False)
    truth = TripletDataset(clean, odd, even, tile_px=32, augment=False, mean=plain.mean, std=plain.std)
    x = torch.stack([plain[i]["full"] for i in range(len(plain))])
    y = torch.stack([truth[i]["full"] for i in range(len(truth))])
    denoised = denoise_tiles(result.model, x)
    assert float(((denoised - y) ** 2).mean()) < 0.8 * float(((x - y) ** 2).mean())  # measured ~0.59


def test_resume_equals_uninterrupted(triplets, tmp_path):
    base = dict(epochs=2, batch_size=4, seed=3, log_every_steps=1, checkpoint_every_steps=3, device="cpu")
    full = train(draco_objective(TINY, optim=FAST), triplets, TrainConfig(**base, out_dir=tmp_path / "a", max_steps=7),
                 val_dataset=triplets, progress=False)
    first = train(draco_objective(TINY, optim=FAST), triplets, TrainConfig(**base, out_dir=tmp_path / "b", max_steps=3),
                  val_dataset=triplets, progress=False)
    assert load_checkpoint(first.checkpoint)["step"] == 3  # mid-epoch (4 steps per epoch)
    again = TrainConfig(**base, out_dir=tmp_path / "b", max_steps=7, resume=True)
    resumed = train(draco_objective(TINY, optim=FAST), triplets, again, val_dataset=triplets, progress=False)
    for (name, p), q in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name
    cols = ["step", "epoch", "lr", "loss", "loss_n2n", "loss_recon"]
    assert full.history[cols].equals(resumed.history[cols])
    assert full.val_history.equals(resumed.val_history)
    assert load_checkpoint(full.checkpoint)["data_stats"] == triplets.stats


def test_mae_warmup_initialises_draco(triplets, tmp_path):
    mae = MAEObjective(TINY, mask_ratio=0.75, norm_pix_loss=True, optim=FAST, name="mae")
    warm = train(mae, triplets.full_view(), TrainConfig(epochs=1, batch_size=8, max_steps=2, device="cpu",
                                                          out_dir=tmp_path / "warm"), progress=False)
    obj = draco_objective(TINY, init_from=warm.checkpoint)
    model = obj.build_model()
    mae_state, draco_state = warm.model.state_dict(), model.state_dict()
    assert set(draco_state) - set(mae_state) == {k for k in draco_state if k.startswith("decoder.neck.")}
    assert all(torch.equal(mae_state[k], draco_state[k]) for k in mae_state)
    assert obj.describe()["init_from"] == str(warm.checkpoint)
    fresh = DracoModel(TINY)  # the neck keeps its identity initialisation
    assert torch.equal(model.decoder.neck.norm3.weight, fresh.decoder.neck.norm3.weight)
    # a MAE of another size (cls token, other widths) is refused
    other = MAEObjective(get_config("cpu-tiny", img_size=32, name="cpu-tiny-32"), 0.75, False, FAST)
    torch.save({"model": other.build_model().state_dict(), "model_config": other.model_config.as_dict()},
               tmp_path / "other.pt")
    with pytest.raises(CryolibError, match="differs"):
        init_from_mae(DracoModel(TINY), tmp_path / "other.pt")
    with pytest.raises(CryolibError, match="not found"):
        init_from_mae(DracoModel(TINY), tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CryolibError, match="could not be read"):
        init_from_mae(DracoModel(TINY), tmp_path / "junk.pt")


def test_denoise_tiles_sees_every_patch_and_keeps_units():
    torch.manual_seed(0)
    model = DracoModel(TINY)
    with torch.no_grad():
        model.decoder.mask_token.fill_(float("nan"))  # no mask token may enter the denoising pass
        model.decoder.neck.norm3.weight.normal_()  # a non-trivial neck
    x = torch.randn(5, 1, 32, 32)
    out = denoise_tiles(model, x, batch_size=2)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.equal(out, denoise_tiles(model, x, batch_size=2))  # deterministic: no masking
    assert torch.allclose(out, denoise_tiles(model, x), atol=1e-5)  # batching does not matter
    counts = 100.0 + 7.0 * x  # the same tiles in counts, denoised with the training mean/std
    np.testing.assert_allclose(denoise_tiles(model, counts, mean=100.0, std=7.0).numpy(), (100.0 + 7.0 * out).numpy(),
                               rtol=1e-5, atol=1e-3)
    arr = denoise_tiles(model, x[:, 0].numpy())
    assert isinstance(arr, np.ndarray) and arr.shape == (5, 32, 32)
    assert denoise_tiles(model, torch.randn(1, 1, 64, 64)).shape == (1, 1, 64, 64)  # other tile sizes
    with pytest.raises(CryolibError):
        denoise_tiles(model, torch.randn(1, 1, 30, 30))
    with pytest.raises(CryolibError):
        denoise_tiles(model, x, std=0.0)
