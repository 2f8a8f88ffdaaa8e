"""cryolib.reconstruct.particles: box centring, background normalisation, edges, and the phase flip
against its analytic result −sign(CTF) · (−2 CTF φ̂) = 2 |CTF| φ̂."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cryolib.core.errors import CryolibError
from cryolib.reconstruct.particles import OPTICS_COLUMNS, default_box_px, extract_particles, phase_flip
from cryolib.simulate.optics import apply_transfer, ctf_2d


def test_default_box_is_even_and_one_and_a_half_diameters():
    assert default_box_px(62.5) == 94 and default_box_px(40.0) == 60 and default_box_px(23.18) == 36
    assert default_box_px(4.0) == 16
    with pytest.raises(CryolibError, match="diameter"):
        default_box_px(0.0)


def test_a_point_at_the_pick_lands_at_the_box_centre():
    img = np.zeros((64, 80), np.float32)
    img[20, 50] = 1.0  # row y = 20, column x = 50
    box = extract_particles(img, np.array([[50.0, 20.0], [50.4, 19.6]]), 16, 6.0)
    assert box.shape == (2, 16, 16)
    for b in box:
        assert np.unravel_index(np.argmax(b), b.shape) == (8, 8)


def test_background_is_normalised_and_edges_are_zero():
    rng = np.random.default_rng(0)
    img = (rng.normal(5.0, 3.0, (100, 100))).astype(np.float32)
    box = extract_particles(img, np.array([[50, 50], [2, 97]]), 32, 20.0)
    r = np.hypot(*np.meshgrid(np.arange(32) - 16, np.arange(32) - 16))
    ring = r > 10
    assert box[0][ring].mean() == pytest.approx(0.0, abs=1e-5) and box[0][ring].std(ddof=1) == pytest.approx(1.0, abs=1e-4)
    # the second box hangs over the left and bottom edges: those pixels are 0, the rest is normalised
    assert np.all(box[1][:, :14] == 0.0) and np.all(box[1][-13:, :] == 0.0)
    inside = box[1][:19, 14:]
    assert inside[ring[:19, 14:]].mean() == pytest.approx(0.0, abs=1e-5)


def _optics(n, defocus=1.5):
    return pd.DataFrame({"defocus_u_um": [defocus + 0.05] * n, "defocus_v_um": [defocus - 0.05] * n,
                         "astigmatism_angle_deg": [25.0] * n, "voltage_kV": [300.0] * n, "cs_mm": [2.7] * n,
                         "amplitude_contrast": [0.07] * n})


def test_phase_flip_matches_the_analytic_result():
    rng = np.random.default_rng(1)
    phi = torch.from_numpy(rng.normal(size=(3, 48, 48)).astype(np.float32))
    optics = _optics(3).assign(defocus_u_um=[1.05, 1.55, 2.05], defocus_v_um=[0.95, 1.45, 1.95])
    ctf = ctf_2d((48, 48), 3.0, torch.tensor(optics["defocus_u_um"].to_numpy()).float(),
                 torch.tensor(optics["defocus_v_um"].to_numpy()).float(), torch.full((3,), 25.0), 300.0, 2.7, 0.07)
    image = apply_transfer(phi, ctf)  # −2 IFFT[φ̂ CTF]: protein dark in underfocus
    flipped = phase_flip(image.numpy(), 3.0, optics)
    expected = 2.0 * torch.fft.rfft2(phi) * ctf.abs()
    got = torch.fft.rfft2(torch.from_numpy(flipped))
    # every coefficient but the Nyquist column, where an astigmatic CTF is not Hermitian and irfft symmetrises
    assert torch.allclose(got[..., :-1], expected[..., :-1], atol=1e-3)
    assert np.corrcoef(flipped.ravel(), phi.numpy().ravel())[0, 1] > 0.3  # protein positive again


def test_phase_flip_bad_inputs():
    with pytest.raises(CryolibError, match="one optics row per particle"):
        phase_flip(np.zeros((2, 8, 8)), 1.0, _optics(3))
    with pytest.raises(CryolibError, match="lacks"):
        phase_flip(np.zeros((1, 8, 8)), 1.0, _optics(1).drop(columns=["cs_mm"]))
    with pytest.raises(CryolibError, match=r"\(N, B, B\)"):
        phase_flip(np.zeros((8, 8)), 1.0, _optics(1))
    with pytest.raises(CryolibError, match="pixel size"):
        phase_flip(np.zeros((1, 8, 8)), 0.0, _optics(1))
    assert set(OPTICS_COLUMNS) <= set(_optics(1).columns)


@pytest.mark.parametrize("image, centres, box, diameter, match", [
    (np.zeros((32, 32)), np.zeros((2, 3)), 16, 8.0, r"\(N, 2\)"),
    (np.zeros((32, 32)), np.array([[40.0, 5.0]]), 16, 8.0, "outside"),
    (np.zeros((32, 32)), np.array([[np.nan, 5.0]]), 16, 8.0, "NaN"),
    (np.zeros((32, 32)), np.array([[5.0, 5.0]]), 15, 8.0, "even box"),
    (np.zeros((32, 32)), np.array([[5.0, 5.0]]), 16, 16.0, "smaller than"),
    (np.zeros((32,)), np.array([[5.0, 5.0]]), 16, 8.0, "2-D image"),
])
def test_extract_bad_inputs(image, centres, box, diameter, match):
    with pytest.raises(CryolibError, match=match):
        extract_particles(image, centres, box, diameter)
