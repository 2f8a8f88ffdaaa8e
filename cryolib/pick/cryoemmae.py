"""Cryo-EMMAE end to end (Zamanos et al. 2024, §3-4): pretrain, fit the picker, save it, pick.

One implementation for the notebooks and for ``cryolib pretrain`` / ``cryolib pick``:

* :func:`pretrain_mae`: preprocess (§3.1) -> 64 px tiles standardised by the training mean/std
  -> MAE with the Cryo-EMMAE recipe (§3.2, §4.1) through :func:`cryolib.training.loop.train`.
* :func:`fit_picker`: global k-means on the training embeddings; the particle cluster is named
  from ONE annotated micrograph (§3.2). :func:`set_reference` re-names it from another one.
* :func:`save_picker` / :func:`load_picker`: one small file (encoder weights, k-means centres,
  particle cluster, config, mean/std, provenance); the decoder is dropped
  (:mod:`cryolib.pick.picker_file`, re-exported here).
* :class:`CryoEMMAEMethod`: the picker registered as ``cryoemmae`` (:mod:`cryolib.pick.registry`);
  :func:`pick_micrographs` (the registry's, re-exported) picks micrograph files with any method.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import cryolib
from cryolib.processing import preprocess as pp
from cryolib.training.checkpoint import CHECKPOINT_FORMAT, load_model
from cryolib.core.errors import CryolibError
from cryolib.io.micrographs import micrograph_stem, read_micrograph
from cryolib.models.objectives import get_objective
from cryolib.pick.cryoemmae_picker import CryoEMMAEPicker, PickerConfig
from cryolib.pick.picker_file import (  # noqa: F401  (PICKER_FORMAT, save_picker, load_picker re-exported)
    PICKER_FORMAT,
    load_picker,
    picker_from_file,
    read_picker_file,
    save_picker,
)
from cryolib.pick.registry import (CheckedReference, Picker, check_reference, micrograph_shapes, pick_micrographs,
                                   register_picker)
from cryolib.core.profiles import get_profile
from cryolib.core.reproducibility import seed_everything
from cryolib.processing.tiles import TileDataset, tile_stats
from cryolib.training.loop import TrainConfig, train

__all__ = ["DEFAULT_CHECKPOINT", "PICKER_FORMAT", "CryoEMMAEPicker", "PickerConfig", "preprocess_for_training",
           "pretrain_mae", "fit_picker", "save_picker", "load_picker", "set_reference", "min_micrograph_px",
           "check_micrographs", "CryoEMMAEMethod", "pick_micrographs"]

log = logging.getLogger(__name__)

#: The shipped picker file, used by ``cryolib pick --method cryoemmae`` without ``--checkpoint``.
DEFAULT_CHECKPOINT = Path(cryolib.__file__).parent / "assets" / "cryoemmae_default.pt"

Diameter = Union[float, Mapping[Any, float]]  # px; one value, or per path / stem / dataset name
PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------- inputs
def _diameter_of(diameter_px: Diameter, path: PathLike, group: str | None = None) -> float:
    """The particle diameter (px) of one micrograph: a number, or a lookup by group, path or stem."""
    if isinstance(diameter_px, Mapping):
        for key in (group, Path(path), str(path), micrograph_stem(path)):
            if key is not None and key in diameter_px:
                return pp.check_diameter(diameter_px[key])
        raise CryolibError(f"no particle diameter given for {path}; add it (px) to the mapping, keyed by "
                           "path, stem or dataset name")
    return pp.check_diameter(diameter_px)


def min_micrograph_px(config: PickerConfig, diameter_px: float) -> int | None:
    """Smallest side (px) a micrograph needs so that one ``tile_px`` tile fits at the working scale.

    None when no size works (``fixed`` mode with ``target_size`` below one tile).
    """
    d = pp.check_diameter(diameter_px)
    side = lambda n: config.working_shape((n, n), d)[0]  # noqa: E731
    if config.scale_mode != "diameter":
        return 2 if side(2) >= config.tile_px else None
    n = max(2, math.ceil((config.tile_px - 0.5) * d / config.target_diameter_px))
    while side(n) < config.tile_px:
        n += 1
    while n > 2 and side(n - 1) >= config.tile_px:
        n -= 1
    return n


def _check_size(config: PickerConfig, shape: tuple[int, int], diameter_px: float, name: PathLike) -> None:
    """Raise :class:`CryolibError` when ``shape`` is smaller than one tile at the working scale."""
    work = config.working_shape(shape, diameter_px)
    if min(work) < config.tile_px:
        need = min_micrograph_px(config, diameter_px)
        fix = (f"micrographs need at least {need} x {need} px at this diameter" if need
               else "no micrograph size works with this picker configuration")
        raise CryolibError(f"micrograph {name} ({shape[0]} x {shape[1]} px, particle diameter {diameter_px:g} px) "
                           f"is {work[0]} x {work[1]} px at the working scale, smaller than one "
                           f"{config.tile_px} px tile; {fix}")


class _Micrographs(Sequence):
    """Micrographs read on demand (a training set need not fit in memory), size-checked."""

    def __init__(self, paths: Sequence[Path], diameters: Sequence[float], config: PickerConfig):
        self.paths, self.diameters, self.config = list(paths), list(diameters), config

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        image = read_micrograph(self.paths[i])[0]
        _check_size(self.config, image.shape, self.diameters[i], self.paths[i])
        return image


def check_micrographs(paths: Sequence[PathLike], diameter_px: Diameter,
                      config: PickerConfig | None = None) -> dict[str, tuple[int, int]]:
    """Read every micrograph once (readable, finite, 2-D) -> {stem: (H, W)}; stems must be unique.

    With ``config`` each must also hold one tile at the working scale (see :func:`min_micrograph_px`).
    """
    shapes = micrograph_shapes(paths)
    if config is not None:
        for path, shape in zip(paths, shapes.values()):
            _check_size(config, shape, _diameter_of(diameter_px, path), path)
    return shapes


def preprocess_for_training(paths: Sequence[PathLike], diameter_px: Diameter, config: PickerConfig,
                            progress: bool = True) -> list[np.ndarray]:
    """Preprocessed working-scale images in [0, 1] (§3.1, ``config.preprocess``), one per path.

    ``diameter_px``: particle diameter in input px (one value, or a mapping per path / stem).
    """
    paths = [Path(p) for p in paths]
    diams = [_diameter_of(diameter_px, p) for p in paths]
    mics = _Micrographs(paths, diams, config)
    return [config.preprocess(mics[i], diams[i]).image
            for i in tqdm(range(len(paths)), desc="preprocess", disable=None if progress else True)]


# --------------------------------------------------------------------------- pretraining (§3.2, §4.1)
class _PretrainTiles(TileDataset):
    """TileDataset whose ``stats`` (stored in the checkpoint as ``data_stats``) also carry the picker config."""

    def __init__(self, *args: Any, extra: Mapping[str, Any], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.extra = dict(extra)

    @property
    def stats(self) -> dict:
        return {**super().stats, **self.extra}


#: PickerConfig fields that shape the MAE's input; a pretraining checkpoint fixes them for its pickers.
INPUT_FIELDS = ("tile_px", "scale_mode", "target_diameter_px", "target_size", "filter_oversample", "repo_parity",
                "input_mode")


def _config_from(d: Mapping[str, Any] | None) -> PickerConfig:
    """The picker config of a pretraining checkpoint: its input settings, the clustering defaults."""
    return PickerConfig(**{k: v for k, v in (d or {}).items() if k in INPUT_FIELDS})


#: Tokens across a particle when clustering a raw-input (DRACO) encoder's features (see checkpoint_inputs).
RAW_TOKENS_PER_DIAMETER = 5


def checkpoint_inputs(ckpt: Mapping[str, Any], source: PathLike) -> tuple[PickerConfig, float, float]:
    """(picker config, tile mean, tile std) for clustering on a pretraining checkpoint's encoder.

    A Cryo-EMMAE checkpoint (:func:`pretrain_mae`) stores its picker input settings and tile mean/std.
    A DRACO checkpoint (objective ``draco``, or any checkpoint without them) was pretrained on raw
    micrographs standardised per micrograph: its encoder sees ``input_mode="raw"`` working images
    (:func:`cryolib.processing.preprocess.standardized_working_image`, mean 0 / std 1) in tiles of its
    own ``img_size``, with the particle :data:`RAW_TOKENS_PER_DIAMETER` tokens wide. Cryo-EMMAE's own
    picker sees 10 tokens per particle (40 px, patch 4); a patch-16 DRACO encoder at its pretraining
    scale (36-54 px particles) sees only 2-3, too few for the clustering (measured with the shipped
    DRACO on sim-10028, default profile, 5 micrographs: F1 0.02 at 40 px, 0.14 at 64 px, 0.34 at 80 px).
    This is the cross-paper comparison: Cryo-EMMAE's clustering on DRACO's features.
    """
    stats = ckpt.get("data_stats") or {}
    if "picker_config" in stats:
        if "mean" not in stats or "std" not in stats:
            raise CryolibError(f"{source} stores no tile mean/std; pretrain it with cryolib.pick.cryoemmae.pretrain_mae")
        return _config_from(stats["picker_config"]), float(stats["mean"]), float(stats["std"])
    img = (ckpt.get("model_config") or {}).get("img_size")
    if not img:
        raise CryolibError(f"{source} has no model_config.img_size; it is not a cryolib pretraining checkpoint")
    log.info("%s (objective %s) has no Cryo-EMMAE picker settings: clustering its encoder's features on "
             "per-micrograph standardised %d px tiles", source, ckpt.get("objective"), img)
    patch = int((ckpt.get("model_config") or {}).get("patch_size") or 16)
    return PickerConfig(tile_px=int(img), input_mode="raw", target_diameter_px=RAW_TOKENS_PER_DIAMETER * patch), 0.0, 1.0


def pretrain_mae(micrograph_paths: Sequence[PathLike], diameter_px: Diameter, out_dir: PathLike,
                 profile: str = "default", model: str | None = None, epochs: int | None = None, seed: int = 0,
                 resume: bool = False, val_paths: Sequence[PathLike] | None = None, progress: bool = True,
                 config: PickerConfig | None = None, objective: str = "cryoemmae") -> Path:
    """Pretrain the Cryo-EMMAE MAE on micrographs; returns ``out_dir/checkpoint.pt`` (§3.2, §4.1).

    Preprocessing follows ``config`` (default :class:`PickerConfig`: the "diameter" scale mode);
    tiles are standardised by the training tiles' mean/std, which the checkpoint keeps in
    ``data_stats`` with the picker config. Sizes (model, epochs, batch, warm-up, tiles per
    micrograph) come from ``profile``; ``model`` and ``epochs`` override them. ``out_dir`` also gets
    train_log.csv (and val_log.csv with ``val_paths``). ``resume`` continues out_dir's checkpoint.
    ``objective``: the registry name of the recipe trained on these tiles (``cryoemmae``, or ``mae`` for He et al.'s).
    """
    sizes = get_profile(profile)
    p = sizes.pretrain
    paths = [Path(x) for x in micrograph_paths]
    if not paths:
        raise CryolibError("pretrain_mae needs at least one training micrograph")
    cfg = config or PickerConfig(seed=seed)
    objective_name = objective
    objective = get_objective(objective_name, model or p.model)
    n_epochs = p.epochs if epochs is None else int(epochs)
    seed_everything(seed)
    images = preprocess_for_training(paths, diameter_px, cfg, progress)
    mean, std = tile_stats(images, cfg.tile_px)
    extra = {"picker_config": {**dataclasses.asdict(cfg), "ks": list(cfg.ks)},  # plain types: weights_only
             "recipe": objective_name, "profile": profile, "n_micrographs": len(paths)}
    data = _PretrainTiles(images, cfg.tile_px, p.max_tiles_per_micrograph, mean, std, np.random.default_rng(seed),
                          extra=extra)
    val = None
    if val_paths:
        val_images = preprocess_for_training(val_paths, diameter_px, cfg, progress)
        val = TileDataset(val_images, cfg.tile_px, p.max_tiles_per_micrograph, mean, std,
                          np.random.default_rng(seed + 1))
    batch = min(p.batch_size, len(data))
    if batch < p.batch_size:
        log.warning("only %d tiles: batch size %d instead of the profile's %d", len(data), batch, p.batch_size)
    steps_per_epoch = len(data) // batch
    train_cfg = TrainConfig(epochs=n_epochs, batch_size=batch, warmup_epochs=min(p.warmup_epochs, n_epochs / 2),
                            seed=seed, out_dir=Path(out_dir), resume=resume, device=sizes.device,
                            log_every_steps=max(1, min(10, steps_per_epoch)))
    log.info("pretraining %s on %d micrographs (%d tiles, mean %.4f, std %.4f), %d epoch(s)",
             objective.model_name, len(paths), len(data), mean, std, n_epochs)
    result = train(objective, data, train_cfg, val, progress)
    return Path(result.checkpoint)


# --------------------------------------------------------------------------- the picker (§3.2)
def fit_picker(checkpoint: PathLike, train_paths: Mapping[str, Sequence[PathLike]] | Sequence[PathLike],
               reference_image_path: PathLike, reference_coords: pd.DataFrame, diameter_px: Diameter,
               seed: int = 0, reference_diameter_px: float | None = None,
               max_tokens: int | None | str = "config", overrides: Mapping[str, Any] | None = None) -> CryoEMMAEPicker:
    """Fit the global k-means on the training micrographs' embeddings and name the particle cluster
    from ONE annotated micrograph (§3.2).

    ``train_paths``: micrograph paths, or {dataset name: paths}; ``diameter_px``: px, one value or a
    mapping by dataset name, path or stem. ``reference_coords``: x, y in the reference
    micrograph's px. ``max_tokens``: the k-means token cap ("config" keeps the checkpoint's
    PickerConfig value; None uses every token, as the repository does). ``overrides``: other
    :class:`PickerConfig` fields to change (e.g. ``{"particle_fraction": 0.04}``, the repository's).
    """
    model, ckpt = load_model(checkpoint)
    cfg, mean, std = checkpoint_inputs(ckpt, checkpoint)
    unknown = set(overrides or {}) - {f.name for f in dataclasses.fields(PickerConfig)}
    if unknown:
        raise CryolibError(f"unknown picker settings {sorted(unknown)}; see cryolib.pick.cluster.PickerConfig")
    cfg = dataclasses.replace(cfg, **dict(overrides or {}), seed=int(seed))
    if max_tokens != "config":
        cfg.max_tokens = max_tokens  # type: ignore[assignment]
    groups = dict(train_paths) if isinstance(train_paths, Mapping) else {None: list(train_paths)}
    paths, diams, group_of = [], [], {}
    for name, members in groups.items():
        for path in members:
            paths.append(Path(path))
            diams.append(_diameter_of(diameter_px, path, name))
            group_of[Path(path)] = name
    if not paths:
        raise CryolibError("fit_picker needs at least one training micrograph")
    ref_path = Path(reference_image_path)
    ref_d = (pp.check_diameter(reference_diameter_px) if reference_diameter_px is not None
             else _diameter_of(diameter_px, ref_path, group_of.get(ref_path)))
    ref_image = _Micrographs([ref_path], [ref_d], cfg)[0]
    picker = CryoEMMAEPicker(model, mean, std, cfg)
    picker.fit(_Micrographs(paths, diams, cfg), ref_image, reference_coords, diams, reference_diameter_px=ref_d)
    log.info("picker fitted on %d micrographs; particle cluster %d (reference %s)", len(paths),
             picker.particle_cluster, ref_path.name)
    return picker


def set_reference(picker: CryoEMMAEPicker, image: np.ndarray, coords: pd.DataFrame,
                  diameter_px: float) -> CryoEMMAEPicker:
    """A copy of ``picker`` whose particle cluster is re-chosen from one annotated micrograph (§3.2).

    ``image``: the raw micrograph; ``coords``: x, y of its particles in its px; ``diameter_px``: px.
    The encoder, mean/std and k-means centres are shared with ``picker``.
    """
    if picker.kmeans is None:
        raise CryolibError("the picker is not fitted; fit_picker or load_picker first")
    img = pp.check_image(image, "reference micrograph")
    _check_size(picker.config, img.shape, pp.check_diameter(diameter_px), "reference micrograph")
    before = picker.particle_cluster
    new = dataclasses.replace(picker).name_particle_cluster(img, coords, diameter_px)
    if new.particle_cluster != before:
        log.info("reference re-named the particle cluster: %s -> %d", before, new.particle_cluster)
    return new


# --------------------------------------------------------------------------- picking (§3.3)
def _resolve_checkpoint(checkpoint: PathLike | CryoEMMAEPicker | None) -> Path | CryoEMMAEPicker:
    if isinstance(checkpoint, CryoEMMAEPicker):
        return checkpoint
    if checkpoint is None:
        if not DEFAULT_CHECKPOINT.is_file():
            raise CryolibError(f"no checkpoint given and the default checkpoint is not installed at "
                               f"{DEFAULT_CHECKPOINT}; pass --checkpoint (a picker file, or a `cryolib pretrain` "
                               "checkpoint together with --reference-coords)")
        return DEFAULT_CHECKPOINT
    return Path(checkpoint)


@register_picker
class CryoEMMAEMethod(Picker):
    """Cryo-EMMAE (§3.3) as a registered picker. ``checkpoint``: a picker file, a fitted
    :class:`CryoEMMAEPicker`, or a pretraining checkpoint that is fitted on the inputs with the
    reference (seeded by ``seed``); None = :data:`DEFAULT_CHECKPOINT`. The reference names the
    particle cluster; there is no threshold to calibrate (scores are kept, none cut by default)."""

    name = "cryoemmae"
    default_threshold = None

    def prepare(self, paths: list[Path], diameter_px: float, shapes: dict[str, tuple[int, int]], *,
                checkpoint: PathLike | CryoEMMAEPicker | None = None, reference: CheckedReference | None = None,
                seed: int = 0) -> CryoEMMAEPicker:
        """Check the checkpoint and every size at its working scale, then fit or re-name with the reference."""
        source = _resolve_checkpoint(checkpoint)
        picker, pretrained = None, None
        if isinstance(source, CryoEMMAEPicker):
            picker = source
        else:
            obj = read_picker_file(source, allow_pretraining=True)
            if obj["format"] == CHECKPOINT_FORMAT:
                pretrained = obj
            else:
                picker = picker_from_file(obj, source)
        if picker is None and reference is None:
            raise CryolibError(f"{source} is a pretraining checkpoint without a fitted picker; pass "
                               "--reference-coords (one annotated micrograph) to fit it on the inputs, or a picker "
                               "file from save_picker")
        cfg = picker.config if picker is not None else checkpoint_inputs(pretrained, source)[0]
        for path, shape in zip(paths, shapes.values()):
            _check_size(cfg, shape, diameter_px, path)
        if reference is None:
            return picker
        _check_size(cfg, reference.shape, diameter_px, reference.path)
        if picker is not None:
            return set_reference(picker, read_micrograph(reference.path)[0], reference.coords, diameter_px)
        return fit_picker(source, paths, reference.path, reference.coords, diameter_px, seed=seed)

    def pick_all(self, paths: list[Path], diameter_px: float, state: CryoEMMAEPicker, *, seed: int = 0,
                 progress: bool = True) -> dict[str, pd.DataFrame]:
        """Every component of each micrograph's particle mask, scored (§3.3); ``seed`` is the picker's own."""
        return {micrograph_stem(path): state.pick(read_micrograph(path)[0], diameter_px)
                for path in tqdm(paths, desc="pick (cryoemmae)", disable=None if progress else True)}

    def calibrate(self, reference: tuple[PathLike, pd.DataFrame], diameter_px: float, *, checkpoint: Any = None,
                  seed: int = 0) -> None:
        """None (after checking the reference): Cryo-EMMAE has no score threshold; the reference names
        its particle cluster instead."""
        pp.check_diameter(diameter_px)
        check_reference(reference)
        return None

    def calibrate_prepared(self, ref: CheckedReference, diameter_px: float, state: Any, seed: int) -> None:
        return None
