"""Figures of notebook 05: denoised crops side by side (DRACO Figures 4 and 5), masked-input
reconstructions (Figure 7), Table 2 as bars beside the paper's numbers, and, for
``benchmarks/draco_training_length.py``, the Fourier ring correlation of each output with the noise-free
image and DRACO's SNRs against its training length.

Every panel is shown with its own 1–99 % percentile contrast and NO display filtering, so the
panels differ only by the denoiser.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["crops_figure", "reconstruction_figure", "snr_bars_figure", "frc_figure"]


def _contrast(image: np.ndarray) -> np.ndarray:
    finite = image[np.isfinite(image)]
    lo, hi = np.percentile(finite, (1, 99)) if finite.size else (0.0, 1.0)
    return np.clip((image - lo) / max(hi - lo, 1e-12), 0, 1)


def _centre_crop(image: np.ndarray, crop_px: int) -> np.ndarray:
    h, w = image.shape
    r, c = max(0, (h - crop_px) // 2), max(0, (w - crop_px) // 2)
    return image[r : r + crop_px, c : c + crop_px]


def crops_figure(examples: Mapping[str, Mapping[str, np.ndarray]], columns: Sequence[str], crop_px: int = 192,
                 title: str = "") -> plt.Figure:
    """Rows: analogs; columns: ``columns`` (methods, then "Clean"), each a centre crop of ``crop_px``."""
    names = list(examples)
    fig, axes = plt.subplots(len(names), len(columns), figsize=(2.2 * len(columns), 2.3 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        for j, col in enumerate(columns):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if col in examples[name]:
                ax.imshow(_contrast(_centre_crop(np.asarray(examples[name][col], float), crop_px)), cmap="gray")
            if i == 0:
                ax.set_title(col, fontsize=9)
            if j == 0:
                ax.set_ylabel(name, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def reconstruction_figure(examples: Sequence[Mapping[str, np.ndarray]]) -> plt.Figure:
    """Figure 7: one row per example; masked patches (NaN) shown in red."""
    keys = [k for k in examples[0] if k != "dataset"]
    fig, axes = plt.subplots(len(examples), len(keys), figsize=(2.3 * len(keys), 2.4 * len(examples)), squeeze=False)
    cmap = plt.get_cmap("gray").copy()
    cmap.set_bad("tab:red")
    for i, ex in enumerate(examples):
        for j, key in enumerate(keys):
            ax = axes[i, j]
            ax.imshow(np.ma.masked_invalid(_contrast(np.asarray(ex[key], float))), cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(key, fontsize=9)
            if j == 0:
                ax.set_ylabel(ex["dataset"], fontsize=9)
    fig.tight_layout()
    return fig


def snr_bars_figure(summary: pd.DataFrame, methods: Sequence[str]) -> plt.Figure:
    """Eq. 11 SNR per analog and method: ours (solid) beside the paper's Table 2 (hatched)."""
    sets = list(dict.fromkeys(summary["dataset"]))
    fig, axes = plt.subplots(1, len(sets), figsize=(3.4 * len(sets), 3.4), squeeze=False, sharey=True)
    x = np.arange(len(methods))
    for ax, name in zip(axes[0], sets):
        sub = summary[summary["dataset"] == name].set_index("method").reindex(methods)
        ax.bar(x - 0.2, sub["snr_eq11_db"], 0.4, label="ours")
        ax.bar(x + 0.2, sub["paper_snr_eq11_db"], 0.4, hatch="//", fill=False, label="paper")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xticks(x, methods, rotation=60, ha="right", fontsize=8)
        ax.set_title(name, fontsize=10)
    axes[0, 0].set_ylabel("Eq. 11 SNR (dB)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def frc_figure(frc_mean: pd.DataFrame, methods: Sequence[str]) -> plt.Figure:
    """Mean FRC with the noise-free image against spatial frequency, one line per method (ring centres)."""
    fig, ax = plt.subplots(figsize=(8.5, 3.8))
    colours = plt.get_cmap("tab20")  # 20 distinct colours: the default cycle repeats after 10 lines
    for k, method in enumerate(methods):
        sub = frc_mean[frc_mean["method"] == method]
        centre = 0.5 * (sub["low_cycles_per_px"] + sub["high_cycles_per_px"])
        ax.plot(centre, sub["frc"], marker="o", ms=3, label=method, color=colours(k % 20))
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("spatial frequency (cycles/px)")
    ax.set_ylabel("FRC with the noise-free image")
    ax.set_xlim(0, 0.5)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def length_figure(curve: pd.DataFrame, metrics: Mapping[str, str]) -> plt.Figure:
    """One panel per SNR metric (``metrics``: column -> axis label): DRACO's mean SNR over the analogs
    against its training epochs (log2 axis), with each baseline of ``curve`` (``epochs`` NaN) as a
    dashed horizontal line. Non-finite means (the block mean's Eq. 11) are left out of their panel."""
    runs = curve.dropna(subset=["epochs"]).sort_values("epochs")
    peers = curve[curve["epochs"].isna()]
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, (column, label) in zip(axes[0], metrics.items()):
        ax.plot(runs["epochs"], runs[column], marker="o", color="k", label="DRACO-B")
        for k, (_, peer) in enumerate(peers.iterrows()):
            if np.isfinite(peer[column]):
                ax.axhline(peer[column], ls="--", lw=1, color=colours(k % 10), label=peer["method"])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("DRACO epochs (after the warm-up)")
        ax.set_ylabel(label)
    seen: dict = {}  # one legend for all panels; a peer left out of one panel (non-finite) still gets its entry
    for ax in axes[0]:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(name, handle)
    fig.legend(list(seen.values()), list(seen), fontsize=8, loc="upper center", ncol=min(len(seen), 6),
               bbox_to_anchor=(0.5, 1.02))
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig
