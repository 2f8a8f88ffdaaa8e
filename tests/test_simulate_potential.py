"""Coulomb potential volumes and projections, checked against analytic Gaussians."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import erf

from cryolib.core.errors import CryolibError
from cryolib.simulate import potential as P
from cryolib.simulate.structures import Structure, make_structure


def _atom(xyz=(0.0, 0.0, 0.0), weight=1000.0, sigma=2.0) -> Structure:
    return Structure(np.array([xyz], float), np.array([weight]), np.array([sigma]), "atom", "test")


@pytest.fixture(scope="module")
def globular() -> Structure:
    return make_structure("globular", 100.0, np.random.default_rng(3))


def _pixel_gaussian(centre_px, sigma_px: float, d: int) -> np.ndarray:
    """Pixel averages of a unit-integral 2-D Gaussian centred at (x, y) in pixels, image [y, x]."""
    g = np.arange(d) - d // 2
    s = np.sqrt(2) * sigma_px
    wx = 0.5 * (erf((g + 0.5 - centre_px[0]) / s) - erf((g - 0.5 - centre_px[0]) / s))
    wy = 0.5 * (erf((g + 0.5 - centre_px[1]) / s) - erf((g - 0.5 - centre_px[1]) / s))
    return wy[:, None] * wx[None, :]


# ----------------------------------------------------------------------------- volumes
@pytest.mark.parametrize("voxel_A", [1.0, 2.0, 4.0])
def test_volume_integral_equals_total_weight(globular, voxel_A):
    vol = P.structure_to_volume(globular, voxel_A)
    d = vol.shape[0]
    assert vol.shape == (d, d, d) and d % 2 == 0 and vol.dtype == torch.float32
    assert d * voxel_A >= 1.25 * globular.diameter_A
    integral = vol.double().sum().item() * voxel_A**3
    assert integral == pytest.approx(globular.total_weight_VA3, rel=1e-4)


def test_volume_of_one_atom_is_the_voxel_integrated_gaussian():
    """Off-grid atom, sigma below and above the voxel: exact erf products, axes [z, y, x]."""
    for sigma in (0.6, 3.0):
        atom = _atom((3.3, -2.2, 5.1), weight=500.0, sigma=sigma)
        vol = P.structure_to_volume(atom, 1.0, box_px=48).double().numpy()
        assert vol.sum() == pytest.approx(500.0, rel=1e-6)
        g = np.arange(48) - 24
        s = np.sqrt(2) * sigma
        w = [0.5 * (erf((g + 0.5 - u) / s) - erf((g - 0.5 - u) / s)) for u in (3.3, -2.2, 5.1)]
        expected = 500.0 * w[2][:, None, None] * w[1][None, :, None] * w[0][None, None, :]
        np.testing.assert_allclose(vol, expected, atol=1e-3 * expected.max())


def test_default_box_and_bad_arguments(globular):
    assert P.default_box_px(globular, 2.0) % 2 == 0
    with pytest.raises(CryolibError):
        P.structure_to_volume(globular, 0.0)
    with pytest.raises(CryolibError):
        P.structure_to_volume(globular, 2.0, box_px=63)


def test_atoms_outside_the_box_are_dropped():
    atom = _atom((40.0, 0.0, 0.0))
    assert P.structure_to_volume(atom, 1.0, box_px=32).abs().sum() == 0


# ----------------------------------------------------------------------------- projections
def test_projection_conserves_the_integral(globular):
    voxel = 2.0
    vol = P.structure_to_volume(globular, voxel)
    rots = np.concatenate([np.eye(3)[None], P.random_rotations(7, np.random.default_rng(0))])
    proj = P.project_volume(vol, rots, voxel)
    assert proj.shape == (8, vol.shape[0], vol.shape[0]) and proj.dtype == torch.float32
    volume_integral = vol.double().sum().item() * voxel**3
    integrals = proj.double().sum(dim=(1, 2)).numpy() * voxel**2
    np.testing.assert_allclose(integrals, volume_integral, rtol=1e-3)


def test_projection_of_a_gaussian_atom_is_the_analytic_2d_gaussian():
    """∫ W (2πσ²)^-3/2 exp(-r²/2σ²) dz = W/(2πσ²) exp(-ρ²/2σ²)  [V·Å], whatever the view."""
    weight, sigma, voxel, d = 2000.0, 5.0, 2.0, 48  # sigma = 2.5 voxels: voxel blur is second order
    vol = P.structure_to_volume(_atom(weight=weight, sigma=sigma), voxel, box_px=d)
    rots = np.concatenate([np.eye(3)[None], P.random_rotations(4, np.random.default_rng(1))])
    proj = P.project_volume(vol, rots, voxel).double().numpy()
    expected = weight / voxel**2 * _pixel_gaussian((0.0, 0.0), sigma / voxel, d)
    peak = weight / (2 * np.pi * sigma**2)
    assert expected.max() == pytest.approx(peak * (1 - voxel**2 / (24 * sigma**2)) ** 2, rel=1e-3)  # pixel average
    yy, xx = np.mgrid[:d, :d] - d // 2
    core = np.hypot(xx, yy) <= 3 * sigma / voxel  # width from the core; the wings carry the aliases

    def width2(img: np.ndarray) -> float:
        return float((img * xx**2 * core).sum() / (img * core).sum())

    for image in proj:
        np.testing.assert_allclose(image, expected, atol=5e-3 * peak)
        assert image.max() == pytest.approx(expected.max(), rel=5e-3)
        assert width2(image) == pytest.approx(width2(expected), rel=0.01)


def test_projection_places_atoms_at_R_p():
    """A particle point p appears at image (x, y) = (R p)_xy; image axes are [y, x]."""
    p = np.array([12.0, -6.0, 8.0])
    d, voxel = 64, 1.0
    vol = P.structure_to_volume(_atom(tuple(p), sigma=2.0), voxel, box_px=d)
    rots = P.random_rotations(5, np.random.default_rng(2))
    proj = P.project_volume(vol, rots, voxel).numpy()
    yy, xx = np.mgrid[:d, :d] - d // 2
    for R, image in zip(rots, proj):
        x, y = (R @ p)[:2] / voxel
        near = (np.hypot(xx - x, yy - y) < 7) * image  # local centroid, away from aliases
        assert (near * xx).sum() / near.sum() == pytest.approx(x, abs=0.3)
        assert (near * yy).sum() / near.sum() == pytest.approx(y, abs=0.3)


def test_projection_bad_arguments(globular):
    vol = P.structure_to_volume(globular, 4.0)
    with pytest.raises(CryolibError):
        P.project_volume(vol[:-2], np.eye(3)[None], 4.0)
    with pytest.raises(CryolibError):
        P.project_volume(vol, np.eye(3), 4.0)
    with pytest.raises(CryolibError):
        P.project_volume(vol, np.eye(3)[None], 4.0, fftfreq_max=0.7)


# ----------------------------------------------------------------------------- rotations
@pytest.mark.parametrize("kappa", [0.0, 5.0])
def test_rotations_are_proper(kappa):
    R = P.random_rotations(500, np.random.default_rng(0), kappa)
    assert R.shape == (500, 3, 3)
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-10)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-10)


def test_uniform_and_preferred_view_statistics():
    uniform = P.random_rotations(20000, np.random.default_rng(0))
    view_z = uniform[:, 2, 2]  # the particle's z component along the beam
    assert abs(view_z.mean()) < 0.02
    assert np.abs(view_z).mean() == pytest.approx(0.5, abs=0.02)
    assert np.abs(uniform.mean(axis=0)).max() < 0.02  # Haar measure: E[R] = 0
    kappa = 5.0
    preferred = P.random_rotations(20000, np.random.default_rng(0), kappa)
    assert preferred[:, 2, 2].mean() == pytest.approx(1 / np.tanh(kappa) - 1 / kappa, abs=0.02)
    assert np.abs(preferred[:, 2, 2]).mean() > 0.7
    assert abs(preferred[:, 0, 0].mean()) < 0.03  # in-plane angle stays uniform


def _relion_matrix(rot, tilt, psi):
    """RELION's Euler_angles2matrix, written out."""
    a, b, g = np.deg2rad([rot, tilt, psi])
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array(
        [[cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
         [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
         [sc, ss, cb]]
    )


def test_euler_zyz_is_relion_and_round_trips():
    angles = np.array([[30.0, 40.0, 50.0], [-100.0, 120.0, 170.0]])
    expected = np.stack([_relion_matrix(*a) for a in angles])
    np.testing.assert_allclose(P.euler_zyz_to_rotation(angles), expected, atol=1e-12)
    R = P.random_rotations(200, np.random.default_rng(4))
    euler = P.rotation_to_euler_zyz(R)
    assert euler.shape == (200, 3)
    assert np.all((euler[:, 1] >= 0) & (euler[:, 1] <= 180))
    np.testing.assert_allclose(P.euler_zyz_to_rotation(euler), R, atol=1e-9)
    np.testing.assert_allclose(P.euler_zyz_to_rotation(P.rotation_to_euler_zyz(np.eye(3))), np.eye(3)[None], atol=1e-12)


def test_random_rotations_bad_arguments():
    with pytest.raises(CryolibError):
        P.random_rotations(3, np.random.default_rng(0), preferred_orientation=-1.0)
    assert P.random_rotations(0, np.random.default_rng(0)).shape == (0, 3, 3)


# ----------------------------------------------------------------------------- micrograph helper
def test_particle_projections(globular):
    pixel = 4.0
    proj, euler = P.particle_projections(globular, 6, pixel, np.random.default_rng(5))
    d = P.default_box_px(globular, pixel)
    assert proj.shape == (6, d, d) and proj.dtype == np.float32 and euler.shape == (6, 3)
    np.testing.assert_allclose(proj.astype(float).sum(axis=(1, 2)) * pixel**2, globular.total_weight_VA3, rtol=1e-3)
    cached = P.prepared_structure(globular, pixel)
    again, euler2 = P.particle_projections(globular, 6, pixel, np.random.default_rng(5))
    assert P.prepared_structure(globular, pixel) is cached  # the volume is built once
    np.testing.assert_array_equal(proj, again)
    np.testing.assert_array_equal(euler, euler2)
    # the projections are those of the returned Euler angles
    volume = P.structure_to_volume(globular, pixel)
    pad = P.particle_pad_factor(d)
    direct = P.project_volume(volume, P.euler_zyz_to_rotation(euler), pixel, pad_factor=pad)
    np.testing.assert_allclose(proj, direct.numpy(), atol=1e-4 * np.abs(proj).max())
    # a centred particle projects to a centred image
    yy, xx = np.mgrid[:d, :d] - d // 2
    for image in proj:
        assert abs((image * xx).sum() / image.sum()) < 0.2
        assert abs((image * yy).sum() / image.sum()) < 0.2
    with pytest.raises(CryolibError):
        P.particle_projections(globular, 2, 0.0, np.random.default_rng(0))
