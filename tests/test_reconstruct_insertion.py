"""cryolib.reconstruct.insertion: Fourier-slice insertion inverts the simulator's projector (torch-fourier-slice,
R^T convention), and its bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from cryolib.core.errors import CryolibError
from cryolib.evaluate.fsc import fourier_shell_correlation, soft_sphere_mask
from cryolib.reconstruct.insertion import half_split, reconstruct_half_maps
from cryolib.simulate.potential import project_volume, random_rotations, structure_to_volume
from cryolib.simulate.structures import make_structure


@pytest.fixture(scope="module")
def projections():
    rng = np.random.default_rng(0)
    vol = structure_to_volume(make_structure("globular", 80.0, rng), 4.0, 32)
    rot = random_rotations(300, rng)
    return vol.numpy(), rot, project_volume(vol, rot, 4.0).numpy()


def test_noise_free_projections_reconstruct_the_volume(projections, one_thread):
    vol, rot, proj = projections
    maps = reconstruct_half_maps(proj, rot, half_split(len(rot), np.random.default_rng(0)))
    mask = soft_sphere_mask(32, 12.0, 3.0)
    truth = fourier_shell_correlation(maps.mean(0) * mask, vol * mask, 4.0)["fsc"].to_numpy()
    assert truth[1:-1].min() > 0.95  # every shell below Nyquist
    # the transposed (wrong) convention scrambles the map: the test can fail
    wrong = reconstruct_half_maps(proj, rot.transpose(0, 2, 1), half_split(len(rot), np.random.default_rng(0)))
    bad = fourier_shell_correlation(wrong.mean(0) * mask, vol * mask, 4.0)["fsc"].to_numpy()
    assert bad[8:].mean() < 0.5


def test_half_split_is_balanced_and_seeded():
    a = half_split(11, np.random.default_rng(0))
    assert sorted(np.bincount(a)) == [5, 6] and np.array_equal(a, half_split(11, np.random.default_rng(0)))


def test_bad_inputs(projections):
    _, rot, proj = projections
    halves = np.zeros(len(rot), int)
    with pytest.raises(CryolibError, match="at least one particle"):
        reconstruct_half_maps(proj, rot, halves)
    with pytest.raises(CryolibError, match="one \\(3, 3\\) rotation"):
        reconstruct_half_maps(proj, rot[:-1], half_split(len(rot), np.random.default_rng(0)))
    with pytest.raises(CryolibError, match="B even"):
        reconstruct_half_maps(proj[:, :31, :31], rot, halves)
    with pytest.raises(CryolibError, match="0 or 1"):
        reconstruct_half_maps(proj, rot, halves + 2)


def test_insertion_gives_the_same_bits_every_time_on_two_threads():
    """torch's CPU index_put_(accumulate=True) adds in a thread-dependent order unless deterministic
    algorithms are on: without them this check fails (measured: 3 runs of 300 particles differ)."""
    import torch

    from cryolib.reconstruct.insertion import insert_particles

    rng = np.random.default_rng(0)
    parts = torch.from_numpy(rng.normal(size=(300, 48, 48)).astype(np.float32))
    rot = torch.from_numpy(np.asarray(random_rotations(300, rng), dtype=np.float32))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = [insert_particles(parts, rot) for _ in range(3)]
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(runs[0][0], d) and torch.equal(runs[0][1], w) for d, w in runs[1:])
    assert not torch.are_deterministic_algorithms_enabled()  # the setting is restored after
