"""Notebook 04's study: DRACO pretraining (DRACO 2024 §4-5) at two sizes, with its plain-MAE baseline.

Per size (``"draco-b"``, ``"draco-l"``: the profile's stand-ins for DRACO-B/L), two stages of the one
loop (:func:`cryolib.training.loop.train`), both resumable:

1. warm-up (§5: "MAE training scheme for 200 epochs"): plain MAE (``get_objective("mae")``) on the
   full-dose tiles (:meth:`TripletDataset.full_view`), ``<runs>/draco/warmup_<model>_<W>ep/``;
2. DRACO (§4) initialised from it (``draco_objective(init_from=...)``), ``<runs>/draco/<key>/``.

The baseline ``"mae"`` (notebooks 05/06) is the plain MAE of the B size trained on the same tiles for
the same total number of epochs (warm-up + DRACO), ``<runs>/draco/mae/``. Data: the train splits of
the profile's pretraining analogs (:class:`cryolib.core.profiles.DracoSizes`), validated on their
val splits. A rerun reuses finished checkpoints (``resume=True``). Shipping: :mod:`.draco_shipping`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from cryolib.core.errors import CryolibError
from cryolib.core.profiles import DracoSizes, get_profile
from cryolib.core.results import run_dir
from cryolib.io.datasets import Dataset, dataset_dir, datasets_with_role, load_dataset
from cryolib.io.micrographs import read_micrograph
from cryolib.models.draco import draco_objective
from cryolib.models.draco_masks import complementary_masking
from cryolib.models.objectives import get_objective
from cryolib.models.vit import get_config, unpatchify
from cryolib.processing.triplets import KEYS, TripletDataset
from cryolib.studies.draco_shipping import DENOISER_NAME, denoiser_notes, ship_draco  # noqa: F401  (for notebook 04)
from cryolib.training.checkpoint import load_checkpoint, load_model
from cryolib.training.loop import CHECKPOINT_NAME, TRAIN_LOG_NAME, TrainConfig, train

log = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_KEYS", "draco_checkpoints", "pretraining_datasets", "pretraining_triplets", "warm_up", "train_draco",
    "pretrain_draco_on", "pretrain_draco", "ABLATIONS", "pretrain_draco_ablations", "training_curves",
    "throughput_table", "pretraining_claims", "pretraining_metrics", "figure2_example", "ship_draco",
    "warmup_run_dir", "length_run_dir", "train_length", "shipping_checkpoint", "DENOISER_NAME", "denoiser_notes",
]

#: The checkpoints notebook 04 writes and notebooks 05/06/08 read.
CHECKPOINT_KEYS = ("mae", "draco-b", "draco-l")
#: §5: warm-up 200 epochs in 6 h and DRACO 400 epochs in 16 h on 64 A800 GPUs, batch 4096, and
#: 270,000 micrographs cropped 16 times per epoch (so crops/s below are derived, not quoted).
PAPER = {"warmup": {"epochs": 200, "hours": 6.0}, "draco": {"epochs": 400, "hours": 16.0},
         "gpus": "64 x A800", "batch": 4096, "crops_per_epoch": 270_000 * 16}


def draco_checkpoints(profile: str, runs_root: str | Path | None = None) -> dict[str, Path]:
    """{"mae", "draco-b", "draco-l"} -> ``runs/<profile>/draco/<key>/checkpoint.pt`` (may not exist yet)."""
    get_profile(profile)
    root = run_dir(profile, runs_root) / "draco"
    return {key: root / key / CHECKPOINT_NAME for key in CHECKPOINT_KEYS}


def pretraining_datasets(profile: str, data_root: str | Path | None = None) -> list[Dataset]:
    """The profile's pretraining analogs (role ``DracoSizes.pretrain_role``), opened from the data folder."""
    names = datasets_with_role(get_profile(profile).draco.pretrain_role)
    missing = [dataset_dir(n, profile, data_root) for n in names
               if not (dataset_dir(n, profile, data_root) / "micrographs").is_dir()]
    if missing:
        raise CryolibError(f"DRACO pretraining data missing: {', '.join(map(str, missing))}; simulate them first "
                           f"(notebook 01, or `cryolib simulate --profile {profile}`)")
    return [load_dataset(dataset_dir(n, profile, data_root)) for n in names]


