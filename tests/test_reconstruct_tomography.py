"""cryolib.reconstruct.tomography: WBP of simulated point objects recovers their positions (in the tilt
convention of cryolib.simulate.tilt_series), a full ±90° series recovers the mass, the ±60° tomogram
leaves the missing wedge empty, the R-weighting filter is the ramp, and bad inputs raise CryolibError."""

from __future__ import annotations

import numpy as np
import pytest

from cryolib.core.errors import CryolibError
from cryolib.reconstruct import tomography as tomo
from cryolib.simulate import tilt_series as ts

SHAPE = (40, 48, 64)  # (Z, Y, X) voxels, 1 Å each


def _project(atoms_px: np.ndarray, angles: np.ndarray, sigma_px: float = 1.0, weight: float = 1000.0) -> np.ndarray:
    """Noise-free tilts (n, Y, X) of Gaussian atoms at (x, y, z) px from the volume centre."""
    n = len(atoms_px)
    return ts.project_atoms(atoms_px, np.full(n, weight), np.full(n, sigma_px), ts.tilt_rotation_matrices(angles),
                            SHAPE[1:], 1.0).numpy()


@pytest.mark.parametrize("xyz", [(7.3, -5.0, 9.0), (-11.0, 8.6, -6.2), (0.0, 0.0, 14.0)])
def test_wbp_of_a_point_object_recovers_its_position(xyz):
    angles = ts.tilt_angles(60, 3)
    tomogram = tomo.weighted_back_projection(_project(np.array([xyz]), angles), angles, SHAPE[0])
    assert tomogram.shape == SHAPE
    z, y, x = np.unravel_index(np.argmax(tomogram), SHAPE)
    found = np.array([x - SHAPE[2] // 2, y - SHAPE[1] // 2, z - SHAPE[0] // 2])
    assert np.all(np.abs(found - np.array(xyz)) <= 1.0), (found, xyz)


def test_wbp_position_matches_the_ground_truth_volume_of_the_same_atom():
    atom = np.array([[5.0, 3.0, -8.0]])
    angles = ts.tilt_angles(60, 3)
    tomogram = tomo.weighted_back_projection(_project(atom, angles), angles, SHAPE[0])
    truth = ts.specimen_volume(ts.Specimen(atom, np.array([1000.0]), np.array([1.0]), None), SHAPE, 1.0)
    assert np.unravel_index(np.argmax(tomogram), SHAPE) == np.unravel_index(np.argmax(truth), SHAPE)


def test_full_range_wbp_recovers_the_mass_of_a_blob():
    angles = np.arange(-90.0, 90.0, 2.0)  # 90 tilts, complete coverage
    tomogram = tomo.weighted_back_projection(_project(np.array([[4.0, -2.0, 3.0]]), angles, sigma_px=1.5), angles,
                                             SHAPE[0], apodisation="none")
    z, y, x = SHAPE[0] // 2 + 3, SHAPE[1] // 2 - 2, SHAPE[2] // 2 + 4
    local = tomogram[z - 6 : z + 7, y - 6 : y + 7, x - 6 : x + 7].sum()
    assert local == pytest.approx(1000.0, rel=0.05)  # V·Å³ / Å³ per voxel: the mass comes back
    limited = ts.tilt_angles(60, 3)
    wedge = tomo.weighted_back_projection(_project(np.array([[4.0, -2.0, 3.0]]), limited, sigma_px=1.5), limited,
                                          SHAPE[0], apodisation="none")
    assert wedge.max() < 0.9 * tomogram.max()  # the missing wedge smears the blob along z


def _wedge_power_ratio(tilt_max: float) -> float:
    """Power at Fourier directions 70-85° from k_x (in the x-z plane) over power within 45° of k_x."""
    rng = np.random.default_rng(0)
    atoms = np.column_stack([rng.uniform(-18, 18, 150), rng.uniform(-16, 16, 150), rng.uniform(-10, 10, 150)])
    angles = ts.tilt_angles(tilt_max, 3)
    tomogram = tomo.weighted_back_projection(_project(atoms, angles, sigma_px=1.0), angles, SHAPE[0])
    window = np.hanning(SHAPE[0])[:, None, None] * np.hanning(SHAPE[2])[None, None, :]
    power = (np.abs(np.fft.fftn(tomogram * window)) ** 2).sum(axis=1)  # [kz, kx], summed over ky
    kz = np.fft.fftfreq(SHAPE[0])[:, None]
    kx = np.fft.fftfreq(SHAPE[2])[None, :]
    k, angle = np.hypot(kz, kx), np.degrees(np.arctan2(np.abs(kz), np.abs(kx)))
    band = (k > 0.06) & (k < 0.35)
    return float(power[band & (angle > 70) & (angle < 85)].mean() / power[band & (angle < 45)].mean())


def test_the_missing_wedge_beyond_60_degrees_is_empty():
    inside = _wedge_power_ratio(60.0)
    assert inside < 0.02, inside
    assert _wedge_power_ratio(87.0) > 10 * inside  # sampled directions are not empty: the check can fail


def test_r_weight_filter_is_the_ramp_with_a_small_positive_dc():
    padded = 256
    ramp = tomo.r_weight_filter(padded // 2 + 1, padded, apodisation="none").numpy()
    k = np.fft.rfftfreq(padded)
    np.testing.assert_allclose(ramp[1:], k[1:], atol=2e-3)
    assert 0 < ramp[0] < 2.0 / padded
    cosine = tomo.r_weight_filter(padded // 2 + 1, padded, apodisation="cosine", cutoff=0.5).numpy()
    assert cosine[k > 0.25].max() == 0 and np.all(cosine[1:60] <= ramp[1:60] + 1e-7)
    hann = tomo.r_weight_filter(padded // 2 + 1, padded, apodisation="hann").numpy()
    assert np.all(hann <= tomo.r_weight_filter(padded // 2 + 1, padded).numpy() + 1e-7)


def test_angular_weights_are_the_spacing():
    np.testing.assert_allclose(tomo.angular_weights(np.array([-6.0, -3.0, 0.0, 3.0, 6.0])), np.deg2rad(3.0))
    np.testing.assert_allclose(tomo.angular_weights(np.array([0.0, -10.0, 10.0, 20.0])),
                               np.deg2rad([10.0, 10.0, 10.0, 10.0]))
    np.testing.assert_allclose(tomo.angular_weights(np.array([0.0, 2.0, 6.0])), np.deg2rad([2.0, 3.0, 4.0]))


@pytest.mark.parametrize("tilts, angles, match", [
    (np.zeros((3, 8, 8)), np.array([-95.0, 0.0, 30.0]), "±90"),
    (np.zeros((0, 8, 8)), np.zeros(0), "non-empty"),
    (np.zeros((3, 8, 8)), np.array([0.0, 10.0]), "one angle"),
    (np.zeros((8, 8)), np.zeros(8), r"\(n, H, W\)"),
    (np.full((2, 8, 8), np.nan), np.array([0.0, 5.0]), "NaN"),
])
def test_bad_inputs_raise_cryolib_error(tilts, angles, match):
    with pytest.raises(CryolibError, match=match):
        tomo.weighted_back_projection(tilts, angles, 8)


def test_bad_filter_settings_and_depth_raise_cryolib_error():
    tilts, angles = np.zeros((2, 8, 8)), np.array([0.0, 5.0])
    with pytest.raises(CryolibError, match="apodisation"):
        tomo.weighted_back_projection(tilts, angles, 8, apodisation="ramp-lak")
    with pytest.raises(CryolibError, match="cutoff"):
        tomo.weighted_back_projection(tilts, angles, 8, cutoff=1.5)
    with pytest.raises(CryolibError, match="slice"):
        tomo.weighted_back_projection(tilts, angles, 0)
