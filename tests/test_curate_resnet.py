"""cryolib.curate.resnet: the ResNet18-from-scratch baseline (1-channel stem, shot-noise units, seeded)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryolib.core.errors import CryolibError
from cryolib.curate.resnet import downsample_noise_units, resnet18_1ch, train_resnet
from test_curate_features import blob_micrographs


def test_resnet18_takes_one_channel_and_gives_two_logits():
    model = resnet18_1ch(0).eval()
    assert model.conv1.in_channels == 1 and model.fc.out_features == 2
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 2)


def test_noise_units_are_unit_for_shot_noise_at_any_dose():
    rng = np.random.default_rng(0)
    for dose in (50.0, 2000.0):
        img = rng.poisson(dose, (128, 128)).astype(np.float32)
        assert downsample_noise_units(img, 128).std() == pytest.approx(1.0, abs=0.03)
        assert downsample_noise_units(img, 64).std() == pytest.approx(0.5, abs=0.03)  # 2x2 area average


def test_training_is_seeded_and_scores_are_probabilities():
    images = blob_micrographs(4, size_px=64, seed=1) + blob_micrographs(4, size_px=64, blobs=False, seed=2)
    labels = [1] * 4 + [0] * 4
    a = train_resnet(images, labels, size_px=32, epochs=2, batch_size=4, seed=3).scores(images)
    b = train_resnet(images, labels, size_px=32, epochs=2, batch_size=4, seed=3).scores(images)
    assert a.shape == (8,) and np.all((a >= 0) & (a <= 1))
    assert np.array_equal(a, b)


def test_class_labels_give_one_output_per_class_and_accept_is_good():
    images = blob_micrographs(4, size_px=64, seed=1) + blob_micrographs(4, size_px=64, blobs=False, seed=2)
    names = ["good"] * 4 + ["empty", "empty", "carbon_only", "carbon_only"]
    curator = train_resnet(images, names, size_px=32, epochs=1, batch_size=4, seed=3)
    assert curator.classes == ("carbon_only", "empty", "good") and curator.model.fc.out_features == 3
    with torch.no_grad():
        p = torch.softmax(curator.model(curator._batch(images)), dim=1)[:, 2].double().numpy()
    assert np.array_equal(curator.scores(images), p)


def test_bad_inputs():
    images = blob_micrographs(2, size_px=64)
    with pytest.raises(CryolibError, match="both"):
        train_resnet(images, [1, 1], size_px=32, epochs=1)
    with pytest.raises(CryolibError, match="labels"):
        train_resnet(images, [1], size_px=32, epochs=1)
    with pytest.raises(CryolibError, match="1 \\(accept\\) or 0"):
        train_resnet(images, [1, 3], size_px=32, epochs=1)
