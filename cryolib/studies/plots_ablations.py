"""Notebook 08's figures: Table 5 against the mask ratio and Table 6 as bars, ours beside the paper's.

Display only: each function draws a table of :mod:`cryolib.studies.draco_ablations` and returns the
figure (denoised crops: :func:`cryolib.studies.plots_denoising.crops_figure`; loss curves:
:func:`cryolib.studies.plots_draco.draco_loss_figure`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cryolib.studies.draco_ablations import RAW, TABLE5_SETS

__all__ = ["mask_ratio_figure", "loss_ablation_figure"]


def mask_ratio_figure(t5: pd.DataFrame):
    """Three panels against γ: curation F1, Eq. 11 SNR on Table 5's analogs, mean true SNR
    (ours solid, the paper's dashed; the raw micrograph's SNR as a grey line)."""
    masks = t5[t5["run"] != RAW].sort_values("mask_ratio")
    raw = t5[t5["run"] == RAW].iloc[0]
    gamma = masks["mask_ratio"].to_numpy(float)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(gamma, masks["f1"], "o-", label="ours")
    axes[0].plot(gamma, masks["paper_f1"], "s--", color="k", label="paper")
    axes[0].set_ylabel("curation F1 (linear probe)")
    for k, s in enumerate(TABLE5_SETS):
        colour = plt.get_cmap("tab10")(k)
        axes[1].plot(gamma, masks[f"snr_eq11_db_{s}"], "o-", color=colour, label=f"{s} ours")
        axes[1].plot(gamma, masks[f"paper_snr_eq11_db_{s}"], "s--", color=colour, alpha=0.6, label=f"{s} paper")
    axes[1].set_ylabel("Eq. 11 SNR (dB)")
    axes[2].plot(gamma, masks["mean_true_snr_db"], "o-", label="DRACO (ours)")
    if np.isfinite(raw["mean_true_snr_db"]):
        axes[2].axhline(raw["mean_true_snr_db"], color="0.5", lw=1, label="raw micrograph")
    axes[2].set_ylabel("true SNR, mean over analogs (dB)")
    for ax in axes:
        ax.set_xlabel("mask ratio γ (per half-image)")
        ax.set_xticks(gamma)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def loss_ablation_figure(t6: pd.DataFrame):
    """Table 6's denoising column as bars: Eq. 11 SNR on the 70S ribosome analog (ours beside the
    paper's) and the mean true SNR over every scored analog."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    x = np.arange(len(t6))
    axes[0].bar(x - 0.2, t6["snr_eq11_db"], 0.4, label="ours")
    axes[0].bar(x + 0.2, t6["paper_snr_db"], 0.4, hatch="//", fill=False, label="paper")
    axes[0].set_ylabel("Eq. 11 SNR, 70S ribosome (dB)")
    axes[1].bar(x, t6["mean_true_snr_db"], 0.5, color="tab:green")
    axes[1].set_ylabel("true SNR, mean over analogs (dB)")
    for ax in axes:
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xticks(x, t6["training_scheme"], rotation=20, ha="right", fontsize=8)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
