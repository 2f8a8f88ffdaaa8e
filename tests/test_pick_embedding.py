"""Tests for cryolib.pick.embedding: the embedding image of a micrograph (Cryo-EMMAE §3.2)."""

from __future__ import annotations

import numpy as np
import pytest

from cryolib.core.errors import CryolibError
from cryolib.pick import embedding as em
from pick_synthetic import TOKEN, StubEncoder


def test_embedding_image_shape_and_stitching():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (200, 300)).astype(np.float32)
    emb = em.embedding_image(StubEncoder(), img, tile_px=64, mean=0.5, std=0.25)
    assert emb.shape == (50, 75, 4) and emb.dtype == np.float32
    blocks = ((img - 0.5) / 0.25).reshape(50, TOKEN, 75, TOKEN).mean(axis=(1, 3))
    np.testing.assert_allclose(emb[..., 0], blocks, atol=1e-5)  # token (i, j) covers px [4i, 4i+4)


def test_embedding_image_with_the_cpu_tiny_mae():
    from cryolib.models.vit import build_model

    model = build_model("cpu-tiny")
    emb = em.embedding_image(model, np.random.default_rng(1).uniform(size=(128, 192)).astype(np.float32), 64)
    assert emb.shape == (32, 48, model.cfg.embed_dim) and np.isfinite(emb).all()
    assert em.token_px_of(model, 64) == 4 and em.token_px_of(StubEncoder(), 64) == 4


def test_embedding_image_rejects_a_micrograph_smaller_than_a_tile():
    with pytest.raises(CryolibError, match="smaller than one 64 px tile"):
        em.embedding_image(StubEncoder(), np.zeros((40, 200), np.float32), 64)


def test_smoothing_window_rule_and_box_mean():
    assert em.smoothing_window_tokens(40, 4) == 2 and em.smoothing_window_tokens(64, 4) == 4
    emb = np.zeros((9, 9, 2), np.float32)
    emb[4, 4] = 4.0
    rows = np.arange(9)
    for window in (2, 3, 4):
        sm = em.smooth_embedding(emb, window)
        assert sm.sum() == pytest.approx(emb.sum())
        assert (sm[..., 0].sum(1) * rows).sum() / sm[..., 0].sum() == pytest.approx(4.0)  # centred
    repo = em.smooth_embedding(emb, 2, centred=False)  # the repository's window i - 1 ... i
    assert repo[4, 4, 0] == repo[5, 5, 0] == pytest.approx(1.0)
    assert (repo[..., 0].sum(1) * rows).sum() / repo[..., 0].sum() == pytest.approx(4.5)


def test_standardize_embedding_removes_a_micrograph_wide_shift():
    emb = np.random.default_rng(4).normal(size=(20, 30, 5)).astype(np.float32)
    z = em.standardize_embedding(emb)
    np.testing.assert_allclose(z.mean((0, 1)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std((0, 1)), 1, atol=1e-5)
    scale, shift = np.array([0.5, 2, 3, 1, 7]), np.array([-4, 0, 9, 1, 2])  # dose, ice, contrast per channel
    np.testing.assert_allclose(em.standardize_embedding(emb * scale + shift), z, atol=1e-4)
    flat = np.ones((4, 4, 2), np.float32)
    assert np.isfinite(em.standardize_embedding(flat)).all() and (em.standardize_embedding(flat) == 0).all()
