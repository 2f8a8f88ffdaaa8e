"""Figures of notebook 07 (DRACO picking): Table 1 as bars, Figure 3's TP / FP / FN circles, the few-shot curve.

Display only: each function draws tables and picks that :mod:`cryolib.studies.draco_picking` measured.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.patches import Circle

from cryolib.studies.plots import bar_groups, display_image

#: DRACO Figure 3's colours: true positives, false positives, false negatives.
TP_FP_FN_COLOURS = {"tp": "tab:blue", "fp": "tab:red", "fn": "gold"}


def table1_figure(rows: pd.DataFrame, methods: Sequence[str]):
    """F1 per analog and method: ours (solid) and, where the paper has the method, its F1 (black tick)."""
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(methods) + 3), 3.6))
    ours = rows[(rows["source"] == "ours") & rows["method"].isin(methods)]
    bar_groups(ax, ours, "dataset", "method", "f1", hue_order=[m for m in methods if m in set(ours["method"])])
    datasets = list(dict.fromkeys(ours["dataset"]))
    shown = [m for m in methods if m in set(ours["method"])]
    width = 0.8 / max(1, len(shown))
    for i, d in enumerate(datasets):
        for j, m in enumerate(shown):
            paper = ours[(ours["dataset"] == d) & (ours["method"] == m)]["paper_f1"]
            if len(paper) and pd.notna(paper.iloc[0]):
                x = i - 0.4 + width * (j + 0.5)
                ax.plot([x - width / 2, x + width / 2], [paper.iloc[0]] * 2, color="black", lw=1.5)
    ax.set_ylabel("F1 (overlap60)")
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Table 1 (picking): ours as bars, the paper's F1 as black ticks", fontsize=9)
    return fig


def figure3(panels: Sequence[Mapping], methods: Sequence[str], size: float = 3.0):
    """One row per analog, one column per method: TP blue, FP red, FN yellow circles (DRACO Figure 3)."""
    datasets = list(dict.fromkeys(p["dataset"] for p in panels))
    fig, axes = plt.subplots(len(datasets), len(methods), figsize=(size * len(methods), size * len(datasets)),
                             squeeze=False)
    for p in panels:
        ax = axes[datasets.index(p["dataset"]), list(methods).index(p["method"])]
        ax.imshow(display_image(p["image"]), cmap="gray", interpolation="nearest")
        for kind, colour in TP_FP_FN_COLOURS.items():
            for x, y in zip(p[kind]["x"], p[kind]["y"]):
                ax.add_patch(Circle((x, y), p["diameter_px"] / 2, fill=False, lw=0.9, ec=colour))
        ax.set_title(f"{p['dataset']} · {p['method']}\nF1 {p['f1']:.2f}", fontsize=7)
        ax.set_axis_off()
    fig.suptitle("Figure 3: true positives (blue), false positives (red), false negatives (yellow)", y=1.0)
    fig.tight_layout()
    return fig


def few_shot_figure(curve: pd.DataFrame):
    """F1 against annotated particles: default operating point (solid) and oracle best-F1 threshold (dashed)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i, (method, sub) in enumerate(curve.groupby("method", sort=False)):
        sub = sub.sort_values("n_labels")
        colour = f"C{i}"
        ax.plot(sub["n_labels"], sub["f1"], "o-", color=colour, label=f"{method}")
        ax.plot(sub["n_labels"], sub["f1_oracle"], "o--", color=colour, alpha=0.5, label=f"{method} (oracle threshold)")
    ax.set_xscale("log")
    ax.set_xlabel("annotated particles on one micrograph")
    ax.set_ylabel("F1 on the other micrographs")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title(f"Few-shot picking on {curve['dataset'].iloc[0]}", fontsize=9)
    return fig
