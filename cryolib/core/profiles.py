"""The three scales of the study in one place: ``smoke``, ``default`` and ``full``.

* ``smoke``: seconds per notebook; used by the test suite.
* ``default``: a 2-core laptop; the whole ``run_all.sh`` in under an hour.
* ``full``: a GPU; the papers' sizes (1024 px micrographs, the paper's MAE, 400 epochs).

Notebooks and commands read sizes from here, never from literals.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

from cryolib.core.errors import CryolibError, is_whole_number


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

    # Topaz-from-scratch budget (cryolib.pick.topaz_training): epochs x minibatches x crops. A crop costs
    # ~4-10 ms on a loaded 2-core CPU, so default's 3 x 30 x 64 (5,760 crops) is ~30-60 s per training
    # analog, ~2-4 min for notebook 03's four; Topaz's own 10 x 1000 x 256 is for a GPU (full).
    topaz_epochs: int  # `topaz train` epochs for the from-scratch baseline (best validation AUPRC kept)
    topaz_epoch_size: int  # minibatches per Topaz epoch (Topaz's default: 1000)
    topaz_minibatch: int  # crops per Topaz minibatch (Topaz's default: 256)
    n_test_micrographs: int  # at most this many test micrographs scored per analog (0 = all)


@dataclass(frozen=True)
class DracoSizes:
    """Sizes of DRACO pretraining (DRACO 2024 §5) and of its ablations (Tables 5-6, notebook 08).

    DRACO pretrains on the train splits of the analogs with registry role ``pretrain_role`` (the
    Cryo-EMMAE training analogs), so the DRACO denoising, picking and generalisation analogs stay
    unseen. ``model_b``/``model_l`` stand in for DRACO-B/DRACO-L (keys into
    ``cryolib.models.vit.MODEL_SIZES``); crops are ``tile_px`` = the models' ``img_size``.
    """

    pretrain_role: str  # registry role of the pretraining analogs (their "train" split)
    tile_px: int  # side of a training crop (px); equals the models' img_size
    max_tiles_per_micrograph: int  # 0 = every non-overlapping tile
    model_b: str  # stands in for DRACO-B
    model_l: str  # stands in for DRACO-L
    warmup_epochs: int  # plain-MAE warm-up epochs before DRACO (§5: 200)
    epochs: int  # DRACO epochs after the warm-up (§5: 400)
    batch_size: int  # per process
    base_lr: float  # AdamW learning rate per 256 samples (MAE's linear scaling rule; the paper's 1.5e-4)
    lr_warmup_epochs: float  # linear lr warm-up of each stage (capped at half its epochs)
    mask_ratio: float = 0.75  # γ per half-image (§5)
    ablation_model: str = "draco-tiny"  # the size of notebook 08's ablation runs
    ablation_epochs: int = 1  # DRACO epochs of each ablation run (after the same warm-up)
    ablation_mask_ratios: tuple[float, ...] = (0.5, 0.625, 0.75, 0.875)  # Table 5
    #: DRACO epochs of the DRACO-B that notebook 04 ships as the denoiser (cryolib/assets/draco_denoiser.pt, what
    #: `cryolib denoise` uses). None: notebook 04's DRACO-B itself (``epochs``). The backbone it ships
    #: (draco_default.pt: curation, detector) is always notebook 04's DRACO-B.
    shipped_epochs: int | None = None

    def __post_init__(self) -> None:
        if self.shipped_epochs is not None and not (is_whole_number(self.shipped_epochs) and self.shipped_epochs >= 1):
            raise CryolibError(f"DracoSizes.shipped_epochs must be a positive epoch count or None, "
                               f"got {self.shipped_epochs!r}")

    def model_for(self, key: str) -> str:
        """The model size that stands in for ``key``: "draco-b", "draco-l" or "ablation"."""
        models = {"draco-b": self.model_b, "draco-l": self.model_l, "ablation": self.ablation_model}
        if key not in models:
            raise CryolibError(f"unknown DRACO size {key!r}; choose one of {', '.join(models)}")
        return models[key]


@dataclass(frozen=True)
class Profile:
    """One named scale of the study."""

    name: str
    simulation: SimulationSizes
    pretrain: PretrainSizes
    picking: PickingSizes
    draco: DracoSizes
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
        draco=DracoSizes(pretrain_role="cryoemmae_train", tile_px=256, max_tiles_per_micrograph=1,
                         model_b="draco-tiny", model_l="draco-tiny", warmup_epochs=1, epochs=1, batch_size=4,
                         base_lr=1e-2, lr_warmup_epochs=0, ablation_model="draco-tiny", ablation_epochs=1),
    ),
    "default": Profile(
        name="default",
        simulation=SimulationSizes(micrograph_px=512, n_frames=20, n_train_micrographs=15, n_eval_micrographs=5,
                                   n_generalisation_micrographs=12),
        pretrain=PretrainSizes(model="cpu-small", epochs=8, batch_size=64, warmup_epochs=1, max_tiles_per_micrograph=0),
        picking=PickingSizes(topaz_epochs=3, topaz_epoch_size=30, topaz_minibatch=64, n_test_micrographs=0),
        # Notebook 04: 64 DRACO epochs (1,152 steps; draco-cpu-b ~150 tiles/s on 2 idle cores, so ~2 min for B,
        # ~5 for L, ~10 min for the whole notebook). benchmarks/draco_training_length.py measured 4 -> 64 epochs:
        # Eq. 11 SNR +6.6 dB on the Table 2 analogs (256 epochs: +9.5 dB, at 4x the time; 1024 epochs add detail,
        # +0.2 dB of true SNR over 256, but lose 1.4 dB of Eq. 11, at 16x the time). The shipped denoiser trains
        # 1024 epochs (~30 min; the particles of real micrographs show in its output, they do not in the
        # 64-epoch one's: benchmarks/realdata.py); Tables 2, 4 and 6 compare B and L at 64. The ablations
        # (notebook 08, draco-cpu-s) get 16 epochs. base_lr 1e-2 per 256 gives a peak lr of 6e-4 at batch 16:
        # short CPU runs need more than MAE's 1.5e-4.
        draco=DracoSizes(pretrain_role="cryoemmae_train", tile_px=128, max_tiles_per_micrograph=8,
                         model_b="draco-cpu-b", model_l="draco-cpu-l", warmup_epochs=2, epochs=64, batch_size=16,
                         base_lr=1e-2, lr_warmup_epochs=1, ablation_model="draco-cpu-s", ablation_epochs=16,
                         shipped_epochs=1024),
    ),
    "full": Profile(
        name="full",
        simulation=SimulationSizes(micrograph_px=1024, n_frames=40, n_train_micrographs=300, n_eval_micrographs=60,
                                   n_generalisation_micrographs=60),
        pretrain=PretrainSizes(model="cryoemmae", epochs=400, batch_size=128, warmup_epochs=5, max_tiles_per_micrograph=0),
        picking=PickingSizes(topaz_epochs=400, topaz_epoch_size=1000, topaz_minibatch=256, n_test_micrographs=0),
        # The paper's sizes (§5): 256 px crops, ViT-B/L, 200 + 400 epochs, MAE's lr; one GPU, so batch 256.
        draco=DracoSizes(pretrain_role="cryoemmae_train", tile_px=256, max_tiles_per_micrograph=0,
                         model_b="draco-b", model_l="draco-l", warmup_epochs=200, epochs=400, batch_size=256,
                         base_lr=1.5e-4, lr_warmup_epochs=40, ablation_model="draco-b", ablation_epochs=100),
        device="auto",
    ),
}


def get_profile(name: str) -> Profile:
    """Return the named profile, or raise a :class:`CryolibError` that lists the valid names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise CryolibError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
