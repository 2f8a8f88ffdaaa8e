"""Pretraining objectives behind one interface, so that :func:`cryolib.training.loop.train` has one loop.

An objective knows its model, its loss on a batch and its optimiser recipe. Two MAE presets:

* :func:`cryoemmae_objective`: Cryo-EMMAE (``reference/cryoemmae.md`` §2–3): mask 0.5, plain
  pixel MSE, AdamW(0.9, 0.999), weight decay 1e-5, base lr 1e-3, 5 warm-up epochs, cosine to 1e-6.
* :func:`mae_objective`: He et al. 2022 (MAE, App. A.1): mask 0.75, norm-pix loss,
  AdamW(0.9, 0.95), weight decay 0.05, base lr 1.5e-4, 40 warm-up epochs, cosine to 0.

Objectives register by name (:func:`register_objective`); :func:`get_objective` builds one and
:func:`objective_names` lists them (``cryolib pretrain --objective`` takes its choices from it).
Modules in :data:`LAZY_OBJECTIVES` (DRACO) are imported on first use, so that they can import this
module at their top without a cycle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import importlib
import importlib.util
from typing import Any, Callable, Protocol, TypeVar, runtime_checkable

import torch
import torch.nn as nn

from cryolib.core.errors import CryolibError
from cryolib.models.vit import MaskedAutoencoder, ViTConfig, get_config

__all__ = [
    "OptimConfig",
    "Objective",
    "MAEObjective",
    "cryoemmae_objective",
    "mae_objective",
    "OBJECTIVES",
    "LAZY_OBJECTIVES",
    "register_objective",
    "objective_names",
    "get_objective",
    "param_groups",
    "NO_DECAY_NAMES",
]


@dataclass(frozen=True)
class OptimConfig:
    """AdamW + linear warm-up + half-cycle cosine, set per iteration (MAE App. A.1).

    The peak learning rate is ``base_lr · effective_batch / 256`` (the linear scaling rule).
    """

    base_lr: float
    weight_decay: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_epochs: float = 0.0  # default; a TrainConfig value overrides it
    min_lr: float = 0.0
    schedule: str = "cosine"

    def peak_lr(self, effective_batch: int) -> float:
        """lr = base_lr · batch / 256."""
        return self.base_lr * effective_batch / 256.0


@runtime_checkable
class Objective(Protocol):
    """What :func:`cryolib.training.loop.train` needs from an objective."""

    name: str

    def build_model(self) -> nn.Module:
        """A freshly initialised model (call after seeding)."""
        ...

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss (with grad) and the named parts to log. ``model`` may be DDP-wrapped."""
        ...

    def optimizer_config(self) -> OptimConfig:
        """The optimiser recipe."""
        ...

    def describe(self) -> dict:
        """Plain dict that identifies the run: ``name``, ``model_config`` (a dict) and the settings.

        Stored in checkpoints; a resumed or loaded checkpoint must match on name and model_config.
        """
        ...


def _images(batch: Any) -> torch.Tensor:
    """The image tensor [N, C, H, W] of a batch (a tensor, or a tuple/list whose first item it is)."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


class MAEObjective:
    """Masked-autoencoder pretraining (He et al. 2022 §3; Cryo-EMMAE §3.2)."""

    def __init__(self, model: str | ViTConfig, mask_ratio: float, norm_pix_loss: bool, optim: OptimConfig,
                 name: str = "mae"):
        self.name = name
        self.mask_ratio = float(mask_ratio)
        self.norm_pix_loss = bool(norm_pix_loss)
        self.optim = optim
        self.model_config = get_config(model, norm_pix_loss=self.norm_pix_loss)
        if not 0.0 <= self.mask_ratio < 1.0:
            raise CryolibError(f"mask_ratio must be in [0, 1), got {mask_ratio}")

    @property
    def model_name(self) -> str:
        """The size name in MODEL_SIZES (or "custom")."""
        return self.model_config.name

    def build_model(self) -> MaskedAutoencoder:
        return MaskedAutoencoder(self.model_config)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Masked-patch MSE of one batch [N, 1, H, W]; parts: ``{"mse_masked": ...}``."""
        loss, _, _ = model(_images(batch), self.mask_ratio)
        return loss, {"mse_masked": float(loss.detach())}

    def optimizer_config(self) -> OptimConfig:
        return self.optim

    def describe(self) -> dict:
        return {
            "name": self.name,
            "model": self.model_name,
            "model_config": self.model_config.as_dict(),
            "mask_ratio": self.mask_ratio,
            "norm_pix_loss": self.norm_pix_loss,
            "optim": dataclasses.asdict(self.optim),
        }

    def __repr__(self) -> str:
        return f"MAEObjective(name={self.name!r}, model={self.model_name!r}, mask_ratio={self.mask_ratio})"


