"""cryolib.reconstruct.single_particle end to end on tiny synthetic micrographs: CTF-modulated projections
of one pseudo-atomic particle at known poses (cryolib.simulate), extracted, phase-flipped and reconstructed.

``synthetic_dataset`` is shared with the other reconstruction tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from cryolib.core.errors import CryolibError
from cryolib.io.datasets import Dataset
from cryolib.reconstruct import poses as P
from cryolib.reconstruct.single_particle import reconstruct_from_picks
from cryolib.simulate.optics import apply_transfer, ctf_2d
from cryolib.simulate.potential import project_volume, random_rotations, rotation_to_euler_zyz, structure_to_volume
from cryolib.simulate.sample import add_patch
from cryolib.simulate.structures import make_structure

PIXEL_A = 4.0
DIAMETER_A = 80.0  # 20 px
BOX = 32
SIZE = 192
SPACING = 44  # px between particle centres: 4 x 4 per micrograph


@dataclass
class Synthetic:
    ds: Dataset
    clean: dict[str, np.ndarray]  # CTF-modulated contrast, no noise
    noisy: dict[str, np.ndarray]  # the same plus white Gaussian noise
    shapes: dict[str, tuple[int, int]]
    truth: dict[str, pd.DataFrame]


def synthetic_dataset(root, n_micrographs: int = 6, noise_sigma: float = 0.0, seed: int = 0) -> Synthetic:
    """``n_micrographs`` of SIZE px, 16 particles each on a jittered grid, defocus 1.0-2.2 µm."""
    rng = np.random.default_rng(seed)
    vol = structure_to_volume(make_structure("globular", DIAMETER_A, rng), PIXEL_A, BOX)
    meta, clean, noisy, truth = [], {}, {}, {}
    (root / "ground_truth" / "particle_poses").mkdir(parents=True, exist_ok=True)
    for k in range(n_micrographs):
        stem = f"syn_{k:02d}"
        g = np.arange(SPACING // 2, SIZE - SPACING // 2 + 1, SPACING)
        xy = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2) + rng.integers(-3, 4, (len(g) ** 2, 2))
        R = random_rotations(len(xy), rng)
        proj = project_volume(vol, R, PIXEL_A).numpy()
        potential = np.zeros((SIZE, SIZE), np.float32)
        for (x, y), img in zip(xy, proj):
            add_patch(potential, img, int(y) - BOX // 2, int(x) - BOX // 2)
        df = 1.0 + 1.2 * k / max(n_micrographs - 1, 1)
        optics = {"defocus_u_um": df + 0.03, "defocus_v_um": df - 0.03, "astigmatism_angle_deg": 30.0 * k,
                  "voltage_kV": 300.0, "cs_mm": 2.7, "amplitude_contrast": 0.07}
        ctf = ctf_2d((SIZE, SIZE), PIXEL_A, optics["defocus_u_um"], optics["defocus_v_um"],
                     optics["astigmatism_angle_deg"], 300.0, 2.7, 0.07)
        phi = torch.from_numpy(potential * 6.5e-4)
        clean[stem] = (1.0 + apply_transfer(phi - phi.mean(), ctf)).numpy()
        noisy[stem] = clean[stem] + noise_sigma * rng.normal(size=(SIZE, SIZE)).astype(np.float32)
        euler = rotation_to_euler_zyz(R)
        truth[stem] = pd.DataFrame({"x": xy[:, 0].astype(float), "y": xy[:, 1].astype(float),
                                    "diameter_px": DIAMETER_A / PIXEL_A, "rot_deg": euler[:, 0],
                                    "tilt_deg": euler[:, 1], "psi_deg": euler[:, 2]})
        truth[stem].to_csv(root / "ground_truth" / "particle_poses" / f"{stem}.csv", index=False)
        meta.append({"micrograph": stem, **optics, "pixel_size_A": PIXEL_A})
    ds = Dataset("synthetic", root, [root / "micrographs" / f"{s}.mrc" for s in clean], pd.DataFrame(meta),
                 DIAMETER_A / PIXEL_A, PIXEL_A)
    return Synthetic(ds, clean, noisy, {s: (SIZE, SIZE) for s in clean}, truth)


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    """96 particles; noise σ 0.05 against a particle contrast of σ ≈ 0.006 (SNR ≈ 0.015)."""
    return synthetic_dataset(tmp_path_factory.mktemp("syn"), noise_sigma=0.05)


def _gt(syn: Synthetic) -> dict[str, pd.DataFrame]:
    return {s: t[["x", "y"]].assign(score=1.0) for s, t in syn.truth.items()}


def _mean_fsc(rec) -> float:
    return float(rec.fsc["fsc"].iloc[1:].mean())


def test_perfect_picks_of_clean_projections_reach_nyquist(syn, one_thread):
    """Noise-free CTF-modulated projections at their true poses: the FSC never falls below 0.143, so the
    resolution is Nyquist, 8 Å (it stays above 0.66 in every shell; the box also holds neighbours' fringes)."""
    rec = reconstruct_from_picks(syn.ds, _gt(syn), None, seed=0, images=syn.clean, box_px=BOX)
    assert rec.n_particles == 96 and rec.n_true_positive == 96 and rec.n_false_positive == 0
    assert rec.half_maps.shape == (2, BOX, BOX, BOX) and rec.box_px == BOX
    assert rec.resolution_A == pytest.approx(2 * PIXEL_A)
    assert rec.fsc["fsc"].min() > 0.5 and _mean_fsc(rec) > 0.85


def test_map_is_protein_positive(syn, one_thread):
    """After the phase flip the particle is positive density at the box centre (what ChimeraX shows)."""
    rec = reconstruct_from_picks(syn.ds, _gt(syn), None, seed=0, images=syn.clean, box_px=BOX)
    vol = rec.full_map
    c = BOX // 2
    assert vol[c - 4 : c + 4, c - 4 : c + 4, c - 4 : c + 4].mean() > 3 * abs(vol[:4, :4, :4].mean())


def test_random_picks_and_random_poses_give_low_fsc(syn, one_thread):
    gt = reconstruct_from_picks(syn.ds, _gt(syn), None, seed=0, images=syn.noisy, box_px=BOX)
    rnd = reconstruct_from_picks(syn.ds, P.random_picks(syn.shapes, 16, seed=0), None, seed=0, images=syn.noisy,
                                 box_px=BOX)
    assert gt.resolution_A < 20.0 and _mean_fsc(gt) > 0.25
    assert rnd.n_particles == 96 and rnd.n_true_positive < 20
    assert rnd.resolution_A > 2.5 * gt.resolution_A and _mean_fsc(rnd) < 0.1
    # the true centres with random orientations: the poses carry the map
    from cryolib.reconstruct.single_particle import particle_stack, reconstruct_particles
    from cryolib.simulate.potential import random_rotations

    parts, rot, table = particle_stack(syn.ds, _gt(syn), seed=0, images=syn.noisy, box_px=BOX)
    shuffled = reconstruct_particles(parts, random_rotations(len(parts), np.random.default_rng(5)), PIXEL_A,
                                     syn.ds.diameter_px, seed=0)
    # random orientations still share the particle's spherical average (a blob), so the first shells agree;
    # from ~20 Å (shell 6 of 16) on, where the orientations matter, the correlation is gone
    band = slice(6, 12)
    assert shuffled.resolution_A > 1.3 * gt.resolution_A
    assert shuffled.fsc["fsc"].iloc[band].mean() < 0.5 * gt.fsc["fsc"].iloc[band].mean()


def test_false_positives_degrade_the_map_at_the_same_count(syn, one_thread):
    res, fsc = [], []
    for fraction in (0.0, 0.5, 1.0):
        picks = P.mix_false_positives(_gt(syn), fraction, syn.shapes, syn.ds.diameter_px, seed=0)
        rec = reconstruct_from_picks(syn.ds, picks, None, seed=0, images=syn.noisy, box_px=BOX)
        assert rec.n_particles == 96 and rec.n_false_positive == round(96 * fraction)
        res.append(rec.resolution_A)
        fsc.append(_mean_fsc(rec))
    assert res[0] < res[1] < res[2] and fsc[0] > fsc[1] > fsc[2]


def test_cap_takes_the_best_scored_picks_and_is_seeded(syn, one_thread):
    picks = P.mix_false_positives(_gt(syn), 0.5, syn.shapes, syn.ds.diameter_px, seed=0)
    scored = {s: df.assign(score=[1.0 if m.any() else 0.0 for m in
                                  [(abs(syn.truth[s]["x"] - x) < 1) & (abs(syn.truth[s]["y"] - y) < 1)
                                   for x, y in zip(df["x"], df["y"])]]) for s, df in picks.items()}
    rec = reconstruct_from_picks(syn.ds, scored, 40, seed=0, images=syn.noisy, box_px=BOX)
    assert rec.n_particles == 40 and rec.n_true_positive == 40  # the true picks score higher
    again = reconstruct_from_picks(syn.ds, scored, 40, seed=0, images=syn.noisy, box_px=BOX)
    assert np.array_equal(rec.half_maps, again.half_maps)


def test_maps_are_written_with_their_voxel_size(syn, tmp_path, one_thread):
    from cryolib.io.volumes import read_map

    rec = reconstruct_from_picks(syn.ds, _gt(syn), 20, seed=0, images=syn.clean, box_px=BOX)
    paths = rec.write(tmp_path, "syn")
    data, voxel = read_map(paths[-1])
    assert [p.name for p in paths] == ["syn_half1.mrc", "syn_half2.mrc", "syn.mrc"]
    assert voxel == pytest.approx(PIXEL_A) and np.allclose(data, rec.full_map)


def test_bad_inputs_raise(syn):
    with pytest.raises(CryolibError, match="got none"):
        reconstruct_from_picks(syn.ds, {}, None, seed=0, images=syn.clean)
    empty = {s: pd.DataFrame({"x": [], "y": []}) for s in syn.clean}
    with pytest.raises(CryolibError, match="no picks"):
        reconstruct_from_picks(syn.ds, empty, None, seed=0, images=syn.clean, box_px=BOX)
    one = {"syn_00": pd.DataFrame({"x": [44.0], "y": [44.0]})}
    with pytest.raises(CryolibError, match="at least 2 particles"):
        reconstruct_from_picks(syn.ds, one, None, seed=0, images=syn.clean, box_px=BOX)
    with pytest.raises(CryolibError, match="no image given"):
        reconstruct_from_picks(syn.ds, {"syn_00": one["syn_00"]}, None, seed=0, images={}, box_px=BOX)
    with pytest.raises(CryolibError, match="columns x, y"):
        reconstruct_from_picks(syn.ds, {"syn_00": pd.DataFrame({"a": [1.0]})}, None, seed=0, images=syn.clean)
    with pytest.raises(CryolibError, match="cap must be at least 1"):
        reconstruct_from_picks(syn.ds, _gt(syn), 0, seed=0, images=syn.clean, box_px=BOX)
    with pytest.raises(CryolibError, match="even box"):
        reconstruct_from_picks(syn.ds, _gt(syn), None, seed=0, images=syn.clean, box_px=33)


def test_a_linear_filter_leaves_the_fsc_almost_unchanged(syn, one_thread):
    """With poses fixed the FSC is a ratio per shell: a Gaussian blur of every micrograph (a linear filter
    that never reaches zero below Nyquist here) changes it only through edge effects and the per-box
    normalisation, not through the filter's attenuation (why Table 3's low-pass scores like raw)."""
    from scipy import ndimage

    blurred = {s: ndimage.gaussian_filter(img, 1.0) for s, img in syn.noisy.items()}
    raw = reconstruct_from_picks(syn.ds, _gt(syn), None, seed=0, images=syn.noisy, box_px=BOX)
    blur = reconstruct_from_picks(syn.ds, _gt(syn), None, seed=0, images=blurred, box_px=BOX)
    # a σ = 1 px Gaussian keeps exp(-2π²σ²f²) = 0.007 of the amplitude at Nyquist, yet the FSC barely moves
    diff = np.abs(raw.fsc["fsc"].to_numpy() - blur.fsc["fsc"].to_numpy())[1:]
    assert diff.max() < 0.15 and diff.mean() < 0.04  # the largest moves are in the noise shells (FSC ≈ 0)
    assert abs(raw.resolution_A - blur.resolution_A) < 0.15 * raw.resolution_A
