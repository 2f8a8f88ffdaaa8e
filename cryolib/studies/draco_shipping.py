"""Ship a DRACO checkpoint: the model alone (no optimiser state), small enough for the package, with a card.

The shipped file is still a cryolib checkpoint (``format``, ``objective``, ``model_config``,
``model``, ``data_stats``), so :func:`cryolib.training.checkpoint.load_model` rebuilds it; weights
may be stored as float16 (they are cast back to float32 on load). ``install=True`` also copies the
file and its card to ``cryolib/assets/<name>.{pt,md}``, atomically: ``draco_default`` (the backbone that
curation and the detector start from) or ``draco_denoiser`` (what ``cryolib denoise`` uses).
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
import torch

from cryolib.core.atomic import atomic_write_bytes, atomic_write_text
from cryolib.core.errors import CryolibError
from cryolib.core.jsonable import to_jsonable
from cryolib.core.provenance import git_commit
from cryolib.training.checkpoint import CHECKPOINT_FORMAT, load_checkpoint

__all__ = ["ASSETS_DIR", "DEFAULT_NAME", "DENOISER_NAME", "MAX_MB", "shipped_draco", "ship_draco", "draco_card",
           "denoiser_notes"]

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_NAME = "draco_default"
DENOISER_NAME = "draco_denoiser"
MAX_MB = 20.0
#: What the shipped file keeps of a training checkpoint (no optimiser, scaler, RNG or history).
KEPT = ("objective", "objective_config", "model_config", "data_stats", "step", "epoch", "torch_version")


def shipped_draco(assets_dir: str | Path | None = None) -> Path:
    """Path of the shipped DRACO model; a clear :class:`CryolibError` while it does not exist."""
    path = Path(assets_dir or ASSETS_DIR) / f"{DEFAULT_NAME}.pt"
    if not path.is_file():
        raise CryolibError(f"{path} does not exist yet: run notebooks/04_pretrain_draco.ipynb at the default profile "
                           "(it ships the model), or pass your own DRACO checkpoint")
    return path


def _slim(ckpt: dict, dtype: torch.dtype, provenance: dict) -> bytes:
    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    slim = {"format": CHECKPOINT_FORMAT, **{k: ckpt[k] for k in KEPT if k in ckpt}, "model": state,
            "weights_dtype": str(dtype).removeprefix("torch."), "provenance": provenance,
            "history": [], "val_history": []}
    buffer = io.BytesIO()
    torch.save(slim, buffer)
    return buffer.getvalue()


def ship_draco(checkpoint: str | Path, out_dir: str | Path, install: bool = False, *, name: str = DEFAULT_NAME,
               dtype: str = "auto", profile: str | None = None, data: Sequence[str] = (),
               measured: pd.DataFrame | None = None, notes: str = "", max_mb: float = MAX_MB,
               assets_dir: str | Path | None = None) -> dict[str, Path]:
    """Write ``out_dir/<name>.pt`` (encoder + decoder + neck; no optimiser) and ``<name>.md`` (model card).

    ``dtype``: "float32", "float16" or "auto" (float32 when it fits in ``max_mb`` MB, else float16).
    ``profile``, ``data`` (the pretraining analogs) and ``measured`` (a table of this run's numbers)
    go into the card. ``install``: also copy both to ``assets_dir`` (default ``cryolib/assets``).
    Everything is checked before anything is written. Returns {"checkpoint", "card"[, "installed"]}; the
    installed copy is ``<assets_dir>/<name>.pt``.
    """
    ckpt = load_checkpoint(checkpoint)
    if ckpt.get("objective") != "draco":
        raise CryolibError(f"{checkpoint} holds a {ckpt.get('objective')!r} model, not DRACO; ship a DRACO checkpoint "
                           "(e.g. draco_checkpoints(profile)['draco-b'])")
    if dtype not in ("auto", "float32", "float16"):
        raise CryolibError(f"dtype must be 'auto', 'float32' or 'float16', got {dtype!r}")
    prov = {"source_checkpoint": to_jsonable(Path(checkpoint)), "git_commit": git_commit(), "profile": profile,
            "data": list(data), "shipped": time.strftime("%Y-%m-%dT%H:%M:%S")}
    blob = _slim(ckpt, torch.float16 if dtype == "float16" else torch.float32, prov)
    if dtype == "auto" and len(blob) > max_mb * 2**20:
        blob = _slim(ckpt, torch.float16, prov)
    size_mb = len(blob) / 2**20
    if size_mb > max_mb:
        raise CryolibError(f"{checkpoint}: the shipped model would take {size_mb:.1f} MB, over {max_mb} MB; "
                           "ship a smaller size or pass dtype='float16'")
    card = draco_card(torch.load(io.BytesIO(blob), weights_only=True), f"{name}.pt", size_mb, measured, notes)
    out_dir = Path(out_dir)
    paths = {"checkpoint": atomic_write_bytes(out_dir / f"{name}.pt", blob),
             "card": atomic_write_text(out_dir / f"{name}.md", card)}
    if install:
        assets = Path(assets_dir or ASSETS_DIR)
        paths["installed"] = atomic_write_bytes(assets / f"{name}.pt", blob)
        atomic_write_text(assets / f"{name}.md", card)
    return paths


def denoiser_notes(epochs: int, backbone_epochs: int) -> str:
    """The denoiser card's note: how it relates to the backbone ``draco_default.pt`` and why it is trained longer."""
    if int(epochs) == int(backbone_epochs):
        return f"**Denoiser.** The same run as the backbone `{DEFAULT_NAME}.pt` ({int(epochs)} DRACO epochs)."
    return (f"**Why a separate denoiser.** This is DRACO-B trained for {int(epochs)} DRACO epochs; the backbone "
            f"`{DEFAULT_NAME}.pt` (curation, detector) is the same size trained for {int(backbone_epochs)} from the "
            "same warm-up. The shorter run's output is a mosaic of 16 px patch means; the longer run learns detail "
            "inside the patches (benchmarks/draco_training_length.py: true SNR, particle-band SNR and Fourier ring "
            "correlation with the clean image), and on real micrographs (benchmarks/realdata.py) particles show in "
            "its output. Its frozen features transfer worse to held-out analogs for curation (notebook 06's probe "
            "per length: tables/draco_training_length_curation.md), so the backbone stays the shorter run.")


def draco_card(shipped: Mapping, filename: str, size_mb: float, measured: pd.DataFrame | None = None,
               notes: str = "") -> str:
    """The Markdown model card of a shipped DRACO file (its config, data, provenance and measured numbers)."""
    cfg, prov, stats = shipped["model_config"], shipped["provenance"], shipped.get("data_stats") or {}
    obj = shipped.get("objective_config") or {}
    n_params = sum(v.numel() for v in shipped["model"].values())
    lines = [
        f"# Model card: `{filename}` (DRACO)",
        "",
        "**What it is.** A denoising-reconstruction autoencoder (DRACO, 2024 §4): the shared ViT encoder, its decoder",
        "and the residual conv neck, pretrained on (full, odd, even) micrograph triplets after a plain-MAE warm-up.",
        "Use it for zero-shot denoising (`cryolib.models.draco.denoise_tiles`, all patches visible) or as a backbone.",
        "Load it with `cryolib.training.checkpoint.load_model(path)`.",
        "",
        f"- Model: `{cfg['name']}`: encoder {cfg['embed_dim']} wide, {cfg['depth']} deep, {cfg['num_heads']} heads; decoder "
        f"{cfg['decoder_embed_dim']}/{cfg['decoder_depth']}/{cfg['decoder_num_heads']}; patch {cfg['patch_size']} px on "
        f"{cfg['img_size']} px crops; {n_params:,} parameters stored as {shipped['weights_dtype']} ({size_mb:.1f} MB).",
        f"- Objective: mask ratio {obj.get('mask_ratio')}, N2N {obj.get('n2n')}, recon {obj.get('recon')} "
        f"(λ = {obj.get('recon_weight')}); {shipped.get('epoch')} DRACO epochs, {shipped.get('step')} steps.",
        f"- Input units: tiles standardised as (x - {stats.get('mean', float('nan')):.4g}) / "
        f"{stats.get('std', float('nan')):.4g} ({stats.get('units', 'see data_stats')}); `denoise_tiles(model, tiles, "
        "mean, std)` does it and maps the output back.",
        f"- Trained on: {', '.join(prov.get('data') or []) or 'see the source run'} (train splits), profile "
        f"`{prov.get('profile')}`.",
        f"- Provenance: commit `{prov.get('git_commit')}`, source `{prov.get('source_checkpoint')}`, shipped "
        f"{prov.get('shipped')}.",
        "",
        "**Data.** Only simulated analogs of EMPIAR sets (`cryolib/io/datasets.yaml`) made by `cryolib.simulate`; it has",
        "never seen a real micrograph. The DRACO denoising, picking and generalisation analogs were not used in training.",
        "",
    ]
    if measured is not None and len(measured):
        lines += ["**Measured in the same run** (notebook 04; tiles/s on this run's machine):", "",
                  measured.to_markdown(index=False, floatfmt=".3f"), ""]
    if notes:
        lines += [notes, ""]
    return "\n".join(lines)
