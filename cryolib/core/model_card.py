"""Model cards for shipped picker checkpoints: what the model is, what it saw, how well it does."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from cryolib.core.atomic import atomic_write_text


def picker_card(picker_path: str | Path) -> dict:
    """The provenance and card stored in a picker file (no model is built)."""
    obj = torch.load(Path(picker_path), map_location="cpu", weights_only=True)
    n_params = sum(v.numel() for v in obj["encoder"].values())
    return {"model_name": obj["model_name"], "model_config": obj["model_config"], "encoder_parameters": int(n_params),
            "encoder_dtype": obj["encoder_dtype"], "picker": {k: v for k, v in obj["picker"].items() if k != "centres"},
            "provenance": obj["provenance"], "card": obj["card"]}


def write_model_card(picker_path: str | Path, out_md: str | Path, evaluation: pd.DataFrame, notes: str = "") -> Path:
    """Write a Markdown model card beside a picker file, with its measured ``evaluation`` table."""
    info = picker_card(picker_path)
    size_mb = Path(picker_path).stat().st_size / 2**20
    cfg = info["model_config"]
    lines = [
        f"# Model card: `{Path(picker_path).name}` (Cryo-EMMAE picker)",
        "",
        "**What it is.** The encoder of a masked autoencoder (Cryo-EMMAE, Zamanos et al. 2024) plus the 4 k-means",
        "centres fitted on its embeddings and the index of the particle cluster. `cryolib pick --method cryoemmae`",
        "uses it when no `--checkpoint` is given.",
        "",
        f"- Encoder: `{info['model_name']}`: {cfg['embed_dim']} wide, {cfg['depth']} deep, {cfg['num_heads']} heads, "
        f"patch {cfg['patch_size']} px on {cfg['img_size']} px tiles; {info['encoder_parameters']:,} parameters "
        f"stored as {info['encoder_dtype']} ({size_mb:.1f} MB file).",
        f"- Picker settings: {info['picker'].get('config')}",
        f"- Trained on: {info['card']}",
        f"- Provenance: {info['provenance']}",
        "",
        "**Data.** Only simulated analogs of EMPIAR sets (`cryolib/io/datasets.yaml`), made by `cryolib.simulate`; it has",
        "never seen a real micrograph. Give it one annotated micrograph of your data (`--reference-coords`) so the",
        "particle cluster is chosen on your data.",
        "",
        "**Measured on the generalisation check** (settings the training analogs never use; per analog ONE annotated",
        "reference micrograph names the particle cluster and calibrates the blob and Topaz thresholds, and is not",
        "scored; `cryolib.studies.cryoemmae_generalisation`):",
        "",
        evaluation.to_markdown(index=False, floatfmt=".3f"),
        "",
        notes,
    ]
    return atomic_write_text(out_md, "\n".join(lines) + "\n")
