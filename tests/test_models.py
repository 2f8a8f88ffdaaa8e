"""cryolib.models.vit and cryolib.models.objectives: sizes, patches, masking, embeddings, groups, the objective
registry (names, lazy modules, no import cycle)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from cryolib.core.errors import CryolibError
from cryolib.models.objectives import (
    LAZY_OBJECTIVES,
    OBJECTIVES,
    MAEObjective,
    Objective,
    cryoemmae_objective,
    get_objective,
    mae_objective,
    objective_names,
    param_groups,
    register_objective,
)
from cryolib.models.vit import (
    MODEL_SIZES,
    MaskedAutoencoder,
    ViTDecoder,
    ViTEncoder,
    build_model,
    get_config,
    patchify,
    random_masking,
    unpatchify,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_cryoemmae_parameter_counts_match_the_paper_model():
    # cryoemmae.md §2: ~5.1 M (encoder 4.16 M, decoder 0.95 M). Per timm Block of width D with
    # MLP ratio 2 and qkv bias: 8·D² + 11·D, so 14·297,024 + patch embed, cls and final LN.
    model = build_model("cryoemmae")
    enc, dec = n_params(model.encoder), n_params(model.decoder)
    assert enc == 4_162_176
    assert dec == 954_512
    assert enc + dec == pytest.approx(5.1e6, rel=0.01)
    # Position embeddings are fixed buffers, not parameters, and not in the state dict.
    assert not any("pos_embed" in k for k in model.state_dict())


def test_size_table_and_cpu_small_count():
    assert {"cryoemmae", "cpu-small", "cpu-tiny", "draco-b", "draco-l", "draco-tiny"} <= set(MODEL_SIZES)
    assert n_params(build_model("cpu-small")) == pytest.approx(0.87e6, rel=0.05)
    cfg = MODEL_SIZES["draco-b"]
    assert (cfg.img_size, cfg.patch_size, cfg.embed_dim, cfg.depth, cfg.num_heads) == (256, 16, 768, 12, 12)
    assert (cfg.decoder_embed_dim, cfg.decoder_depth, cfg.decoder_num_heads, cfg.cls_token) == (512, 8, 16, False)
    assert MODEL_SIZES["draco-l"].embed_dim == 1024 and MODEL_SIZES["draco-l"].depth == 24
    assert MODEL_SIZES["cryoemmae"].pos_encode_weight == 0.08 and MODEL_SIZES["draco-b"].pos_encode_weight == 1.0


def test_unknown_model_and_override_raise_cryolib_error():
    with pytest.raises(CryolibError, match="cpu-tiny"):
        build_model("vit-huge")
    with pytest.raises(CryolibError, match="unknown ViTConfig field"):
        get_config("cpu-tiny", depht=3)
    with pytest.raises(CryolibError, match="unknown objective 'simclr'; choose one of cryoemmae, mae"):
        get_objective("simclr")


def test_patchify_unpatchify_round_trip_and_layout():
    imgs = torch.randn(2, 3, 32, 48)
    x = patchify(imgs, 8)
    assert x.shape == (2, 4 * 6, 8 * 8 * 3)
    assert torch.equal(unpatchify(x, 8, channels=3, grid=(4, 6)), imgs)
    # Patch 1 (row 0, col 1) holds pixels [0:8, 8:16], flattened as (py, px, c).
    assert torch.equal(x[0, 1].reshape(8, 8, 3), imgs[0, :, 0:8, 8:16].permute(1, 2, 0))
    with pytest.raises(CryolibError):
        patchify(torch.zeros(1, 1, 30, 32), 8)


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.6])
def test_random_masking_counts_and_restore(ratio):
    n, length, d = 3, 256, 5
    g = torch.Generator().manual_seed(0)
    ids_keep, mask, ids_restore = random_masking(n, length, ratio, generator=g)
    keep = round(length * (1 - ratio))
    assert ids_keep.shape == (n, keep)
    assert torch.all(mask.sum(1) == length - keep)
    x = torch.randn(n, length, d)
    visible = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, d))  # [N, L_keep, D]
    # The mask is 0 exactly at the kept positions.
    assert torch.all(torch.gather(mask, 1, ids_keep) == 0)
    # Append placeholders and unshuffle: visible tokens return to their original positions.
    filled = torch.cat([visible, torch.full((n, length - keep, d), float("nan"))], dim=1)
    restored = torch.gather(filled, 1, ids_restore[..., None].expand(-1, -1, d))
    vis = mask == 0
    assert torch.equal(restored[vis], x[vis])
    assert torch.isnan(restored[~vis]).all()


def test_forward_shapes_and_masked_only_loss():
    torch.manual_seed(0)
    model = build_model("cpu-tiny")
    imgs = torch.randn(4, 1, 64, 64)
    loss, pred, mask = model(imgs, mask_ratio=0.5)
    assert pred.shape == (4, 256, 16) and mask.shape == (4, 256)
    assert loss.ndim == 0 and torch.isfinite(loss)
    # The loss ignores visible patches: a perfect prediction on masked patches gives zero.
    target = patchify(imgs, 4)
    perfect = torch.where(mask[..., None].bool(), target, torch.randn_like(target))
    assert model.forward_loss(imgs, perfect, mask).item() == pytest.approx(0.0, abs=1e-12)
    norm_model = build_model("cpu-tiny", norm_pix_loss=True)
    t = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    assert norm_model.forward_loss(imgs, t, mask).item() == pytest.approx(0.0, abs=1e-10)


def test_embed_is_the_unmasked_patch_grid_and_deterministic():
    torch.manual_seed(0)
    model = build_model("cpu-tiny").eval()
    imgs = torch.randn(2, 1, 64, 64)
    emb = model.embed(imgs)
    assert emb.shape == (2, 16, 16, 64)
    torch.manual_seed(123)
    model(imgs, 0.5)  # consumes RNG; embed must not depend on it
    assert torch.equal(model.embed(imgs), emb)
    # Same as the encoder's tokens after the final LN, cls dropped, in row-major patch order.
    tokens = model.encoder(imgs)[:, 1:]
    assert torch.equal(emb.reshape(2, 256, 64), tokens)
    # Each tile is encoded on its own: the batch does not leak across items.
    assert torch.allclose(model.embed(imgs[1:]), emb[1:], atol=1e-5)


def test_encoder_position_embedding_is_fixed_and_scaled():
    enc = ViTEncoder(get_config("cpu-tiny"))
    assert not enc.pos_embed.requires_grad
    full = ViTEncoder(get_config("cpu-tiny", pos_encode_weight=1.0))
    assert torch.allclose(enc.pos_embed, 0.08 * full.pos_embed)
    assert enc.pos_embed.shape == (1, 256, 64)


def test_decoder_token_api_for_draco():
    """DRACO fills the decoder sequence itself: embed -> merge with mask_token -> forward_tokens."""
    cfg = get_config("draco-tiny", img_size=64)  # 4x4 patch grid of 16 px, no cls
    torch.manual_seed(0)
    enc, dec = ViTEncoder(cfg), ViTDecoder(cfg)
    imgs = torch.randn(2, 1, 64, 64)
    ids_keep, mask, ids_restore = random_masking(2, 16, 0.75)
    vis = dec.embed(enc(imgs, ids_keep))  # [2, 4, Dd]
    assert vis.shape == (2, 4, cfg.decoder_embed_dim)
    z = dec.fill_masked(vis, ids_restore)  # [2, 16, Dd]
    assert torch.equal(dec.forward_tokens(z), dec(enc(imgs, ids_keep), ids_restore))
    assert dec.forward_tokens(z).shape == (2, 16, 256)

    class Shift(nn.Module):  # a toy neck on the grid image [N, Dd, h, w]
        def forward(self, x):
            assert x.shape == (2, cfg.decoder_embed_dim, 4, 4)
            return x + 1.0

    dec.neck = Shift()
    out = dec.forward_tokens(z)
    assert out.shape == (2, 16, 256) and "neck" in dict(dec.named_children())


def test_param_groups_no_decay_on_biases_norms_and_tokens():
    model = build_model("cpu-tiny")
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    ids = {id(p) for p in no_decay["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in ids}
    assert "encoder.cls_token" in names and "decoder.mask_token" in names
    assert all(n.endswith((".bias", "cls_token", "mask_token")) or "norm" in n.rsplit(".", 2)[-2] for n in names)
    decay_names = {n for n, p in model.named_parameters() if id(p) not in ids}
    assert "encoder.blocks.0.attn.qkv.weight" in decay_names and "encoder.patch_embed.proj.weight" in decay_names
    assert not any("norm" in n or n.endswith(".bias") for n in decay_names)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_objective_presets():
    c = cryoemmae_objective("cpu-tiny")
    assert isinstance(c, Objective) and c.name == "cryoemmae"
    opt = c.optimizer_config()
    assert (c.mask_ratio, c.norm_pix_loss, opt.betas, opt.weight_decay, opt.base_lr, opt.min_lr) == (
        0.5, False, (0.9, 0.999), 1e-5, 1e-3, 1e-6)
    assert opt.peak_lr(128) == pytest.approx(5e-4)
    m = mae_objective("cpu-tiny")
    mo = m.optimizer_config()
    assert (m.mask_ratio, m.norm_pix_loss, mo.betas) == (0.75, True, (0.9, 0.95))
    assert (mo.weight_decay, mo.base_lr) == (0.05, 1.5e-4)
    assert m.build_model().cfg.norm_pix_loss is True
    assert set(OBJECTIVES) >= {"mae", "cryoemmae"}
    desc = c.describe()
    assert desc["name"] == "cryoemmae" and desc["model_config"]["name"] == "cpu-tiny"
    torch.manual_seed(0)
    model = c.build_model()
    assert isinstance(model, MaskedAutoencoder)
    loss, parts = c.loss(model, (torch.randn(2, 1, 64, 64), torch.zeros(2)))
    assert loss.requires_grad and set(parts) == {"mse_masked"}
    with pytest.raises(CryolibError):
        MAEObjective("cpu-tiny", mask_ratio=1.0, norm_pix_loss=False, optim=opt)


# --------------------------------------------------------------------------------------------- the registry


def test_registry_names_and_options(monkeypatch):
    assert objective_names()[:2] == ("cryoemmae", "mae")
    assert OBJECTIVES["cryoemmae"] is cryoemmae_objective and OBJECTIVES["mae"] is mae_objective
    m = get_objective("mae", "cpu-tiny")
    assert m.name == "mae" and m.mask_ratio == 0.75 and m.model_name == "cpu-tiny"
    assert get_objective("cryoemmae").model_name == "cryoemmae"  # the preset's default model
    monkeypatch.setattr("cryolib.models.objectives.OBJECTIVES", dict(OBJECTIVES))

    @register_objective("toy")
    def toy(model="cpu-tiny", mask_ratio=0.3):
        return MAEObjective(model, mask_ratio, False, cryoemmae_objective().optim, name="toy")

    assert "toy" in objective_names()
    assert get_objective("toy", mask_ratio=0.6).mask_ratio == 0.6  # options reach the factory
    assert get_objective("toy", "cpu-small").model_name == "cpu-small"
    register_objective("toy")(toy)  # the same factory again: a no-op
    with pytest.raises(CryolibError, match="already registered"):
        register_objective("toy")(mae_objective)


def test_lazy_objective_module_is_imported_on_first_use(tmp_path, monkeypatch):
    (tmp_path / "lazy_toy_objective.py").write_text(
        "from cryolib.models.objectives import cryoemmae_objective, register_objective\n"
        "IMPORTED = True\n"
        "def lazy_objective(model='cpu-tiny'):\n"
        "    obj = cryoemmae_objective(model)\n"
        "    obj.name = 'lazy'\n"
        "    return obj\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("cryolib.models.objectives.OBJECTIVES", dict(OBJECTIVES))
    monkeypatch.setitem(LAZY_OBJECTIVES, "lazy", ("lazy_toy_objective", "lazy_objective"))
    monkeypatch.setitem(LAZY_OBJECTIVES, "absent", ("no_such_module_anywhere", "factory"))
    monkeypatch.delitem(sys.modules, "lazy_toy_objective", raising=False)
    assert get_objective("lazy").name == "lazy" and "lazy_toy_objective" in sys.modules
    names = objective_names()
    assert "lazy" in names and "absent" not in names  # a lazy module that is not installed is not listed


def test_registry_import_has_no_cycle_and_stays_lazy():
    """Importing the registry does not import DRACO's module; importing DRACO first works too."""
    code = ("import sys, importlib.util\n"
            "import cryolib.models.objectives as o\n"
            "assert 'cryolib.models.draco' not in sys.modules\n"
            "names = o.objective_names()\n"
            "if importlib.util.find_spec('cryolib.models.draco'):\n"
            "    assert 'draco' in names and o.get_objective('draco').name == 'draco'\n"
            "print(','.join(names))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("cryoemmae,mae")
    first = subprocess.run([sys.executable, "-c", "import importlib.util, sys\n"
                            "if importlib.util.find_spec('cryolib.models.draco'):\n"
                            "    import cryolib.models.draco\n"
                            "from cryolib.models.objectives import get_objective\n"
                            "print(get_objective('mae').name)"], capture_output=True, text=True)
    assert first.returncode == 0 and first.stdout.strip() == "mae", first.stderr
