"""Tests for cryolib.io.micrographs: round trips and every bad input (each error names the file)."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest

from cryolib.io import coordinates

from cryolib.io import micrographs as io
from cryolib.core.errors import CryolibError


def _raises_naming(path: Path, func, *args, match: str | None = None, **kwargs) -> str:
    """Call ``func`` and check it raises CryolibError whose message names ``path``."""
    with pytest.raises(CryolibError, match=match) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert str(path) in message or Path(path).name in message, message
    return message


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(24, 32)).astype(np.float32)


@pytest.fixture
def particles() -> pd.DataFrame:
    return pd.DataFrame({"x": [10.25, 40.5, 3.0], "y": [5.75, 20.0, 29.5],
                         "diameter": [8.0, 8.0, 6.0], "score": [0.9, 0.25, -1.5]})


# --------------------------------------------------------------------------- images
def test_mrc_round_trip(tmp_path, image):
    path = io.write_mrc(tmp_path / "sub" / "mic.mrc", image.astype(np.float64), pixel_size_A=1.34)
    data, pixel_size_A = io.read_micrograph(path)
    assert data.dtype == np.float32 and data.shape == (24, 32)
    np.testing.assert_array_equal(data, image)
    assert pixel_size_A == pytest.approx(1.34, rel=1e-6)
    assert not list(path.parent.glob(".*tmp*"))


def test_mrc_counts_dtype_kept_and_unknown_pixel_size(tmp_path):
    counts = np.arange(12, dtype=np.uint16).reshape(3, 4)
    path = io.write_mrc(tmp_path / "c.mrc", counts, pixel_size_A=0.0)
    with mrcfile.open(path) as mrc:
        assert mrc.data.dtype == np.uint16
    data, pixel_size_A = io.read_mrc(path)
    assert data.dtype == np.float32 and pixel_size_A == 0.0
    np.testing.assert_array_equal(data, counts)


def test_single_frame_stack_is_squeezed(tmp_path, image):
    path = io.write_mrc(tmp_path / "one.mrcs", image[None], 1.0)
    assert io.read_micrograph(path)[0].shape == image.shape


@pytest.mark.parametrize("suffix", [".tif", ".mrcs"])
def test_movie_round_trip(tmp_path, suffix):
    frames = np.random.default_rng(1).poisson(2.0, size=(5, 16, 12)).astype(np.uint8)
    path = io.write_movie(tmp_path / f"movie{suffix}", frames, pixel_size_A=0.85)
    data, pixel_size_A = io.read_movie(path)
    assert data.shape == (5, 16, 12) and data.dtype == np.float32
    np.testing.assert_array_equal(data, frames)
    assert pixel_size_A == pytest.approx(0.85, rel=1e-6)


def test_tiff_movie_is_compressed_and_keeps_dtype(tmp_path):
    import tifffile

    frames = np.zeros((4, 64, 64), np.uint16)
    path = io.write_movie(tmp_path / "m.tiff", frames, 1.0)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert tif.pages[0].dtype == np.uint16
    assert path.stat().st_size < frames.nbytes / 4


def test_tiff_micrograph_without_metadata_has_unknown_pixel_size(tmp_path, image):
    import tifffile

    tifffile.imwrite(tmp_path / "plain.tif", image)
    data, pixel_size_A = io.read_micrograph(tmp_path / "plain.tif")
    np.testing.assert_array_equal(data, image)
    assert pixel_size_A == 0.0


def test_missing_image(tmp_path):
    for func in (io.read_mrc, io.read_micrograph, io.read_movie):
        _raises_naming(tmp_path / "nope.mrc", func, tmp_path / "nope.mrc", match="does not exist")


def test_truncated_mrc(tmp_path, image):
    path = io.write_mrc(tmp_path / "cut.mrc", image, 1.0)
    path.write_bytes(path.read_bytes()[:-100])
    _raises_naming(path, io.read_micrograph, path, match="truncated or corrupt")


def test_corrupt_mrc_header(tmp_path):
    path = tmp_path / "garbage.mrc"
    path.write_bytes(b"not an mrc file " * 200)
    _raises_naming(path, io.read_mrc, path, match="not a readable MRC")
    (tmp_path / "tiny.mrc").write_bytes(b"xx")
    _raises_naming(tmp_path / "tiny.mrc", io.read_mrc, tmp_path / "tiny.mrc")


def test_corrupt_tiff(tmp_path):
    path = tmp_path / "garbage.tif"
    path.write_bytes(b"garbage" * 100)
    _raises_naming(path, io.read_movie, path, match="not a readable TIFF")


def test_wrong_ndim(tmp_path, image):
    stack = io.write_mrc(tmp_path / "stack.mrcs", np.zeros((40, 8, 8), np.float32), 1.0)
    _raises_naming(stack, io.read_micrograph, stack, match="3-D stack of 40 frames.*read_movie")
    single = io.write_mrc(tmp_path / "single.mrc", image, 1.0)
    _raises_naming(single, io.read_movie, single, match="read_micrograph")


@pytest.mark.filterwarnings("ignore:Data array contains NaN:RuntimeWarning")
def test_nan_inf_pixels(tmp_path, image):
    image[0, :10] = np.nan
    image[1, :2] = np.inf
    path = io.write_mrc(tmp_path / "nan.mrc", image, 1.0)
    _raises_naming(path, io.read_micrograph, path, match="contains 12 NaN/Inf pixels")
    movie = io.write_movie(tmp_path / "nan.tif", np.stack([image, image]), 1.0)
    _raises_naming(movie, io.read_movie, movie, match="24 NaN/Inf")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_empty_image(tmp_path):
    path = tmp_path / "empty.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((0, 5), np.float32))
    _raises_naming(path, io.read_micrograph, path, match="empty")


def test_unknown_image_extension_and_bad_write(tmp_path, image):
    path = tmp_path / "mic.png"
    path.write_bytes(b"x")
    _raises_naming(path, io.read_micrograph, path, match="unsupported extension")
    _raises_naming(tmp_path / "m.png", io.write_movie, tmp_path / "m.png", image[None], 1.0)
    _raises_naming(tmp_path / "m.tif", io.write_movie, tmp_path / "m.tif", image, 1.0, match="3-D")
    _raises_naming(tmp_path / "e.mrc", io.write_mrc, tmp_path / "e.mrc", np.zeros((0, 3)), 1.0)
    _raises_naming(tmp_path / "p.mrc", io.write_mrc, tmp_path / "p.mrc", image, -1.0)
    _raises_naming(tmp_path / "w.tif", io.write_mrc, tmp_path / "w.tif", image, 1.0, match="extension")
    assert list(tmp_path.iterdir()) == [path]


# --------------------------------------------------------------------------- coordinates
@pytest.mark.parametrize("suffix", [".csv", ".star"])
def test_coordinates_round_trip_exact(tmp_path, particles, suffix):
    path = io.write_coordinates(tmp_path / f"mic{suffix}", particles)
    back = io.read_coordinates(path, image_shape=(32, 48))
    assert list(back.columns) == list(io.COORDINATE_COLUMNS)
    pd.testing.assert_frame_equal(back, particles, atol=1e-6, check_dtype=False)


def test_box_round_trip_within_half_pixel(tmp_path, particles):
    path = io.write_coordinates(tmp_path / "mic.box", particles)
    first = path.read_text().splitlines()[0].split()
    assert first == ["6", "2", "8", "8", "0.9"]
    back = io.read_coordinates(path)
    np.testing.assert_allclose(back[["x", "y"]], particles[["x", "y"]], atol=0.5)
    np.testing.assert_allclose(back["diameter"], particles["diameter"])
    np.testing.assert_allclose(back["score"], particles["score"], rtol=1e-5)


def test_fmt_overrides_extension_and_default_diameter(tmp_path, particles):
    xy = particles[["x", "y"]]
    path = io.write_coordinates(tmp_path / "coords.dat", xy, fmt="box", default_diameter=10)
    back = io.read_coordinates(path.rename(tmp_path / "coords.box"))
    assert (back["diameter"] == 10).all() and back["score"].isna().all()
    star = io.write_coordinates(tmp_path / "c.star", xy)
    assert io.read_coordinates(star)["diameter"].isna().all()
    assert (io.read_coordinates(star, default_diameter=12.5)["diameter"] == 12.5).all()


def test_cryoppp_csv_and_lowercase_headers(tmp_path):
    cryoppp = tmp_path / "a.csv"
    cryoppp.write_text("X-Coordinate,Y-Coordinate,Diameter\n100,200,180\n300,50,180\n")
    df = io.read_coordinates(cryoppp)
    assert df[["x", "y", "diameter"]].to_numpy().tolist() == [[100, 200, 180], [300, 50, 180]]
    assert df["score"].isna().all()
    lower = tmp_path / "b.csv"
    lower.write_text("x,y,score\n1.5,2.5,0.3\n")
    df = io.read_coordinates(lower, default_diameter=7)
    assert df.iloc[0].tolist() == [1.5, 2.5, 7.0, 0.3]


def test_header_only_files_are_empty_tables(tmp_path, particles):
    csv = tmp_path / "empty.csv"
    csv.write_text("X-Coordinate,Y-Coordinate,Diameter\n")
    for path in (csv, io.write_coordinates(tmp_path / "e.star", particles.iloc[:0]),
                 io.write_coordinates(tmp_path / "e.box", particles.iloc[:0])):
        df = io.read_coordinates(path)
        assert df.empty and list(df.columns) == list(io.COORDINATE_COLUMNS)


def test_relion_star_with_other_blocks(tmp_path):
    path = tmp_path / "relion.star"
    path.write_text("data_optics\n\nloop_\n_rlnOpticsGroup #1\n1\n\n"
                    "data_particles\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
                    "_rlnAutopickFigureOfMerit #3\n_rlnClassNumber #4\n12.0 34.0 1.5 1\n")
    df = io.read_coordinates(path, default_diameter=20)
    assert df.iloc[0].tolist() == [12.0, 34.0, 20.0, 1.5]


def test_topaz_txt(tmp_path):
    path = tmp_path / "topaz.txt"
    path.write_text("image_name\tx_coord\ty_coord\tscore\nmic1\t10\t20\t-0.5\nmic1\t30\t40\t2.0\n")
    df = io.read_coordinates(path)
    assert df[["x", "y", "score"]].to_numpy().tolist() == [[10, 20, -0.5], [30, 40, 2.0]]
    path.write_text("image_name\tx_coord\ty_coord\tscore\nmic1\t10\t20\t-0.5\nmic2\t30\t40\t2.0\n")
    _raises_naming(path, io.read_coordinates, path, match="2 micrographs")


def test_missing_coordinate_file(tmp_path):
    _raises_naming(tmp_path / "gone.csv", io.read_coordinates, tmp_path / "gone.csv", match="does not exist")


@pytest.mark.parametrize("name", ["zero.csv", "zero.star", "zero.txt"])
def test_zero_byte_coordinate_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    _raises_naming(path, io.read_coordinates, path, match="empty")


@pytest.mark.parametrize("name, text", [
    ("blank.csv", "\n\n"),
    ("noheader.csv", "1,2,3\n4,5,6\n"),
    ("garbage.star", "this is not a star file\n"),
    ("binary.csv", "\x00\xff\xfe garbage"),
])
def test_unrecognisable_coordinate_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))
    _raises_naming(path, io.read_coordinates, path)


@pytest.mark.parametrize("name, text, match", [
    ("bad.csv", "X-Coordinate,Y-Coordinate,Diameter\n1,2,3\n4,abc,6\n", "line 3, column 'Y-Coordinate'"),
    ("bad.star", "data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n1 2\nfoo 3\n", "row 2 .*rlnCoordinateX"),
    ("bad.box", "1 2 10 10\n3 x 10 10\n", "line 2, column 2: .x. is not a number"),
    ("cols.box", "1 2 10\n", "line 1 has 3 columns"),
    ("ragged.csv", "x,y\n1,2\n3,4,5,6\n", "not a readable coordinate table"),
])
def test_malformed_rows(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    _raises_naming(path, io.read_coordinates, path, match=match)


def test_nan_coordinates_and_bad_diameter(tmp_path):
    path = tmp_path / "nan.csv"
    path.write_text("x,y\n1,2\n,4\nnan,5\n")
    _raises_naming(path, io.read_coordinates, path, match="2 row")
    neg = tmp_path / "neg.csv"
    neg.write_text("x,y,diameter\n1,2,-5\n")
    _raises_naming(neg, io.read_coordinates, neg, match="non-positive diameter")


def test_coordinates_outside_image(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("x,y\n0,0\n31.9,23.9\n32,5\n5,-1\n")
    assert len(io.read_coordinates(path)) == 4
    _raises_naming(path, io.read_coordinates, path, image_shape=(24, 32), match="2 of 4 coordinates")


def test_unknown_coordinate_extension(tmp_path, particles):
    path = tmp_path / "coords.json"
    path.write_text("{}")
    message = _raises_naming(path, io.read_coordinates, path, match="unknown coordinate format")
    assert ".csv" in message and ".star" in message and ".box" in message
    _raises_naming(path, io.write_coordinates, path, particles, match="csv, star, box")


def test_box_without_diameter_leaves_nothing(tmp_path, particles):
    path = tmp_path / "nodiam.box"
    _raises_naming(path, io.write_coordinates, path, particles[["x", "y"]], match="default_diameter")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [
    pd.DataFrame({"x": [1.0]}),
    pd.DataFrame({"x": [1.0], "y": ["abc"]}),
    pd.DataFrame({"x": [np.nan], "y": [1.0]}),
    [(1.0, 2.0)],
])
def test_failed_write_leaves_no_file(tmp_path, bad):
    path = tmp_path / "out" / "coords.csv"
    _raises_naming(path, io.write_coordinates, path, bad)
    assert not path.exists()
    assert not path.parent.exists() or list(path.parent.iterdir()) == []


def test_failure_during_write_removes_temp_and_keeps_old(tmp_path, particles, monkeypatch):
    path = io.write_coordinates(tmp_path / "keep.star", particles)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(coordinates.starfile, "write", broken)  # write_coordinates lives in cryolib.io.coordinates
    with pytest.raises(OSError):
        io.write_coordinates(path, particles.iloc[:1])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.star"]


# --------------------------------------------------------------------------- listing
def test_list_micrographs(tmp_path, image):
    for name in ("b.mrc", "a.tif", "c.tiff"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "notes.star").write_text("")
    expected = [tmp_path / n for n in ("a.tif", "b.mrc", "c.tiff")]
    assert io.list_micrographs(tmp_path) == expected
    assert io.list_micrographs(str(tmp_path / "*")) == expected
    assert io.list_micrographs(tmp_path / "b.mrc") == [tmp_path / "b.mrc"]
    assert io.list_micrographs([tmp_path / "b.mrc", tmp_path]) == [expected[1], expected[0], expected[2]]


def test_list_micrographs_empty(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _raises_naming(empty, io.list_micrographs, empty, match="no micrographs found in/at")
    _raises_naming(tmp_path, io.list_micrographs, str(tmp_path / "*.mrc"), match="no micrographs found")
    _raises_naming(tmp_path / "missing", io.list_micrographs, tmp_path / "missing", match="no micrographs found")


def test_micrograph_stem():
    assert io.micrograph_stem("/data/10017/mic_0001.mrc") == "mic_0001"
    assert io.micrograph_stem(Path("run.1_DW.tiff")) == "run.1_DW"
