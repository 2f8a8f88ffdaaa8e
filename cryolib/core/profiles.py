"""The three scales of the study in one place: ``smoke``, ``default`` and ``full``.

* ``smoke``: seconds per notebook; used by the test suite.
* ``default``: a 2-core laptop; the whole ``run_all.sh`` in under an hour.
* ``full``: a GPU; the papers' sizes (1024 px micrographs, the paper's MAE, 400 epochs).

Notebooks and commands read sizes from here, never from literals.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

from cryolib.core.errors import CryolibError


@dataclass(frozen=True)
class SimulationSizes:
    """Sizes of the simulated dataset analogs."""

    micrograph_px: int  # side of a square micrograph (px)
    n_frames: int  # movie frames per micrograph
    n_train_micrographs: int  # per training analog (split 60/20/20)
    n_eval_micrographs: int  # per evaluation-only analog
    n_generalisation_micrographs: int  # per generalisation-check analog (one of them is the annotated reference)

    def micrographs_for(self, roles: Iterable[str]) -> int:
        """Micrographs to simulate for a registry entry that plays ``roles``."""
        roles = set(roles)
        if "cryoemmae_train" in roles:
            return self.n_train_micrographs
        if "generalisation" in roles:
            return self.n_generalisation_micrographs
        return self.n_eval_micrographs


@dataclass(frozen=True)
class PretrainSizes:
    """Sizes of MAE pretraining (Cryo-EMMAE §4.1)."""

    model: str  # key into cryolib.models.vit.MODEL_SIZES
    epochs: int
    batch_size: int
    warmup_epochs: int
    max_tiles_per_micrograph: int  # 0 = all non-overlapping tiles


@dataclass(frozen=True)
class PickingSizes:
    """Sizes for picking and its baselines."""

    topaz_epochs: int  # `topaz train` epochs for the from-scratch baseline
    topaz_epoch_size: int  # minibatches per Topaz epoch
    topaz_minibatch: int  # crops per Topaz minibatch (Topaz's default: 256)
    n_test_micrographs: int  # at most this many test micrographs scored per analog (0 = all)


@dataclass(frozen=True)
class Profile:
    """One named scale of the study."""

    name: str
    simulation: SimulationSizes
    pretrain: PretrainSizes
    picking: PickingSizes
    device: str = "cpu"  # "cpu", "cuda" or "auto"
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Plain nested dict, for run.yaml."""
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        simulation=SimulationSizes(micrograph_px=256, n_frames=8, n_train_micrographs=5, n_eval_micrographs=2,
                                   n_generalisation_micrographs=2),
        pretrain=PretrainSizes(model="cpu-tiny", epochs=1, batch_size=32, warmup_epochs=0, max_tiles_per_micrograph=16),
        picking=PickingSizes(topaz_epochs=1, topaz_epoch_size=5, topaz_minibatch=32, n_test_micrographs=1),
    ),
    "default": Profile(
        name="default",
        simulation=SimulationSizes(micrograph_px=512, n_frames=20, n_train_micrographs=15, n_eval_micrographs=5,
                                   n_generalisation_micrographs=12),
        pretrain=PretrainSizes(model="cpu-small", epochs=8, batch_size=64, warmup_epochs=1, max_tiles_per_micrograph=0),
        picking=PickingSizes(topaz_epochs=2, topaz_epoch_size=20, topaz_minibatch=64, n_test_micrographs=0),
    ),
    "full": Profile(
        name="full",
        simulation=SimulationSizes(micrograph_px=1024, n_frames=40, n_train_micrographs=300, n_eval_micrographs=60,
                                   n_generalisation_micrographs=60),
        pretrain=PretrainSizes(model="cryoemmae", epochs=400, batch_size=128, warmup_epochs=5, max_tiles_per_micrograph=0),
        picking=PickingSizes(topaz_epochs=400, topaz_epoch_size=1000, topaz_minibatch=256, n_test_micrographs=0),
        device="auto",
    ),
}


def get_profile(name: str) -> Profile:
    """Return the named profile, or raise a :class:`CryolibError` that lists the valid names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise CryolibError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
