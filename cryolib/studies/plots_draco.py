"""Notebook 04's figures: DRACO loss curves per term, the Figure 2-style masking picture, throughput.

Display only: each function draws what :mod:`cryolib.studies.draco_pretraining` returns and returns
the figure.
"""

from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap

#: Term -> panel title of :func:`draco_loss_figure`.
TERMS = {"loss_n2n": "L_N2N (Eq. 8): visible in one half", "loss_recon": "L_recon (Eq. 9): masked in both",
         "loss": "total loss (DRACO: Eq. 10; MAE: masked-patch MSE)"}


def draco_loss_figure(curves: pd.DataFrame):
    """One panel per loss term; one line per run (:func:`~cryolib.studies.draco_pretraining.training_curves`)."""
    fig, axes = plt.subplots(1, len(TERMS), figsize=(5 * len(TERMS), 3.6), squeeze=False)
    for ax, (term, title) in zip(axes[0], TERMS.items()):
        for run, g in curves[curves["term"] == term].groupby("run", sort=False):
            ax.plot(g["step"], g["value"], marker=".", label=run)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("per-pixel MSE (standardised units)")
    fig.tight_layout()
    return fig


def _limits(images: list[np.ndarray]) -> tuple[float, float]:
    values = np.concatenate([im[np.isfinite(im)].ravel() for im in images])
    return tuple(np.percentile(values, (1, 99)))


def figure2_picture(example: Mapping[str, np.ndarray]):
    """DRACO Figure 2 on one crop: the odd/even inputs, the masks, what each half shows, the N2N and
    full-dose targets, the prediction, and the all-visible denoised crop (one grey scale for all)."""
    panels = [("odd", "odd half"), ("even", "even half"), ("mask_code", "masks"),
              ("odd_visible", "odd-visible patches"), ("even_visible", "even-visible patches"),
              ("n2n_target", "N2N targets (the other half)"), ("recon_target", "full-dose target (masked in both)"),
              ("prediction", "prediction (all patches)"), ("denoised", "denoised (all visible)"), ("full", "full dose")]
    vmin, vmax = _limits([example[k] for k, _ in panels if k != "mask_code"])
    fig, axes = plt.subplots(2, 5, figsize=(13, 5.6))
    masks = ListedColormap(["0.25", "tab:orange", "tab:blue"])
    for ax, (key, title) in zip(axes.flat, panels):
        if key == "mask_code":
            ax.imshow(example[key], cmap=masks, vmin=0, vmax=2, interpolation="nearest")
            title += "\n(grey: both, orange: odd, blue: even visible)"
        else:
            ax.imshow(np.ma.masked_invalid(example[key]), cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def throughput_figure(table: pd.DataFrame):
    """Tiles/s of each run on this machine (bars), by stage."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    colours = {"MAE warm-up": "tab:gray", "MAE": "tab:green", "DRACO": "tab:blue"}
    ax.barh(table["run"], table["tiles_per_s"], color=[colours.get(s, "tab:gray") for s in table["stage"]])
    ax.set_xlabel("training tiles per second (median of the log rows)")
    ax.invert_yaxis()
    fig.tight_layout()
    return fig
