"""Figures of notebook 09: DRACO Figure 8 (tilts, slices, a line profile) and the missing wedge in x-z sections.

Display only: every panel is shown with its own 1–99 % percentile contrast and no display filter,
so panels differ only by what the method did; the numbers come from :mod:`cryolib.studies.cryoet`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from cryolib.studies.cryoet import DRACO, POST, RAW, RECON, REFERENCE, CryoETResult

__all__ = ["fig8_figure", "xz_sections_figure"]


def _show(ax, image: np.ndarray, title: str) -> None:
    lo, hi = np.percentile(image, (1, 99))
    ax.imshow(image, cmap="gray", vmin=lo, vmax=max(hi, lo + 1e-12), interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def _mark_line(ax, example: dict) -> None:
    cols = example["cols"]
    ax.plot([cols[0], cols[-1]], [example["y_px"]] * 2, color="yellow", lw=0.8, alpha=0.8)


def fig8_figure(result: CryoETResult, example: dict) -> plt.Figure:
    """Top: (a) raw 0° tilt, (b) DRACO on it, the clean 0° tilt, and the line profile; bottom: (c) slice of the
    raw tomogram, (d) slice of the tomogram from DRACO's tilts, (e) DRACO on (c), the noise-free WBP slice."""
    s, i0, z = result.series, result.zero_tilt, result.slice_index
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.8))
    angle = f"{s.angles_deg[i0]:g}°"
    _show(axes[0, 0], result.tilts[RAW][i0], f"(a) raw tilt at {angle}")
    _show(axes[0, 1], result.tilts[DRACO][i0], f"(b) DRACO-denoised tilt at {angle}")
    _show(axes[0, 2], s.clean[i0], f"clean tilt at {angle} (ours: no shot noise)")
    panels = [((RECON, RAW), "(c) slice of WBP(a-series)"), ((RECON, DRACO), "(d) slice of WBP(b-series)"),
              ((POST, DRACO), "(e) DRACO-denoised (c)"), ((RECON, REFERENCE), "noise-free WBP slice (ours)")]
    for ax, (key, title) in zip(axes[1], panels):
        _show(ax, result.slices[key], f"{title}, z = {z}")
        _mark_line(ax, example)
    ax = axes[0, 3]
    x = (example["cols"] - example["x_px"]) * s.pixel_size_A
    for name, values in example["profiles"].items():
        v = (values - values.mean()) / max(values.std(), 1e-12)
        ax.plot(x, v, lw=1.4 if name == "noise-free WBP" else 0.9,
                color="k" if name == "noise-free WBP" else None, label=f"{name} (CNR {example['cnr'][name]:.2f})")
    truth = example["truth"]
    ax.fill_between(x, -3.5, -3.5 + 1.5 * truth / max(truth.max(), 1e-12), color="0.85", label="true potential")
    ax.set_xlabel("x from the particle centre (Å)", fontsize=8)
    ax.set_ylabel("standardised profile", fontsize=8)
    ax.set_title(f"line profile (mean of {2 * example['band_px'] + 1} rows)", fontsize=8)
    ax.legend(fontsize=6, loc="upper right")
    ax.tick_params(labelsize=7)
    fig.suptitle("Figure 8: zero-shot DRACO on a simulated tilt series (±60°)", fontsize=10)
    fig.tight_layout()
    return fig


def xz_sections_figure(result: CryoETResult, example: dict) -> plt.Figure:
    """x-z sections (the tilt plane) through the profiled particle: raw, from DRACO's tilts, noise-free WBP and
    the true potential. The missing wedge smears each particle along z."""
    y = int(round(example["y_px"]))
    images = [(result.tomograms[RAW], "WBP of raw tilts"), (result.tomograms[DRACO], "WBP of DRACO tilts"),
              (result.tomograms[REFERENCE], "noise-free WBP"), (result.series.volume, "true potential")]
    fig, axes = plt.subplots(1, 4, figsize=(13, 2.6))
    for ax, (volume, title) in zip(axes, images):
        _show(ax, volume[:, y, :], f"{title}: x-z at y = {y}")
        ax.axhline(result.slice_index, color="yellow", lw=0.6, alpha=0.6)
    fig.tight_layout()
    return fig
