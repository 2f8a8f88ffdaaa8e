"""Figures shared by the notebooks: micrographs with picks, Thon rings, triplets, bars.

Display only: every function takes measured arrays/tables and draws them; none computes
a result that a table reports. Micrographs are shown low-pass filtered and contrast-
clipped at percentiles, as a cryo-EM viewer would.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use(matplotlib.get_backend() if matplotlib.get_backend() else "agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Circle, Rectangle  # noqa: E402
from scipy import ndimage  # noqa: E402


def display_image(image: np.ndarray, lowpass_px: float = 1.5, clip_percentiles: tuple[float, float] = (1.0, 99.0)) -> np.ndarray:
    """A micrograph ready to show: Gaussian low-pass (σ in px) and percentile contrast to [0, 1]."""
    img = ndimage.gaussian_filter(np.asarray(image, dtype=np.float32), lowpass_px) if lowpass_px > 0 else np.asarray(image, np.float32)
    lo, hi = np.percentile(img, clip_percentiles)
    return np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1)


def show_micrograph(
    ax,
    image: np.ndarray,
    picks: pd.DataFrame | None = None,
    diameter_px: float | None = None,
    title: str = "",
    color: str = "lime",
    truth: pd.DataFrame | None = None,
    lowpass_px: float = 1.5,
) -> None:
    """Draw a micrograph with optional circles at ``picks`` (and ``truth`` in another colour)."""
    ax.imshow(display_image(image, lowpass_px), cmap="gray", interpolation="nearest")
    for df, col in ((truth, "cyan"), (picks, color)):
        if df is None or len(df) == 0:
            continue
        d = diameter_px if diameter_px is not None else float(np.nanmedian(df["diameter"]))
        for x, y in zip(df["x"], df["y"]):
            ax.add_patch(Circle((x, y), d / 2, fill=False, lw=0.7, ec=col, alpha=0.9))
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def show_boxes(ax, df: pd.DataFrame, box_px: float, color: str = "yellow") -> None:
    """Draw square boxes of side ``box_px`` centred on (x, y)."""
    for x, y in zip(df["x"], df["y"]):
        ax.add_patch(Rectangle((x - box_px / 2, y - box_px / 2), box_px, box_px, fill=False, lw=0.6, ec=color))


def image_grid(n: int, ncols: int = 4, size: float = 3.0):
    """A figure with ``n`` square axes in rows of ``ncols``; unused axes are hidden."""
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    return fig, list(axes.flat[:n])


def log_power_spectrum(image: np.ndarray) -> np.ndarray:
    """Centred log power spectrum of a micrograph (mean removed), for Thon-ring displays."""
    img = np.asarray(image, np.float64)
    ps = np.abs(np.fft.fftshift(np.fft.fft2(img - img.mean()))) ** 2
    return np.log1p(ps / np.median(ps))


def bar_groups(ax, table: pd.DataFrame, group: str, hue: str, value: str, hue_order: Sequence[str] | None = None, ylim=(0, 1)) -> None:
    """Grouped bar plot: one group per ``group`` value, one bar per ``hue`` value."""
    groups = list(dict.fromkeys(table[group]))
    hues = list(hue_order) if hue_order is not None else list(dict.fromkeys(table[hue]))
    width = 0.8 / max(len(hues), 1)
    cmap = plt.get_cmap("tab10")
    for j, h in enumerate(hues):
        sub = table[table[hue] == h].set_index(group)
        vals = [float(sub[value].get(g, np.nan)) if g in sub.index else np.nan for g in groups]
        ax.bar(np.arange(len(groups)) + (j - (len(hues) - 1) / 2) * width, vals, width, label=str(h), color=cmap(j % 10))
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels(groups, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(value)
    if ylim is not None:
        ax.set_ylim(*ylim)
