"""The model card reads a real picker file; MAE reconstructions keep visible patches; plots draw."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from cryolib.studies import plots
from cryolib.models.reconstruction import masked_reconstruction
from cryolib.models.vit import build_model

def test_masked_reconstruction_pastes_visible_patches():
    torch.manual_seed(0)
    model = build_model("cpu-tiny")
    tiles = torch.randn(2, 1, 64, 64)
    rec = masked_reconstruction(model, tiles, mask_ratio=0.5, seed=1)
    holes = np.isnan(rec["masked"])
    assert abs(holes.mean() - 0.5) < 1e-6  # exactly half of the patches are masked
    np.testing.assert_allclose(rec["pasted"][~holes], rec["input"][~holes], atol=1e-6)
    assert rec["prediction"].shape == (2, 64, 64) and np.isfinite(rec["prediction"]).all()

def test_model_card_from_picker_file(tmp_path):
    from cryolib.pick.cryoemmae import save_picker
    from cryolib.core.model_card import picker_card, write_model_card
    from cryolib.pick.cluster import NearestCentres
    from cryolib.pick.cryoemmae import CryoEMMAEPicker, PickerConfig

    picker = CryoEMMAEPicker(build_model("cpu-tiny"), 0.5, 0.1, PickerConfig())

    picker.kmeans = NearestCentres(np.zeros((4, 64), np.float32))
    picker.particle_cluster = 2
    path = save_picker(tmp_path / "p.pt", picker, extra_card={"train_sets": ["sim-10291"]})
    info = picker_card(path)
    assert info["model_name"] == "cpu-tiny" and info["encoder_parameters"] > 0 and info["card"]["train_sets"] == ["sim-10291"]
    md = write_model_card(path, tmp_path / "p.md", pd.DataFrame({"method": ["x"], "f1": [0.5]}))
    text = md.read_text()
    assert "cpu-tiny" in text and "0.500" in text and "simulated" in text

def test_display_helpers():
    img = np.random.default_rng(0).normal(size=(64, 64))
    shown = plots.display_image(img)
    assert shown.min() >= 0 and shown.max() <= 1
    assert plots.log_power_spectrum(img).shape == (64, 64)
    fig, axes = plots.image_grid(3, ncols=2)
    plots.show_micrograph(axes[0], img, pd.DataFrame({"x": [10.0], "y": [20.0], "diameter": [8.0]}), title="t")
    table = pd.DataFrame({"g": ["a", "a", "b"], "h": ["x", "y", "x"], "v": [0.1, 0.2, 0.3]})
    plots.bar_groups(axes[1], table, "g", "h", "v")
    assert len(axes[1].patches) == 4  # 2 groups x 2 hues
    plt.close(fig)


def test_quality_pie_labels_only_large_wedges_and_legends_all():
    from cryolib.studies.plots_datasets import label_pie

    fig, ax = plt.subplots()
    counts = pd.Series({"good": 90, "ice": 5, "empty": 3, "carbon": 2})
    label_pie(ax, counts, min_share=0.08)
    texts = [t.get_text() for t in ax.texts if t.get_text()]
    assert texts == ["90%"]  # the three small wedges carry no text that could overlap
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["good (90%)", "ice (5%)", "empty (3%)", "carbon (2%)"]
    plt.close(fig)


def test_pipeline_figure_notes_an_empty_stage():
    from pathlib import Path

    from cryolib.studies.plots_cryoemmae import pipeline_figure

    full, empty = np.ones((8, 8), bool), np.zeros((8, 8), bool)
    half = np.zeros((8, 8), bool)
    half[:4] = True
    example = {"image": np.random.default_rng(0).normal(size=(64, 64)), "path": Path("m0.mrc"),
               "picks": pd.DataFrame({"x": [10.0], "y": [10.0], "diameter": [8.0], "score": [1.0]}),
               "truth": pd.DataFrame({"x": [10.0], "y": [11.0]}), "diameter_px": 8.0,
               "stages": {"preprocessed": np.zeros((32, 32)), "global_labels": np.zeros((8, 8), int),
                          "sequential_masks": [half, empty, full, half]},
               "f1_table": pd.DataFrame({"micrograph": ["m0"], "f1": [0.5]})}
    fig = pipeline_figure(example)
    axes = fig.axes
    assert len(axes) == 3 + 4 + 1
    notes = [[t.get_text() for t in ax.texts] for ax in axes[3:7]]
    assert notes == [[], ["empty: no token kept"], ["every token kept"], []]
    assert "50% of tokens kept" in axes[3].get_title() and "F1 0.50" in axes[-1].get_title()
    assert axes[4].images[0].get_clim() == (0, 1)  # an empty mask is drawn on the 0..1 scale, with its note
    plt.close(fig)
