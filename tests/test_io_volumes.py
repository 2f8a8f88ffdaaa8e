"""cryolib.io.volumes: MRC maps keep their voxel size (what ChimeraX reads), and bad inputs fail clearly."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest

from cryolib.core.errors import CryolibError
from cryolib.io.volumes import read_map, write_map


def test_map_round_trip_keeps_voxel_size_and_axis_order(tmp_path):
    vol = np.zeros((6, 8, 10), np.float64)
    vol[1, 2, 3] = 5.0  # [z, y, x]
    path = write_map(tmp_path / "maps" / "half1.mrc", vol, pixel_size_A=4.235)
    data, voxel = read_map(path)
    assert data.dtype == np.float32 and data.shape == (6, 8, 10) and data[1, 2, 3] == 5.0
    assert voxel == pytest.approx(4.235, abs=1e-3)
    with mrcfile.open(path) as mrc:
        assert mrc.is_volume() and int(mrc.header.nx) == 10 and int(mrc.header.nz) == 6
        assert float(mrc.header.dmax) == 5.0
    assert not list(path.parent.glob(".*tmp*"))  # atomic: no temporary left behind


@pytest.mark.parametrize("volume, px, name, match", [
    (np.zeros((4, 4)), 1.0, "a.mrc", "non-empty"),
    (np.zeros((0, 4, 4)), 1.0, "a.mrc", "non-empty"),
    (np.full((4, 4, 4), np.nan), 1.0, "a.mrc", "NaN"),
    (np.zeros((4, 4, 4)), 0.0, "a.mrc", "voxel size"),
    (np.zeros((4, 4, 4)), 1.0, "a.png", "extensions"),
])
def test_bad_maps_raise(tmp_path, volume, px, name, match):
    with pytest.raises(CryolibError, match=match):
        write_map(tmp_path / name, volume, px)
    assert not (tmp_path / name).exists()


def test_bad_paths_raise(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(CryolibError, match="is a file, not a folder"):
        write_map(blocker / "sub" / "map.mrc", np.zeros((4, 4, 4)), 1.0)
    with pytest.raises(CryolibError, match="does not exist"):
        read_map(tmp_path / "absent.mrc")
    (tmp_path / "junk.mrc").write_bytes(b"junk")
    with pytest.raises(CryolibError, match="not a readable MRC map"):
        read_map(tmp_path / "junk.mrc")
