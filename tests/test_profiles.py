import pytest

from cryolib import CryolibError
from cryolib.core.profiles import PROFILES, get_profile


def test_three_profiles_grow_in_size():
    smoke, default, full = (get_profile(n) for n in ("smoke", "default", "full"))
    assert smoke.simulation.micrograph_px < default.simulation.micrograph_px <= full.simulation.micrograph_px
    assert smoke.pretrain.epochs < default.pretrain.epochs < full.pretrain.epochs
    assert full.simulation.micrograph_px == 1024 and full.pretrain.epochs == 400  # the papers' sizes


def test_profile_names_match_keys():
    for name, prof in PROFILES.items():
        assert prof.name == name
        assert prof.as_dict()["simulation"]["micrograph_px"] == prof.simulation.micrograph_px


def test_unknown_profile_lists_choices():
    with pytest.raises(CryolibError, match="smoke, default, full"):
        get_profile("huge")


def test_micrographs_per_role():
    sizes = get_profile("default").simulation
    assert sizes.micrographs_for(["cryoemmae_train", "draco_eval"]) == sizes.n_train_micrographs
    assert sizes.micrographs_for(["generalisation"]) == sizes.n_generalisation_micrographs
    assert sizes.micrographs_for(["cryoemmae_eval"]) == sizes.micrographs_for([]) == sizes.n_eval_micrographs


def test_draco_sizes_exist_and_fit_their_crops():
    from cryolib.models.vit import MODEL_SIZES

    for name, prof in PROFILES.items():
        d = prof.draco
        for key in ("draco-b", "draco-l", "ablation"):
            cfg = MODEL_SIZES[d.model_for(key)]  # KeyError: a profile names a size that does not exist
            assert cfg.img_size == d.tile_px and not cfg.cls_token, (name, key)
        assert d.mask_ratio == 0.75 and d.ablation_mask_ratios == (0.5, 0.625, 0.75, 0.875)  # DRACO §5, Table 5
        assert d.tile_px <= prof.simulation.micrograph_px and d.pretrain_role == "cryoemmae_train"
        assert d.warmup_epochs >= 1 and d.epochs >= 1 and d.ablation_epochs <= d.epochs


def test_draco_b_is_smaller_than_l_and_full_is_the_paper():
    from cryolib.models.vit import MODEL_SIZES

    default, full = get_profile("default").draco, get_profile("full").draco
    width = {k: MODEL_SIZES[k].embed_dim * MODEL_SIZES[k].depth for k in (default.model_b, default.model_l)}
    assert width[default.model_b] < width[default.model_l]
    assert (full.model_b, full.model_l, full.tile_px, full.warmup_epochs, full.epochs) == ("draco-b", "draco-l", 256,
                                                                                          200, 400)
    with pytest.raises(CryolibError, match="unknown DRACO size"):
        default.model_for("draco-h")


def test_cryoemmae_sizes_did_not_move():
    """Adding DRACO left every Cryo-EMMAE size as it was (its committed results depend on them)."""
    got = {n: (p.pretrain.model, p.pretrain.epochs, p.pretrain.batch_size, p.pretrain.warmup_epochs,
               p.pretrain.max_tiles_per_micrograph, p.simulation.micrograph_px, p.simulation.n_frames,
               p.simulation.n_train_micrographs, p.picking.topaz_epochs) for n, p in PROFILES.items()}
    # default Topaz-from-scratch: 3 epochs since the baseline fix of issue 14 (was 2)
    assert got == {"smoke": ("cpu-tiny", 1, 32, 0, 16, 256, 8, 5, 1), "default": ("cpu-small", 8, 64, 1, 0, 512, 20, 15, 3),
                   "full": ("cryoemmae", 400, 128, 5, 0, 1024, 40, 300, 400)}
