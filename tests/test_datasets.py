"""Registry of analogs, the on-disk layout, resume and determinism, and real CryoPPP folders."""

import numpy as np
import pandas as pd
import pytest

from cryolib import CryolibError
from cryolib.io.datasets import assign_splits, datasets_with_role, get_spec, load_dataset, load_registry
from cryolib.io.micrographs import read_coordinates, read_micrograph, write_coordinates, write_mrc

CRYOEMMAE = [10291, 10077, 10590, 10816, 10028, 10081, 10096, 10240, 10406, 10289, 10737, 10059, 11183, 10017]
DRACO = [10081, 10350, 10407, 10421, 10096, 10075, 11521]


def test_registry_has_every_paper_dataset_as_a_named_analog():
    reg = load_registry()
    for empiar in set(CRYOEMMAE + DRACO):
        spec = get_spec(str(empiar), reg)
        assert spec.name == f"sim-{empiar}" and spec.is_simulated
    assert [get_spec(n, reg).empiar for n in datasets_with_role("cryoemmae_train", reg)] == CRYOEMMAE[:4]
    assert len(datasets_with_role("cryoemmae_eval", reg)) == 14


def test_pixel_size_reproduces_the_papers_1024_scale():
    spec = get_spec("sim-10291")
    assert spec.diameter_px == pytest.approx(2 * 17.94, rel=1e-3)  # d512 of the repo table, at 1024 px
    assert 3.0 <= spec.pixel_size_A <= 8.0


def test_known_difficulties_are_encoded():
    reg = load_registry()
    assert reg["sim-10350"].sample["aggregation"] > 0.5 and reg["sim-10350"].family == "filament"
    assert reg["sim-10407"].acquisition["dose_e_per_A2"] < reg["sim-10291"].acquisition["dose_e_per_A2"]
    assert reg["sim-10081"].family == "membrane_channel"
    assert reg["sim-10421"].family == "octahedral_cage" and reg["sim-10075"].family == "icosahedral_capsid"


def test_unknown_dataset_lists_names():
    with pytest.raises(CryolibError, match="sim-10081"):
        get_spec("sim-1")


def test_splits_are_60_20_20_and_seeded():
    s = assign_splits(10, 0, "x")
    assert (s.count("train"), s.count("val"), s.count("test")) == (6, 2, 2)
    assert s == assign_splits(10, 0, "x") and s != assign_splits(10, 1, "x")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from cryolib.simulate.dataset import build_dataset

    root = tmp_path_factory.mktemp("ds") / "sim-10291"
    return build_dataset("sim-10291", 3, root, size_px=128, n_frames=4, seed=3, progress=False)


def test_built_dataset_has_cryoppp_layout_and_reader_accepts_it(tiny):
    assert len(tiny.micrographs) == 3
    for stem in tiny.stems:
        img, px = read_micrograph(tiny.path_of(stem))
        assert img.shape == (128, 128) and px == pytest.approx(tiny.pixel_size_A, rel=1e-4)
        coords = read_coordinates(tiny.root / "ground_truth" / "particle_coordinates" / f"{stem}.csv", image_shape=img.shape)
        np.testing.assert_allclose(coords["diameter"], tiny.diameter_px, rtol=1e-5)
        full, odd, even = (read_micrograph(tiny.path_of(stem, k))[0] for k in ("full", "odd", "even"))
        np.testing.assert_allclose(full, odd + even, rtol=1e-5, atol=1e-3)
    assert {"micrograph", "split", "quality", "defect", "defocus_u_um"} <= set(tiny.metadata.columns)


def test_build_resumes_and_is_deterministic(tiny, tmp_path):
    from cryolib.simulate.dataset import build_dataset

    first = tiny.path_of(tiny.stems[0])
    mtime = first.stat().st_mtime_ns
    again = build_dataset("sim-10291", 3, tiny.root, size_px=128, n_frames=4, seed=3, progress=False)
    assert first.stat().st_mtime_ns == mtime  # complete micrographs are skipped
    other = build_dataset("sim-10291", 2, tmp_path / "b", size_px=128, n_frames=4, seed=3, progress=False)
    np.testing.assert_array_equal(read_micrograph(other.path_of(other.stems[1]))[0], read_micrograph(again.path_of(again.stems[1]))[0])


def test_stale_folder_with_other_settings_is_refused(tiny):
    from cryolib.simulate.dataset import build_dataset

    with pytest.raises(CryolibError, match="other settings"):
        build_dataset("sim-10291", 3, tiny.root, size_px=128, n_frames=4, seed=4, progress=False)


def test_real_cryoppp_folder_loads(tmp_path):
    root = tmp_path / "10017"
    write_mrc(root / "micrographs" / "a.mrc", np.random.default_rng(0).normal(size=(64, 80)).astype(np.float32), 1.77)
    write_coordinates(root / "ground_truth" / "particle_coordinates" / "a.csv", pd.DataFrame({"x": [10.0], "y": [20.0], "diameter": [12.0]}))
    ds = load_dataset(root)
    assert ds.diameter_px == 12.0 and ds.stems == ["a"] and len(ds.coordinates("a")) == 1


def test_not_a_dataset_folder(tmp_path):
    with pytest.raises(CryolibError, match="micrographs"):
        load_dataset(tmp_path)


def test_stale_folder_is_rebuilt_when_asked(tmp_path):
    from cryolib.simulate.dataset import build_dataset

    root = tmp_path / "sim-10291"
    build_dataset("sim-10291", 1, root, size_px=96, n_frames=2, seed=1, progress=False)
    ds = build_dataset("sim-10291", 1, root, size_px=96, n_frames=2, seed=2, overwrite="if-stale", progress=False)
    import yaml

    assert yaml.safe_load((ds.root / "dataset.yaml").read_text())["seed"] == 2
    assert len(ds.micrographs) == 1


def test_dataset_dir_defaults_to_the_repository_data_folder(tmp_path, monkeypatch):
    """Datasets go to <repo>/data/<profile>/<name> (not into the package beside datasets.yaml), or $CRYOLIB_DATA."""
    from cryolib.core.jsonable import REPO_ROOT
    from cryolib.io.datasets import DATA_ENV, REGISTRY_PATH, dataset_dir

    monkeypatch.delenv(DATA_ENV, raising=False)
    default = dataset_dir("sim-10081", "smoke")
    assert default == REPO_ROOT / "data" / "smoke" / "sim-10081"
    assert REGISTRY_PATH.parent not in default.parents
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert dataset_dir("10081", "full") == tmp_path / "full" / "sim-10081"
    assert dataset_dir("sim-10081", "smoke", data_root=tmp_path / "x") == tmp_path / "x" / "smoke" / "sim-10081"
