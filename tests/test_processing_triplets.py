"""cryolib.processing.triplets: DRACO's (full, odd, even) tile dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryolib.core.errors import CryolibError
from cryolib.processing.tiles import tile_stats
from cryolib.processing.triplets import KEYS, FullTileView, TripletDataset, dihedral, half_dose_scale


def count_triplets(n: int = 2, size: int = 64, dose: float = 20.0, seed: int = 0):
    """Poisson halves of a smooth positive signal; full = odd + even (counts, as the simulator writes)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    full, odd, even = [], [], []
    for i in range(n):
        signal = dose * (1.0 + 0.5 * np.sin(xx / (5.0 + i)) * np.cos(yy / 7.0))  # e-/px over the whole movie
        o = rng.poisson(signal / 2).astype(np.float32)
        e = rng.poisson(signal / 2).astype(np.float32)
        odd.append(o), even.append(e), full.append(o + e)
    return full, odd, even


def test_dihedral_gives_eight_distinct_transforms():
    a = np.arange(12.0).reshape(3, 4)[:, :3]  # 3x3, no symmetry
    outs = [dihedral(a, k) for k in range(8)]
    assert np.array_equal(outs[0], a)
    assert len({o.tobytes() for o in outs}) == 8
    assert np.array_equal(dihedral(a, 4), a[:, ::-1]) and np.array_equal(dihedral(a, 2), a[::-1, ::-1])
    with pytest.raises(CryolibError):
        dihedral(a, 8)


def test_same_augmentation_for_all_three():
    base = np.arange(32 * 32, dtype=np.float32).reshape(32, 32)  # no symmetry: each transform differs
    full, odd, even = [base], [base + 1.0], [2.0 * base]
    ds = TripletDataset(full, odd, even, tile_px=16, mean=0.0, std=1.0, half_scale=1.0, augment=True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        item = ds[3]
        assert set(item) == set(KEYS)
        raw = ds.tiles(3)[0]
        matches = [k for k in range(8) if np.array_equal(item["full"][0].numpy(), dihedral(raw, k))]
        assert len(matches) == 1
        seen.add(matches[0])
        # odd and even went through the same transform as full, pixel for pixel
        assert torch.equal(item["odd"], item["full"] + 1.0)
        assert torch.equal(item["even"], 2.0 * item["full"])
    assert len(seen) >= 6  # the transform is drawn at random (40 draws of 8: all but ~never 6+)
    plain = TripletDataset(full, odd, even, tile_px=16, mean=0.0, std=1.0, half_scale=1.0, augment=False)
    assert np.array_equal(plain[3]["full"][0].numpy(), base[16:32, 16:32])  # row-major: tile 3 = row 1, col 1


def test_standardisation_and_dose_scaling():
    full, odd, even = count_triplets()
    ds = TripletDataset(full, odd, even, tile_px=32, augment=False)
    mean, std = tile_stats(full, 32)
    assert ds.stats["mean"] == pytest.approx(mean) and ds.stats["std"] == pytest.approx(std)
    assert ds.stats["tile_px"] == 32 and ds.stats["half_scale"] == "dose-ratio"
    assert len(ds) == 2 * 4
    item = ds[5]  # micrograph 1, row 0, col 1
    assert all(item[k].shape == (1, 32, 32) and item[k].dtype == torch.float32 for k in KEYS)
    s_odd = full[1].mean() / odd[1].mean()
    assert 1.9 < s_odd < 2.1  # full = odd + even
    np.testing.assert_allclose(item["full"][0].numpy(), (full[1][:32, 32:] - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(item["odd"][0].numpy(), (s_odd * odd[1][:32, 32:] - mean) / std, rtol=1e-4, atol=1e-4)
    # after scaling, the halves estimate the same signal as the full image
    allk = {k: np.concatenate([ds[i][k].numpy().ravel() for i in range(len(ds))]) for k in KEYS}
    assert abs(allk["odd"].mean() - allk["full"].mean()) < 1e-4 and abs(allk["even"].mean()) < 1e-4
    assert allk["odd"].var() > 1.3 * allk["full"].var()  # halves carry more noise (Poisson at half dose)
    fixed = TripletDataset(full, odd, even, tile_px=32, augment=False, half_scale=2.0, mean=mean, std=std)
    np.testing.assert_allclose(fixed[0]["even"][0].numpy(), (2.0 * even[0][:32, :32] - mean) / std, rtol=1e-5, atol=1e-5)
    assert fixed.stats["half_scale"] == 2.0


def test_subsampling_full_view_and_stats_are_plain():
    full, odd, even = count_triplets(n=3)
    ds = TripletDataset(full, odd, even, tile_px=16, max_tiles_per_image=5, augment=False)
    assert len(ds) == 15
    view = ds.full_view()
    assert isinstance(view, FullTileView) and len(view) == len(ds) and view.stats == ds.stats
    assert torch.equal(view[7], ds[7]["full"])
    assert all(isinstance(v, (int, float, str)) for v in ds.stats.values())


def test_bad_input_raises():
    full, odd, even = count_triplets()
    with pytest.raises(CryolibError, match="same positive number"):
        TripletDataset(full, odd[:1], even)
    with pytest.raises(CryolibError, match="shapes"):
        TripletDataset(full, [o[:, :40] for o in odd], even, tile_px=16)
    with pytest.raises(CryolibError, match="smaller than one"):
        TripletDataset(full, odd, even, tile_px=128)
    with pytest.raises(CryolibError, match="NaN"):
        TripletDataset(full, [np.full_like(odd[0], np.nan), odd[1]], even, tile_px=16)
    with pytest.raises(CryolibError, match="half_scale"):
        TripletDataset(full, odd, even, tile_px=16, half_scale=-1.0)
    with pytest.raises(CryolibError, match="mean and std"):
        TripletDataset(full, odd, even, tile_px=16, mean=0.0)
    with pytest.raises(CryolibError, match="half_scale=<number>"):  # already-normalised halves: no dose ratio
        TripletDataset(full, [o - o.mean() for o in odd], even, tile_px=16)
    with pytest.raises(CryolibError):
        half_dose_scale(np.zeros((4, 4)), np.ones((4, 4)))


def test_from_folder_reads_movie_triplets(tmp_path):
    from cryolib.io.datasets import load_dataset
    from cryolib.io.micrographs import write_mrc

    full, odd, even = count_triplets()
    for i in range(2):
        write_mrc(tmp_path / "micrographs" / f"m{i}.mrc", full[i], 1.0)
        for key, images in zip(KEYS, (full, odd, even)):
            write_mrc(tmp_path / "movies" / key / f"m{i}.mrc", images[i], 1.0)
    ds = TripletDataset.from_folder(load_dataset(tmp_path, diameter_px=10.0), split=None, tile_px=32, augment=False)
    ref = TripletDataset(full, odd, even, tile_px=32, augment=False)
    assert len(ds) == len(ref) and all(torch.equal(ds[3][k], ref[3][k]) for k in KEYS)
    (tmp_path / "movies" / "odd" / "m1.mrc").unlink()
    with pytest.raises(CryolibError, match="m1.mrc is missing"):
        TripletDataset.from_folder(load_dataset(tmp_path, diameter_px=10.0), split=None, tile_px=32)
