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
    from cryolib.pick.cluster import CryoEMMAEPicker, NearestCentres, PickerConfig

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
