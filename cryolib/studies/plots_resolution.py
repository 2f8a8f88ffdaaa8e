"""Figures of the resolution studies: FSC curves per analog and method (DRACO Table 3; Table 1's column)."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cryolib.evaluate.fsc import FSC_THRESHOLD

__all__ = ["fsc_curves_figure"]

_RES_TICKS_A = (100, 50, 30, 20, 15, 10, 8, 6, 5, 4)  # top-axis resolution ticks (Å)


def fsc_curves_figure(curves: pd.DataFrame, methods: Sequence[str] | None = None,
                      resolutions: pd.DataFrame | None = None, title: str = "") -> plt.Figure:
    """One panel per analog: FSC against spatial frequency (1/Å) for each method, the 0.143 line, and the
    method's resolution (Å) in the legend when ``resolutions`` (dataset, method, resolution_A) is given.

    ``curves`` has columns dataset, method, frequency_per_A, fsc (e.g. the second value of
    :func:`cryolib.studies.denoised_resolution.table3`).
    """
    names = list(dict.fromkeys(curves["dataset"]))
    methods = list(methods) if methods is not None else list(dict.fromkeys(curves["method"]))
    res = resolutions.set_index(["dataset", "method"])["resolution_A"] if resolutions is not None else None
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False, sharey=True)
    colours = plt.get_cmap("tab10")(np.arange(len(methods)) % 10)
    for ax, name in zip(axes[0], names):
        sub = curves[curves["dataset"] == name]
        for colour, method in zip(colours, methods):
            c = sub[sub["method"] == method]
            if c.empty:
                continue
            label = method if res is None else f"{method} ({res.get((name, method), np.nan):.1f} Å)"
            ax.plot(c["frequency_per_A"], c["fsc"], color=colour, lw=1.4, label=label)
        ax.axhline(FSC_THRESHOLD, color="k", ls="--", lw=0.8)
        ax.axhline(0.0, color="0.6", lw=0.6)
        ax.set_title(name)
        ax.set_xlabel("spatial frequency (1/Å)")
        ax.set_ylim(-0.2, 1.05)
        fmax = float(sub["frequency_per_A"].max()) if len(sub) else 1.0
        ax.set_xlim(0, fmax)
        top = ax.twiny()
        top.set_xlim(0, fmax)
        ticks = [r for r in _RES_TICKS_A if 1.0 / r <= fmax]
        top.set_xticks([1.0 / r for r in ticks], [f"{r:g}" for r in ticks], fontsize=7)
        top.set_xlabel("resolution (Å)", fontsize=8)
        ax.legend(fontsize=7, loc="upper right")
    axes[0, 0].set_ylabel("FSC (half-maps, masked)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
