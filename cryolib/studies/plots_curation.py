"""Figures of notebook 06 (curation): example micrographs per quality class, per-class confusion, Table 4 bars.

Display only: every function draws tables and arrays that :mod:`cryolib.studies.draco_curation` measured.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cryolib.curate.probe import METRICS, QUALITY_CLASSES
from cryolib.studies.plots import display_image


def class_examples_figure(examples: dict[str, np.ndarray], title: str = ""):
    """One micrograph per quality class (``{class: image}`` in :data:`QUALITY_CLASSES` order)."""
    names = [c for c in QUALITY_CLASSES if c in examples]
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names):
        ax.imshow(display_image(examples[name], lowpass_px=1.5), cmap="gray", interpolation="nearest")
        ax.set_title(name.replace("_", " "), fontsize=10, color="tab:green" if name == "good" else "tab:red")
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def confusion_figure(per_class: pd.DataFrame):
    """Per method: a class x (accepted, rejected) matrix of shares; the correct cell of each row is outlined."""
    methods = list(dict.fromkeys(per_class["method"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(2.5 * len(methods) + 1.5, 3.8), squeeze=False, sharey=True)
    for k, (ax, method) in enumerate(zip(axes[0], methods)):
        sub = per_class[per_class["method"] == method].set_index("class")
        classes = [c for c in QUALITY_CLASSES if c in sub.index]
        shares = np.array([[sub.loc[c, "accepted"], sub.loc[c, "rejected"]] for c in classes], float)
        shares /= np.array([sub.loc[c, "n"] for c in classes], float)[:, None]
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        for i, c in enumerate(classes):
            for j in range(2):
                ax.text(j, i, f"{shares[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if shares[i, j] > 0.6 else "black")
            right = 0 if c == "good" else 1
            ax.add_patch(plt.Rectangle((right - 0.5, i - 0.5), 1, 1, fill=False, ec="tab:orange", lw=2))
        ax.set_xticks([0, 1], ["accepted", "rejected"])
        ax.set_yticks(range(len(classes)), [f"{c.replace('_', ' ')} (n={int(sub.loc[c, 'n'])})" for c in classes])
        ax.set_title(method, fontsize=9)
        if k:
            ax.tick_params(labelleft=False)
    fig.suptitle("Held-out analogs: share of each quality class accepted/rejected (outlined: correct)", fontsize=10)
    fig.tight_layout()
    return fig


def short_method_names(methods: list[str]) -> list[str]:
    """Tick labels: a method's name without its parenthesis ("MAE (linear probe)" -> "MAE"), except where two
    names would then read the same: those keep the parenthesis' last part ("ResNet18, quality classes")."""
    short = [m.split(" (")[0] for m in methods]
    return [s if short.count(s) == 1 or "(" not in m else f"{s}, {m.split(' (', 1)[1].rstrip(')').split(', ')[-1]}"
            for m, s in zip(methods, short)]


def table4_figure(t4: pd.DataFrame):
    """Grouped bars of the four metrics per method: ours (filled) beside the paper's (hatched)."""
    methods = list(t4["method"])
    x = np.arange(len(methods))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.4 * len(METRICS), 3.6), sharey=True)
    for ax, metric in zip(axes, METRICS):
        ax.bar(x - 0.2, t4[metric].fillna(0), 0.4, label="ours", color="tab:blue")
        ax.bar(x + 0.2, t4[f"paper_{metric}"].fillna(0), 0.4, label="paper (Table 4)", color="white",
               edgecolor="tab:gray", hatch="//")
        ax.set_xticks(x, short_method_names(methods), rotation=45, ha="right", fontsize=8)
        ax.set_title(metric)
        ax.set_ylim(0, 1.05)
    fig.tight_layout()
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="lower center", ncol=2,
               bbox_to_anchor=(0.5, 1.0))
    return fig
