"""Particle coordinate files: CSV (CryoPPP), STAR (RELION), BOX (EMAN), Topaz TXT/TSV (read only).

Conventions as in :mod:`cryolib.io.micrographs`: coordinates are particle centres ``(x, y)`` in pixels from
the top-left corner, as in CryoPPP, and diameters are in pixels. :func:`read_coordinates`
validates its input and raises :class:`~cryolib.core.errors.CryolibError` naming the file;
:func:`write_coordinates` is atomic. :mod:`cryolib.io.micrographs` re-exports the public names.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import starfile

from cryolib.core.files import existing_file as _existing_file
from cryolib.core.atomic import atomic_path
from cryolib.core.errors import CryolibError

__all__ = ["COORDINATE_COLUMNS", "COORDINATE_SUFFIXES", "read_coordinates", "write_coordinates"]

log = logging.getLogger(__name__)

COORDINATE_COLUMNS = ("x", "y", "diameter", "score")
COORDINATE_SUFFIXES = (".csv", ".star", ".box", ".txt", ".tsv")
# Header aliases, compared after lower-casing and dropping everything but letters.
_ALIASES = {
    "x": {"x", "xcoordinate", "xcoord", "rlncoordinatex"},
    "y": {"y", "ycoordinate", "ycoord", "rlncoordinatey"},
    "diameter": {"diameter", "diameterpx", "rlndiameter"},
    "score": {"score", "rlnautopickfigureofmerit"},
}


def _empty_coordinates() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=np.float64) for c in COORDINATE_COLUMNS})


def _standardise(raw: pd.DataFrame, path: Path, where: Callable[[int], str], expected: str) -> pd.DataFrame:
    """Map recognised headers to x/y/diameter/score and parse them as numbers, naming bad cells."""
    keys = {col: re.sub(r"[^a-z]", "", str(col).lower()) for col in raw.columns}
    out = _empty_coordinates().reindex(range(len(raw)))
    found = set()
    for name, aliases in _ALIASES.items():
        source = next((col for col, key in keys.items() if key in aliases), None)
        if source is None:
            continue
        found.add(name)
        values = pd.to_numeric(raw[source], errors="coerce")
        bad = values.isna() & raw[source].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise CryolibError(f"{path}: {where(i)}, column {source!r}: {raw[source].iloc[i]!r} is not a number "
                               f"({int(bad.sum())} malformed value(s)); fix or remove those rows")
        out[name] = values.to_numpy(dtype=np.float64)
    if not {"x", "y"} <= found:
        raise CryolibError(f"{path} has no recognisable coordinate columns (found {list(raw.columns)}); "
                           f"expected {expected}")
    return out


def _read_table(path: Path, sep: str) -> pd.DataFrame:
    """CryoPPP CSV (``X-Coordinate,Y-Coordinate,Diameter[,Score]``), lowercase CSV, or Topaz TSV."""
    try:
        raw = pd.read_csv(path, sep=sep, dtype=str, skipinitialspace=True)
    except pd.errors.EmptyDataError as err:
        raise CryolibError(f"{path} is empty; a coordinate file needs at least a header line") from err
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise CryolibError(f"{path} is not a readable coordinate table ({str(err).strip()})") from err
    expected = ("X-Coordinate,Y-Coordinate[,Diameter][,Score] or x,y[,diameter][,score]" if sep == ","
                else "tab-separated image_name, x_coord, y_coord, score (Topaz)")
    df = _standardise(raw, path, lambda i: f"line {i + 2}", expected)
    names = raw.get("image_name")
    if names is not None and names.nunique() > 1:
        raise CryolibError(f"{path} holds coordinates of {names.nunique()} micrographs; "
                           "split it into one file per micrograph (by image_name) before reading")
    return df


def _read_star(path: Path) -> pd.DataFrame:
    """RELION coordinate STAR: the first block with _rlnCoordinateX/Y."""
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as err:  # starfile raises assorted parser errors; all mean "not a STAR file"
        raise CryolibError(f"{path} is not a readable STAR file ({err})") from err
    blocks = blocks if isinstance(blocks, dict) else {"": blocks}
    for name, block in blocks.items():
        if isinstance(block, pd.DataFrame) and {"rlnCoordinateX", "rlnCoordinateY"} <= set(block.columns):
            return _standardise(block.reset_index(drop=True), path, lambda i: f"row {i + 1} of block data_{name}",
                                "_rlnCoordinateX and _rlnCoordinateY")
    raise CryolibError(f"{path} has no data block with _rlnCoordinateX and _rlnCoordinateY; "
                       "is it a RELION coordinate file?")


def _box_number(text: str, path: Path, lineno: int, col: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise CryolibError(f"{path}: line {lineno}, column {col}: {text!r} is not a number; "
                           "fix or remove that row") from None


def _read_box(path: Path) -> pd.DataFrame:
    """EMAN box: ``x_corner y_corner width height [score]`` per line; centre = corner + size/2.

    A 0-byte .box file is a valid empty file (the format has no header).
    """
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as err:
        raise CryolibError(f"{path} is not a text BOX file ({err})") from err
    rows = []
    for lineno, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) not in (4, 5):
            raise CryolibError(f"{path}: line {lineno} has {len(fields)} columns; expected 4 "
                               "(x_corner y_corner width height) or 5 (+ score)")
        values = [_box_number(v, path, lineno, col) for col, v in enumerate(fields, start=1)]
        x0, y0, width, height = values[:4]
        score = values[4] if len(values) == 5 else np.nan
        rows.append((x0 + width / 2, y0 + height / 2, width, score))
    if not rows:
        return _empty_coordinates()
    return pd.DataFrame(rows, columns=list(COORDINATE_COLUMNS), dtype=np.float64)


def _validate_coordinates(df: pd.DataFrame, path: Path, image_shape: tuple[int, int] | None,
                          default_diameter: float | None) -> pd.DataFrame:
    """Reject NaN and out-of-image coordinates and bad diameters; fill unknown diameters."""
    missing = ~np.isfinite(df[["x", "y"]].to_numpy()).all(axis=1)
    if missing.any():
        first = int(np.flatnonzero(missing)[0]) + 1
        raise CryolibError(f"{path} has {int(missing.sum())} row(s) with missing or non-finite x/y (first at "
                           f"data row {first}, not counting headers); fix or remove those rows")
    if default_diameter is not None:
        df["diameter"] = df["diameter"].fillna(float(default_diameter))
    if (df["diameter"] <= 0).any():
        raise CryolibError(f"{path} has {int((df['diameter'] <= 0).sum())} non-positive diameter(s); "
                           "diameters are in pixels and must be > 0")
    if image_shape is not None:
        height, width = image_shape
        outside = ~(df["x"].between(0, width, inclusive="left") & df["y"].between(0, height, inclusive="left"))
        if outside.any():
            first = df[outside].iloc[0]
            raise CryolibError(
                f"{path}: {int(outside.sum())} of {len(df)} coordinates lie outside the {width}x{height} (W x H) image "
                f"(first at x={first['x']:g}, y={first['y']:g}); check they belong to this micrograph and are in "
                "its pixels (not Å or a binned image)")
    return df


_COORDINATE_READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".csv": lambda p: _read_table(p, ","),
    ".txt": lambda p: _read_table(p, "\t"),
    ".tsv": lambda p: _read_table(p, "\t"),
    ".star": _read_star,
    ".box": _read_box,
}


def read_coordinates(path: str | os.PathLike, image_shape: tuple[int, int] | None = None,
                     default_diameter: float | None = None) -> pd.DataFrame:
    """Read particle coordinates as a DataFrame with float columns ``x, y, diameter, score``.

    x, y are centres in px from the top-left corner; diameter (px) and score are NaN
    when unknown (diameter falls back to ``default_diameter``). Formats by extension:
    .csv (CryoPPP), .star (RELION), .box (EMAN), .txt/.tsv (Topaz, read only).
    With ``image_shape=(H, W)``, coordinates must lie in [0, W) x [0, H).
    """
    path = Path(path)
    reader = _COORDINATE_READERS.get(path.suffix.lower())
    if reader is None:
        raise CryolibError(f"{path}: unknown coordinate format {path.suffix!r}; "
                           f"supported: {', '.join(COORDINATE_SUFFIXES)}")
    path = _existing_file(path)
    if path.stat().st_size == 0 and path.suffix.lower() != ".box":
        raise CryolibError(f"{path} is empty (0 bytes); a coordinate file needs at least a header")
    df = _validate_coordinates(reader(path), path, image_shape, default_diameter)
    log.debug("read %d coordinates from %s", len(df), path)
    return df.reset_index(drop=True)


def _coordinates_for_write(df: pd.DataFrame, path: Path, default_diameter: float | None) -> pd.DataFrame:
    """Validate a coordinate table for writing; returns float columns x, y, diameter, score."""
    if not isinstance(df, pd.DataFrame) or not {"x", "y"} <= set(df.columns):
        cols = list(df.columns) if isinstance(df, pd.DataFrame) else type(df).__name__
        raise CryolibError(f"cannot write {path}: coordinates need a DataFrame with columns x and y (got {cols})")
    out = _empty_coordinates().reindex(range(len(df)))
    for name in COORDINATE_COLUMNS:
        if name in df.columns:
            try:
                out[name] = pd.to_numeric(df[name]).to_numpy(dtype=np.float64)
            except (ValueError, TypeError) as err:
                raise CryolibError(f"cannot write {path}: column {name!r} is not numeric ({err})") from err
    return _validate_coordinates(out, path, None, default_diameter)


def _write_csv(tmp: Path, df: pd.DataFrame) -> None:
    table = pd.DataFrame({"X-Coordinate": df["x"], "Y-Coordinate": df["y"], "Diameter": df["diameter"]})
    if df["score"].notna().any():
        table["Score"] = df["score"]
    table.to_csv(tmp, index=False)


def _write_star(tmp: Path, df: pd.DataFrame) -> None:
    table = pd.DataFrame({"rlnCoordinateX": df["x"], "rlnCoordinateY": df["y"]})
    if df["score"].notna().any():
        table["rlnAutopickFigureOfMerit"] = df["score"]
    if df["diameter"].notna().any():
        table["rlnDiameter"] = df["diameter"]  # not a RELION label; RELION keeps unknown labels
    starfile.write(table, tmp, na_rep="nan", overwrite=True)


def _write_box(tmp: Path, df: pd.DataFrame) -> None:
    """Integer corners and sizes (EMAN convention); the centre round-trips to within 0.5 px."""
    size = np.rint(df["diameter"].to_numpy()).astype(int)
    x0 = np.rint(df["x"].to_numpy() - size / 2).astype(int)
    y0 = np.rint(df["y"].to_numpy() - size / 2).astype(int)
    with_score = df["score"].notna().any()
    lines = [f"{a}\t{b}\t{s}\t{s}" + (f"\t{score:.6g}" if with_score else "")
             for a, b, s, score in zip(x0, y0, size, df["score"])]
    tmp.write_text("".join(line + "\n" for line in lines))


_COORDINATE_WRITERS: dict[str, Callable[[Path, pd.DataFrame], None]] = {
    "csv": _write_csv, "star": _write_star, "box": _write_box,
}


def write_coordinates(path: str | os.PathLike, df: pd.DataFrame, fmt: str | None = None,
                      default_diameter: float | None = None) -> Path:
    """Atomically write coordinates (columns x, y[, diameter][, score]; px) as csv, star or box.

    ``fmt`` defaults to the extension. CSV and STAR keep full float precision
    (STAR to 1e-6 px); BOX writes integer corners and sizes, so centres come back
    within 0.5 px, and needs a diameter from ``df`` or ``default_diameter``.
    """
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    writer = _COORDINATE_WRITERS.get(fmt)
    if writer is None:
        raise CryolibError(f"cannot write {path}: unknown coordinate format {fmt!r}; use one of csv, star, box")
    table = _coordinates_for_write(df, path, default_diameter)
    if fmt == "box" and table["diameter"].isna().any():
        raise CryolibError(f"cannot write {path}: BOX files need a box size, but {int(table['diameter'].isna().sum())} "
                           "particle(s) have no diameter; add a diameter column or pass default_diameter (px)")
    with atomic_path(path) as tmp:
        writer(tmp, table)
    log.debug("wrote %d coordinates to %s", len(table), path)
    return path
