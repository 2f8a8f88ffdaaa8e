"""Notebook 01's figures: gallery, Thon rings, the DRACO triplet, quality defects, dataset composition.

Display only: each function draws what :mod:`cryolib.studies.datasets` returns and returns the figure.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from cryolib.studies.plots import image_grid, log_power_spectrum, show_micrograph

#: Quality-label pie: wedges below this share get no label on the pie (the legend names every label).
PIE_LABEL_MIN_SHARE = 0.08


def gallery_figure(items: Sequence[dict], ncols: int = 5):
    """One micrograph per analog with its ground truth circled (items from ``datasets.gallery``)."""
    fig, axes = image_grid(len(items), ncols=ncols, size=3.0)
    for ax, it in zip(axes, items):
        show_micrograph(ax, it["image"], it["truth"], it["diameter_px"], title=it["title"])
    fig.suptitle("Simulated analogs (ground truth circled)", y=1.0)
    return fig


def thon_rings_figure(rings: Sequence[dict]):
    """Top: log power spectra; bottom: radial averages with the predicted CTF zeros dashed (``datasets.thon_rings``)."""
    fig, axes = plt.subplots(2, len(rings), figsize=(4 * len(rings), 7), squeeze=False)
    for j, r in enumerate(rings):
        ps = log_power_spectrum(r["image"])
        axes[0, j].imshow(ps, cmap="gray", vmax=np.percentile(ps, 99.5))
        du, dv = r["defocus_um"]
        axes[0, j].set_title(f"{r['name']}: defocus {du:.2f}/{dv:.2f} µm", fontsize=8)
        axes[0, j].set_axis_off()
        axes[1, j].semilogy(r["freq_per_A"], r["profile"], lw=0.8)
        for z in r["zeros_per_A"]:
            axes[1, j].axvline(z, ls="--", c="r", lw=0.6)
        axes[1, j].set_xlabel("spatial frequency (1/Å)")
        axes[1, j].set_ylabel("radial power")
    return fig


def triplet_figure(images: Mapping[str, np.ndarray]):
    """full, odd, even, clean and odd - even (noise only) of one micrograph (``datasets.triplet``)."""
    fig, axes = plt.subplots(1, 5, figsize=(17, 3.6))
    for ax, k in zip(axes, ("full", "odd", "even", "clean")):
        show_micrograph(ax, images[k], title=f"{k} ({images['stem']})")
    show_micrograph(axes[4], images["odd"] - images["even"], title="odd − even (noise only)", lowpass_px=0)
    return fig


def defects_figure(examples: Mapping, diameter_px: float):
    """One simulated micrograph per quality label, true particles circled (``simulate.dataset.defect_examples``)."""
    fig, axes = image_grid(len(examples), ncols=len(examples), size=3.0)
    for ax, (defect, sim) in zip(axes, examples.items()):
        show_micrograph(ax, sim.full, sim.particles.assign(diameter=diameter_px), title=defect or "good")
    return fig


def label_pie(ax, counts: pd.Series, min_share: float = PIE_LABEL_MIN_SHARE) -> None:
    """Pie of ``counts`` (label -> n): percentages only on wedges of at least ``min_share``, every
    label in a legend beside the pie, so small wedges never overlap."""
    colors = plt.get_cmap("tab20")(np.arange(len(counts)) % 20)
    wedges, _, _ = ax.pie(counts.values, colors=colors, startangle=90, counterclock=False,
                          autopct=lambda pct: f"{pct:.0f}%" if pct >= 100 * min_share else "",
                          pctdistance=0.7, textprops={"fontsize": 7})
    ax.legend(wedges, [f"{k} ({v / counts.sum():.0%})" for k, v in zip(counts.index, counts.values)],
              fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_aspect("equal")


def composition_figure(meta: pd.DataFrame, labels: pd.Series):
    """DRACO Fig. 1 analog: micrographs per analog coloured by family, and the quality-label shares."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(14, 4), gridspec_kw={"width_ratios": [3, 1.3]})
    fams = sorted(meta["family"].unique())
    cmap = plt.get_cmap("tab10")
    counts = meta.groupby(["dataset", "family"]).size().reset_index(name="n")
    a1.bar(counts["dataset"], counts["n"], color=[cmap(fams.index(f) % 10) for f in counts["family"]])
    a1.tick_params(axis="x", rotation=70, labelsize=7)
    a1.set_ylabel("micrographs")
    a1.legend(handles=[Rectangle((0, 0), 1, 1, color=cmap(i % 10)) for i in range(len(fams))], labels=fams, fontsize=7)
    label_pie(a2, labels)
    a2.set_title("quality labels")
    return fig