def _read_triplets(datasets: Sequence[Dataset], split: str) -> dict[str, list[np.ndarray]]:
    images: dict[str, list[np.ndarray]] = {key: [] for key in KEYS}
    for ds in datasets:
        for path in ds.split(split):
            for key in KEYS:
                file = ds.path_of(path.stem, key)
                if not file.is_file():
                    raise CryolibError(f"{file} is missing: DRACO needs movies/{{full,odd,even}}/ triplets "
                                       "(simulate the dataset with cryolib, or motion-correct odd/even halves)")
                images[key].append(read_micrograph(file)[0])
    return images


def pretraining_triplets(datasets: Sequence[Dataset], sizes: DracoSizes, seed: int = 0
                         ) -> tuple[TripletDataset, TripletDataset | None]:
    """(train, val) triplets of the datasets' train and val splits; val uses train's mean/std, no augmentation."""
    train_images = _read_triplets(datasets, "train")
    if not train_images["full"]:
        raise CryolibError(f"no train-split micrographs in {', '.join(str(d.root) for d in datasets)}")
    rng = np.random.default_rng(seed)
    train_set = TripletDataset(*(train_images[k] for k in KEYS), tile_px=sizes.tile_px,
                               max_tiles_per_image=sizes.max_tiles_per_micrograph, rng=rng)
    val_images = _read_triplets(datasets, "val")
    val_set = None
    if val_images["full"]:
        val_set = TripletDataset(*(val_images[k] for k in KEYS), tile_px=sizes.tile_px,
                                 max_tiles_per_image=sizes.max_tiles_per_micrograph, mean=train_set.mean,
                                 std=train_set.std, augment=False, rng=rng)
    return train_set, val_set


def _with_lr(objective, base_lr: float):
    """The objective with its optimiser's base lr replaced (the profile's; recorded in the checkpoint)."""
    objective.optim = dataclasses.replace(objective.optim, base_lr=float(base_lr))
    return objective