#: name -> factory(model=None, **options) -> Objective; filled by :func:`register_objective`.
OBJECTIVES: dict[str, Callable[..., Objective]] = {}

#: name -> (module, factory attribute) of objectives that live in modules importing this one;
#: imported on first use (by :func:`objective_names` or :func:`get_objective`), never at import time.
LAZY_OBJECTIVES: dict[str, tuple[str, str]] = {"draco": ("cryolib.models.draco", "draco_objective")}

F = TypeVar("F", bound=Callable[..., Objective])


def register_objective(name: str) -> Callable[[F], F]:
    """Decorator: register ``factory(model=None, **options) -> Objective`` under ``name``.

    Registering the same factory twice is a no-op; another factory under a taken name raises.
    """
    def decorate(factory: F) -> F:
        if OBJECTIVES.get(name, factory) is not factory:
            raise CryolibError(f"objective {name!r} is already registered ({OBJECTIVES[name].__qualname__})")
        OBJECTIVES[name] = factory
        return factory
    return decorate


@register_objective("cryoemmae")
def cryoemmae_objective(model: str | ViTConfig = "cryoemmae") -> MAEObjective:
    """Cryo-EMMAE's recipe (cryoemmae.md §2–3): mask 0.5, no norm-pix, AdamW(0.9, 0.999), wd 1e-5,
    base lr 1e-3 (5e-4 at batch 128), 5 warm-up epochs, half-cycle cosine to 1e-6."""
    optim = OptimConfig(base_lr=1e-3, weight_decay=1e-5, betas=(0.9, 0.999), warmup_epochs=5, min_lr=1e-6)
    return MAEObjective(model, mask_ratio=0.5, norm_pix_loss=False, optim=optim, name="cryoemmae")


@register_objective("mae")
def mae_objective(model: str | ViTConfig = "cpu-small") -> MAEObjective:
    """He et al.'s recipe (MAE App. A.1): mask 0.75, norm-pix loss, AdamW(0.9, 0.95), wd 0.05,
    base lr 1.5e-4, 40 warm-up epochs, half-cycle cosine to 0."""
    optim = OptimConfig(base_lr=1.5e-4, weight_decay=0.05, betas=(0.9, 0.95), warmup_epochs=40, min_lr=0.0)
    return MAEObjective(model, mask_ratio=0.75, norm_pix_loss=True, optim=optim, name="mae")


def _load_lazy(name: str | None = None) -> None:
    """Import the lazily registered objective modules (only ``name``'s if given) that are installed."""
    for key, (module, attr) in LAZY_OBJECTIVES.items():
        if key in OBJECTIVES or (name is not None and key != name):
            continue
        if importlib.util.find_spec(module) is None:
            continue
        factory = getattr(importlib.import_module(module), attr)
        if key not in OBJECTIVES:  # the module may have registered itself on import
            register_objective(key)(factory)


def objective_names() -> tuple[str, ...]:
    """Names of every registered objective (lazy ones included when their module is installed)."""
    _load_lazy()
    return tuple(OBJECTIVES)


def get_objective(name: str, model: str | ViTConfig | None = None, **options: Any) -> Objective:
    """The registered objective ``name`` on model size ``model`` (its preset's default if None).

    ``options`` go to the factory (e.g. ``mask_ratio`` for DRACO).
    """
    _load_lazy(name)
    if name not in OBJECTIVES:
        raise CryolibError(f"unknown objective {name!r}; choose one of {', '.join(objective_names())}")
    factory = OBJECTIVES[name]
    return factory(**options) if model is None else factory(model, **options)


#: Parameter names (last component) that never get weight decay, whatever their shape.
NO_DECAY_NAMES = ("pos_embed", "cls_token", "mask_token")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decay on weight matrices/kernels; none on biases, norms, position
    embeddings, cls and mask tokens (MAE App. A.1; Cryo-EMMAE cryoemmae.md §3)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        if param.ndim <= 1 or name.endswith(".bias") or leaf in NO_DECAY_NAMES:
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "weight_decay": float(weight_decay)},
        {"params": no_decay, "weight_decay": 0.0},
    ]
