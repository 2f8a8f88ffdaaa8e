"""Notebooks 02 and 03's figures: MAE loss curves and reconstructions, Cryo-EMMAE Figures 1 and 2,
and Topaz's training-length curves.

Display only: each function draws what :mod:`cryolib.studies.mae_pretraining`,
:mod:`cryolib.studies.cryoemmae_picking` or :mod:`cryolib.studies.cryoemmae_generalisation`
returns, and returns the figure.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cryolib.studies.plots import bar_groups, show_micrograph

FIG2_METRICS = ("iou", "recall", "precision", "f1")


def loss_curves_figure(logs: Mapping[str, pd.DataFrame], window: int = 5):
    """Masked-patch MSE per step of each run (``window``-step rolling mean)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, log in logs.items():
        ax.plot(log["step"], log["loss"].rolling(window, min_periods=1).mean(), label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(f"masked-patch MSE ({window}-step mean)")
    ax.legend(fontsize=8)
    return fig


def reconstructions_figure(examples: Mapping[str, dict]):
    """One row per model: input, masked input and reconstruction (visible patches pasted) of each tile."""
    n_tiles = max(len(rec["input"]) for rec in examples.values())
    fig, axes = plt.subplots(len(examples), 3 * n_tiles, figsize=(13, 1.6 * len(examples)), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for row, (name, rec) in enumerate(examples.items()):
        for j in range(len(rec["input"])):
            for k, key in enumerate(("input", "masked", "pasted")):
                ax = axes[row, 3 * j + k]
                ax.imshow(rec[key][j], cmap="gray")
                if row == 0:
                    ax.set_title(key, fontsize=8)
        axes[row, 0].text(-5, 32, name, rotation=90, va="center", ha="right", fontsize=8)
    return fig


def _mask_panel(ax, mask: np.ndarray, title: str) -> None:
    """A binary stage mask on a fixed 0..1 scale; an empty (or full) mask is drawn with a note."""
    mask = np.asarray(mask, bool)
    ax.imshow(mask, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(f"{title}\n{mask.mean():.0%} of tokens kept", fontsize=8)
    if not mask.any() or mask.all():
        ax.text(0.5, 0.5, "empty: no token kept" if not mask.any() else "every token kept",
                transform=ax.transAxes, ha="center", va="center", fontsize=8, color="red",
                bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
    ax.set_axis_off()


def pipeline_figure(example: dict):
    """Cryo-EMMAE Figure 1 on one micrograph (``cryoemmae_picking.fig1_example``): raw, preprocessed,
    the training-set k-means labels, each sequential stage's mask, and the picks over the truth."""
    st = example["stages"]
    masks = st["sequential_masks"]
    n = 3 + len(masks) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 3.1))
    show_micrograph(axes[0], example["image"], title=f"raw ({example['path'].stem})")
    axes[1].imshow(st["preprocessed"], cmap="gray", interpolation="nearest")
    axes[1].set_title("preprocessed", fontsize=8)
    axes[2].imshow(st["global_labels"], cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
    axes[2].set_title("training-set clusters", fontsize=8)
    for ax in axes[1:3]:
        ax.set_axis_off()
    for i, m in enumerate(masks):
        _mask_panel(axes[3 + i], m, "global particle cluster" if i == 0 else f"sequential stage {i}")
    f1 = example["f1_table"].set_index("micrograph")["f1"]
    show_micrograph(axes[-1], example["image"], example["picks"], example["diameter_px"],
                    title=f"picks (green) vs truth (cyan)\nF1 {f1[example['path'].stem]:.2f} (median of {len(f1)})",
                    truth=example["truth"])
    return fig


def cross_dataset_figure(fig2: pd.DataFrame, methods: Sequence[str], rule: str, metrics: Sequence[str] = FIG2_METRICS):
    """Cryo-EMMAE Figure 2: one column per method, one row per metric, bars coloured by training analog."""
    fig, axes = plt.subplots(len(metrics), len(methods), figsize=(5.2 * len(methods), 2.6 * len(metrics)),
                             sharey=True, squeeze=False)
    for j, m in enumerate(methods):
        sub = fig2[fig2["method"] == m]
        for i, met in enumerate(metrics):
            bar_groups(axes[i, j], sub, "eval_set", "trained_on", met, hue_order=list(dict.fromkeys(sub["trained_on"])))
            if i == 0:
                axes[i, j].set_title(m, fontsize=10)
            if i < len(metrics) - 1:
                axes[i, j].set_xticklabels([])
    axes[0, 0].legend(fontsize=7, title="trained on / reference", title_fontsize=7)
    fig.suptitle(f"Cryo-EMMAE Fig. 2 on simulated analogs (TP rule: {rule}; crYOLO not runnable here)", y=1.0)
    return fig


def training_length_figure(curves: pd.DataFrame, title: str):
    """Validation AUPRC against crops seen, one line per Topaz schedule (log x axis)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for label, sub in curves.groupby("label", sort=False):
        ax.plot(sub["crops_seen"], sub["auprc"], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("crops seen")
    ax.set_ylabel("validation AUPRC (per pixel)")
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    return fig