def _stage(objective, data, val, out_dir: Path, sizes: DracoSizes, epochs: int, seed: int, device: str,
           progress: bool, resume: bool = True) -> Path:
    """One run of the loop into ``out_dir`` (continuing its checkpoint when ``resume``); returns the checkpoint."""
    batch = max(1, min(sizes.batch_size, len(data)))
    steps_per_epoch = len(data) // batch
    config = TrainConfig(epochs=int(epochs), batch_size=batch, warmup_epochs=min(sizes.lr_warmup_epochs, epochs / 2),
                         seed=seed, out_dir=out_dir, resume=resume, device=device,
                         log_every_steps=max(1, steps_per_epoch // 4))
    log.info("%s (%s): %d tiles, batch %d, %d epoch(s) -> %s", objective.name, objective.model_name, len(data),
             batch, epochs, out_dir)
    return Path(train(objective, data, config, val_dataset=val, progress=progress).checkpoint)


def warmup_run_dir(out_root: str | Path, sizes: DracoSizes, model: str) -> Path:
    """The plain-MAE warm-up run of ``model`` under ``out_root``, shared by every DRACO run of that size."""
    return Path(out_root) / f"warmup_{model}_{sizes.warmup_epochs}ep"


def length_run_dir(out_root: str | Path, epochs: int) -> Path:
    """The DRACO-B run of ``epochs`` DRACO epochs after notebook 04's warm-up (the shipped model when
    ``DracoSizes.shipped_epochs`` differs from ``epochs``; benchmarks/draco_training_length.py's runs)."""
    return Path(out_root) / f"length_{int(epochs)}ep"


def train_length(train_set: TripletDataset, val_set: TripletDataset | None, sizes: DracoSizes, out_root: str | Path,
                 epochs: int, *, seed: int = 0, device: str = "cpu", progress: bool = True) -> Path:
    """DRACO-B (``sizes.model_b``) for ``epochs`` DRACO epochs from notebook 04's warm-up, in
    :func:`length_run_dir` under ``out_root`` (a finished run is reused): the one definition of the run that
    the shipped denoiser and the training-length study share."""
    out_root = Path(out_root)
    return train_draco(train_set, val_set, sizes, sizes.model_b, length_run_dir(out_root, epochs),
                       warmup_dir=warmup_run_dir(out_root, sizes, sizes.model_b), epochs=int(epochs), seed=seed,
                       device=device, progress=progress)


def shipping_checkpoint(profile: str, data_root: str | Path | None = None, runs_root: str | Path | None = None,
                        seed: int = 0, progress: bool = True) -> Path:
    """The DRACO-B checkpoint notebook 04 ships: its own DRACO-B when ``DracoSizes.shipped_epochs`` is None or
    ``epochs``; else DRACO-B trained for ``shipped_epochs`` from the same warm-up, on the same tiles, seed and lr
    schedule (:func:`train_length`; benchmarks/draco_training_length.py scores the same run under that
    length, so whichever runs first trains it and the other reuses it)."""
    prof = get_profile(profile)
    sizes, root = prof.draco, run_dir(profile, runs_root) / "draco"
    if sizes.shipped_epochs in (None, sizes.epochs):
        return draco_checkpoints(profile, runs_root)["draco-b"]
    train_set, val_set = pretraining_triplets(pretraining_datasets(profile, data_root), sizes, seed=seed)
    return train_length(train_set, val_set, sizes, root, sizes.shipped_epochs, seed=seed, device=prof.device,
                        progress=progress)


def _run_name(key: str, tag: str | None) -> str:
    return key if tag is None else f"{key}_{tag}"


def pretrain_draco_on(train_set: TripletDataset, val_set: TripletDataset | None, sizes: DracoSizes,
                      out_root: str | Path, keys: Iterable[str] = ("draco-b", "draco-l"), *,
                      mask_ratio: float | None = None, n2n: bool = True, recon: bool = True, tag: str | None = None,
                      mae_baseline: bool = True, seed: int = 0, device: str = "cpu", progress: bool = True
                      ) -> dict[str, Path]:
    """Warm-up + DRACO per key of ``keys`` into ``out_root`` (module docstring), and with ``mae_baseline``
    the plain MAE of ``model_b`` for warm-up + DRACO epochs; returns {key: checkpoint} ("mae" first).

    Key "ablation" uses ``sizes.ablation_model`` and ``sizes.ablation_epochs``. ``tag`` names the DRACO
    runs ``<key>_<tag>`` (the warm-up is shared: it does not depend on γ or the loss terms).
    """
    out_root, gamma = Path(out_root), sizes.mask_ratio if mask_ratio is None else float(mask_ratio)
    keys = list(keys)
    models = {key: sizes.model_for(key) for key in keys}  # raises on unknown keys before any training
    bad = {k: m for k, m in models.items() if get_config(m).img_size != sizes.tile_px}
    if bad:
        raise CryolibError(f"models {bad} do not take {sizes.tile_px} px crops; DracoSizes.tile_px must equal "
                           "their img_size")
    for model in set(models.values()):
        draco_objective(model, mask_ratio=gamma, n2n=n2n, recon=recon)  # bad γ or terms raise before training
    out: dict[str, Path] = {}
    if mae_baseline:
        mae = _with_lr(get_objective("mae", sizes.model_b), sizes.base_lr)
        out["mae"] = _stage(mae, train_set.full_view(), None if val_set is None else val_set.full_view(), out_root / "mae", sizes,
                            sizes.warmup_epochs + sizes.epochs, seed, device, progress)
    for key, model in models.items():
        out[key] = train_draco(train_set, val_set, sizes, model, out_root / _run_name(key, tag),
                               warmup_dir=warmup_run_dir(out_root, sizes, model),
                               epochs=sizes.ablation_epochs if key == "ablation" else sizes.epochs,
                               mask_ratio=gamma, n2n=n2n, recon=recon, seed=seed, device=device, progress=progress)
    return out


def warm_up(train_set: TripletDataset, val_set: TripletDataset | None, sizes: DracoSizes, model: str,
            out_dir: str | Path, *, seed: int = 0, device: str = "cpu", progress: bool = True,
            resume: bool = True) -> Path:
    """DRACO's plain-MAE warm-up (§5) of size ``model`` on the full images of the triplets, for
    ``sizes.warmup_epochs`` at the profile's lr, into ``out_dir`` (a finished run is reused)."""
    warm = _with_lr(get_objective("mae", model), sizes.base_lr)
    return _stage(warm, train_set.full_view(), None if val_set is None else val_set.full_view(), Path(out_dir), sizes,
                  sizes.warmup_epochs, seed, device, progress, resume)


def train_draco(train_set: TripletDataset, val_set: TripletDataset | None, sizes: DracoSizes, model: str,
                out_dir: str | Path, *, init_from: str | Path | None = None, warmup_dir: str | Path | None = None,
                epochs: int | None = None, mask_ratio: float | None = None, n2n: bool = True, recon: bool = True,
                seed: int = 0, device: str = "cpu", progress: bool = True, resume: bool = True,
                warmup: bool = True) -> Path:
    """One DRACO model (§4) of size ``model`` into ``out_dir``, initialised from ``init_from`` (a MAE
    checkpoint of the same size), else from a plain-MAE warm-up of ``sizes.warmup_epochs`` trained
    into ``warmup_dir`` (§5); ``warmup=False`` skips the warm-up (random initialisation, not the
    paper's recipe). ``epochs`` default ``sizes.epochs``. Returns the DRACO checkpoint."""
    gamma = sizes.mask_ratio if mask_ratio is None else float(mask_ratio)
    draco = draco_objective(model, mask_ratio=gamma, n2n=n2n, recon=recon)  # checks γ, terms and size first
    if not warmup and init_from is not None:
        raise CryolibError("train_draco: warmup=False starts from a random initialisation; leave init_from out")
    if not warmup:
        log.info("DRACO %s from a random initialisation (no warm-up)", model)
    elif init_from is None:
        if warmup_dir is None:
            raise CryolibError("train_draco needs init_from (a MAE checkpoint) or warmup_dir (where to warm up)")
        init_from = warm_up(train_set, val_set, sizes, model, warmup_dir, seed=seed, device=device,
                            progress=progress, resume=resume)
    draco.init_from = None if init_from is None else str(init_from)
    draco = _with_lr(draco, sizes.base_lr)
    return _stage(draco, train_set, val_set, Path(out_dir), sizes, sizes.epochs if epochs is None else int(epochs),
                  seed, device, progress, resume)


def pretrain_draco(profile: str, data_root: str | Path | None = None, runs_root: str | Path | None = None,
                   seed: int = 0, sizes: Sequence[str] = ("draco-b", "draco-l"), mask_ratio: float | None = None,
                   n2n: bool = True, recon: bool = True, tag: str | None = None, progress: bool = True
                   ) -> dict[str, Path]:
    """Notebook 04: warm-up + DRACO for each of ``sizes`` on the profile's pretraining analogs, plus (when
    ``tag`` is None) the plain-MAE baseline "mae"; checkpoints under ``runs/<profile>/draco/``.

    With ``tag=None`` and the default sizes the paths are :func:`draco_checkpoints`'. Sizes:
    "draco-b", "draco-l", or "ablation" (notebook 08's size and epochs).
    """
    prof = get_profile(profile)
    train_set, val_set = pretraining_triplets(pretraining_datasets(profile, data_root), prof.draco, seed=seed)
    return pretrain_draco_on(train_set, val_set, prof.draco, run_dir(profile, runs_root) / "draco", sizes,
                             mask_ratio=mask_ratio, n2n=n2n, recon=recon, tag=tag, mae_baseline=tag is None, seed=seed,
                             device=prof.device, progress=progress)


def _ablation_variants(sizes: DracoSizes) -> dict[str, dict]:
    variants = {f"mask{g:g}": {"mask_ratio": g} for g in sizes.ablation_mask_ratios}  # Table 5
    variants.update({"no-n2n": {"n2n": False}, "no-recon": {"recon": False}})  # Table 6
    return variants


#: Names of notebook 08's ablation runs (every profile trains Table 5's four mask ratios).
ABLATIONS = tuple(_ablation_variants(get_profile("default").draco))


def pretrain_draco_ablations(profile: str, data_root: str | Path | None = None, runs_root: str | Path | None = None,
                             seed: int = 0, progress: bool = True) -> dict[str, Path]:
    """Notebook 08: DRACO at the profile's ablation size for Table 5's mask ratios and Table 6's loss
    variants (w/o N2N, w/o recon), all from one shared warm-up -> {variant: checkpoint}."""
    prof = get_profile(profile)
    train_set, val_set = pretraining_triplets(pretraining_datasets(profile, data_root), prof.draco, seed=seed)
    root = run_dir(profile, runs_root) / "draco"
    return {name: pretrain_draco_on(train_set, val_set, prof.draco, root, ["ablation"], tag=name, mae_baseline=False,
                                    seed=seed, device=prof.device, progress=progress, **options)["ablation"]
            for name, options in _ablation_variants(prof.draco).items()}


def training_curves(checkpoints: Mapping[str, str | Path]) -> pd.DataFrame:
    """Long table of the train logs: run, objective, step, epoch, term, value (terms: loss, loss_n2n,
    loss_recon for DRACO; loss = masked-patch MSE for MAE)."""
    frames = []
    for run, ckpt in checkpoints.items():
        path = Path(ckpt).parent / TRAIN_LOG_NAME
        if not path.is_file():
            raise CryolibError(f"{path} is missing; was {ckpt} written by the training loop?")
        df = pd.read_csv(path)
        terms = [t for t in ("loss", "loss_n2n", "loss_recon") if t in df]
        long = df.melt(id_vars=["step", "epoch"], value_vars=terms, var_name="term", value_name="value")
        frames.append(long.assign(run=run, objective="draco" if "loss_n2n" in df else "mae"))
    return pd.concat(frames, ignore_index=True)[["run", "objective", "step", "epoch", "term", "value"]]


def _run_row(run: str, ckpt_path: Path) -> dict:
    ckpt = load_checkpoint(ckpt_path)
    df = pd.read_csv(Path(ckpt_path).parent / TRAIN_LOG_NAME)
    stage = "DRACO" if ckpt["objective"] == "draco" else ("MAE warm-up" if run.startswith("warmup") else "MAE")
    paper = PAPER["draco" if stage == "DRACO" else "warmup"]
    n_params = sum(v.numel() for v in ckpt["model"].values())
    last = df[df["epoch"] == df["epoch"].max()]
    return {"run": run, "stage": stage, "model": ckpt["model_config"]["name"], "parameters_M": n_params / 1e6,
            "epochs": int(ckpt["epoch"]), "steps": int(ckpt["step"]), "tiles_seen": int(df["samples"].sum()),
            "tiles_per_s": float(df["images_per_s"].median()),
            "train_s": float((df["samples"] / df["images_per_s"]).sum()),
            "final_loss": float(last["loss"].mean()),
            "final_loss_n2n": float(last["loss_n2n"].mean()) if "loss_n2n" in last else math.nan,
            "final_loss_recon": float(last["loss_recon"].mean()) if "loss_recon" in last else math.nan,
            "paper_epochs": paper["epochs"], "paper_hours": paper["hours"], "paper_hardware": PAPER["gpus"],
            "paper_crops_per_s": PAPER["crops_per_epoch"] * paper["epochs"] / (paper["hours"] * 3600)}


def throughput_table(checkpoints: Mapping[str, str | Path], shipping: str | Path | None = None) -> pd.DataFrame:
    """One row per run (warm-ups included): size, epochs, steps, tiles/s (median of the train log rows,
    this machine), training seconds, last-epoch losses, beside the paper's epochs, hours and crops/s
    (derived from §5: 270,000 micrographs x 16 crops per epoch). ``shipping`` (:func:`shipping_checkpoint`)
    adds the shipped run as "shipped (<run folder>)" when it is none of ``checkpoints``."""
    runs = dict(checkpoints)
    if shipping is not None and Path(shipping) not in {Path(p) for p in runs.values()}:
        runs[f"shipped ({Path(shipping).parent.name})"] = Path(shipping)
    for ckpt in list(runs.values()):
        init = (load_checkpoint(ckpt)["objective_config"] or {}).get("init_from")
        if init and Path(init).is_file():
            runs.setdefault(Path(init).parent.name, Path(init))
    return pd.DataFrame([_run_row(run, Path(path)) for run, path in runs.items()])


def pretraining_claims(curves: pd.DataFrame, throughput: pd.DataFrame) -> pd.DataFrame:
    """Notebook 04's claims: both DRACO terms fall during pretraining (Eq. 8-10 are minimised), and a
    DRACO epoch costs more than a MAE epoch (§5: 16 h / 400 epochs vs 6 h / 200 epochs, 1.33x)."""
    rows = []
    for run, g in curves[curves["objective"] == "draco"].groupby("run", sort=False):
        for term in ("loss_n2n", "loss_recon"):
            t = g[g["term"] == term]
            first, last = t[t["epoch"] == t["epoch"].min()]["value"], t[t["epoch"] == t["epoch"].max()]["value"]
            start = float(t.sort_values("step")["value"].iloc[0]) if len(first) else math.nan
            rows.append({"claim": f"{term} falls during pretraining ({run})", "paper": "minimised (Eq. 8-10)",
                         "ours": f"{start:.3f} (first log row) -> {last.mean():.3f} (last epoch)",
                         "holds": bool(last.mean() < start)})
    by_stage = throughput.groupby(["model", "stage"])["tiles_per_s"].median()
    for model in throughput.loc[throughput["stage"] == "DRACO", "model"].unique():
        mae = [by_stage.get((model, s)) for s in ("MAE warm-up", "MAE") if (model, s) in by_stage]
        if mae:
            ratio = float(np.median(mae)) / float(by_stage[(model, "DRACO")])
            paper = (PAPER["draco"]["hours"] / PAPER["draco"]["epochs"]) / (PAPER["warmup"]["hours"] / PAPER["warmup"]["epochs"])
            rows.append({"claim": f"a DRACO epoch costs more than a MAE epoch ({model})", "paper": f"{paper:.2f}x",
                         "ours": f"{ratio:.2f}x", "holds": bool(ratio > 1.0)})
    return pd.DataFrame(rows, columns=["claim", "paper", "ours", "holds"])


def pretraining_metrics(throughput: pd.DataFrame, claims: pd.DataFrame,
                        shipped: Mapping[str, str | Path] | None = None,
                        denoiser: Mapping[str, str | Path] | None = None) -> dict:
    """Notebook 04's ``metrics.json`` section: per run steps, last-epoch losses and tiles/s; the claims;
    the shipped files' sizes in MB (``shipped``, ``denoiser``: what :func:`ship_draco` returned)."""
    keys = ("steps", "tiles_per_s", "final_loss", "final_loss_n2n", "final_loss_recon")
    runs = {str(r["run"]): {k: (None if isinstance(r[k], float) and math.isnan(r[k]) else r[k]) for k in keys}
            for r in throughput.to_dict("records")}
    out = {"runs": runs, "claims_hold": {str(c["claim"]): bool(c["holds"]) for c in claims.to_dict("records")}}
    if shipped is not None:
        out["shipped_mb"] = Path(shipped["checkpoint"]).stat().st_size / 2**20
        out["installed"] = "installed" in shipped
    if denoiser is not None:
        out["denoiser_mb"] = Path(denoiser["checkpoint"]).stat().st_size / 2**20
        out["denoiser_installed"] = "installed" in denoiser
    return out


def _grid_image(values: torch.Tensor, patch: int, grid: tuple[int, int]) -> np.ndarray:
    """Per-patch values [L] -> a [h·p, w·p] image (each patch filled with its value)."""
    return np.kron(values.reshape(grid).numpy(), np.ones((patch, patch), dtype=np.float32))


@torch.no_grad()
def figure2_example(checkpoint: str | Path, triplets: TripletDataset, index: int = 0, seed: int = 0) -> dict[str, np.ndarray]:
    """DRACO Figure 2 on one triplet: {odd, even, full, odd_visible, even_visible, mask_code (0 masked in
    both, 1 odd-visible, 2 even-visible), n2n_target, recon_target, prediction, denoised}, all [t, t] in
    the standardised full-dose units; masked pixels are NaN in the ``*_visible``/``*_target`` images."""
    model, _ = load_model(checkpoint)
    full, odd, even = (torch.from_numpy(np.ascontiguousarray(a))[None, None] for a in triplets.tiles(index))
    p = model.cfg.patch_size
    grid = (full.shape[-2] // p, full.shape[-1] // p)
    gen = torch.Generator().manual_seed(seed)
    gamma = float(load_checkpoint(checkpoint)["objective_config"].get("mask_ratio", 0.75))
    masks = complementary_masking(1, grid[0] * grid[1], gamma, generator=gen)
    pred = model.forward_decoder(*model.forward_encoder(odd, even, masks), masks)  # [1, L, p²]
    vis_odd, vis_even = 1.0 - masks.mask_odd[0], 1.0 - masks.mask_even[0]  # [L]
    code = _grid_image(vis_odd + 2.0 * vis_even, p, grid)
    o, e, f = odd[0, 0].numpy(), even[0, 0].numpy(), full[0, 0].numpy()
    nan = np.full_like(f, np.nan)
    return {"odd": o, "even": e, "full": f, "mask_code": code,
            "odd_visible": np.where(code == 1, o, nan), "even_visible": np.where(code == 2, e, nan),
            "n2n_target": np.where(code == 1, e, np.where(code == 2, o, nan)),
            "recon_target": np.where(code == 0, f, nan),
            "prediction": unpatchify(pred, p, 1, grid)[0, 0].numpy(),
            "denoised": model.denoise(full)[0, 0].numpy()}
