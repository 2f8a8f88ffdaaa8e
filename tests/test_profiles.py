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
