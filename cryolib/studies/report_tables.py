"""DataFrame work of the reproduction report: read result tables, put the paper's numbers beside ours,
normalise the claims tables of notebooks 03-08, and the cross-paper comparison.

Pure functions of DataFrames (plus one reader); :mod:`cryolib.studies.report` turns them into Markdown.
Every number they return is read from a results file, never typed here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from cryolib.studies.report_artifacts import Comparison, Summary

#: Claims-table columns, in the order tried: the paper's side, ours, and whether the claim holds.
PAPER_COLUMNS = ("paper_statement", "paper")
PAPER_NUMBER_COLUMNS = ("paper_numbers",)
OURS_COLUMNS = ("our_numbers", "ours")
HOLDS_COLUMNS = ("holds", "supported")
_TRUE, _FALSE = {"true", "yes", "1"}, {"false", "no", "0"}
MAX_AUTO_COLUMNS = 6
TIE_DECIMALS = 3  # a difference that rounds to zero at the report's precision (.3f) is a tie


def result_path(results: Path, stem: str, folder: str, suffix: str) -> Path:
    """``results/<folder>/<stem><suffix>``, or ``results/<stem><suffix>`` when ``stem`` names its folder."""
    rel = stem if "/" in stem else f"{folder}/{stem}"
    return results / f"{rel}{suffix}"


def read_table(path: Path) -> pd.DataFrame | None:
    """A results CSV, or None when it is absent or empty."""
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None


def _numeric(df: pd.DataFrame, col: str) -> bool:
    return pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col])


def summary_columns(df: pd.DataFrame, spec: Summary) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """(keys, (ours, paper) pairs, extra columns) of ``spec`` that ``df`` has.

    Without explicit pairs every ``paper_X`` with an ``X`` is a pair; with neither pairs nor extra
    columns, up to six numeric columns are shown; without keys, the text columns are the keys.
    """
    keys = [k for k in spec.keys if k in df.columns]
    if not keys:
        keys = [c for c in df.columns if not _numeric(df, c) and not c.startswith("paper_")][:2]
    if spec.pairs:
        pairs = [(o, p) for o, p in spec.pairs if o in df.columns and p in df.columns]
    else:
        pairs = [(c.removeprefix("paper_"), c) for c in df.columns
                 if c.startswith("paper_") and c.removeprefix("paper_") in df.columns]
    paired = {c for pair in pairs for c in pair}
    extra = [c for c in spec.extra if c in df.columns and c not in paired]
    if not spec.extra and not pairs:
        extra = [c for c in df.columns if c not in keys and c not in paired and _numeric(df, c)][:MAX_AUTO_COLUMNS]
    return keys, pairs, extra


def _filtered(df: pd.DataFrame, spec: Summary) -> pd.DataFrame:
    for col, value in spec.where:
        if col in df.columns:
            df = df[df[col] == value]
    return df


def _reported_rows(df: pd.DataFrame) -> pd.Series:
    """Rows that carry the paper's numbers for a method that did not run here (``source`` says reported)."""
    if "source" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["source"].astype(str).str.contains("reported", case=False)


def summary_table(df: pd.DataFrame, spec: Summary) -> pd.DataFrame:
    """Keys, then per pair the paper's value, ours and ours − paper, then our extra columns.

    Rows of methods that did not run here (``source`` reported) keep the paper's value and leave ours
    empty; ``spec.aggregate`` averages the rows per key.
    """
    df = _filtered(df, spec)
    keys, pairs, extra = summary_columns(df, spec)
    values = [c for pair in pairs for c in pair] + extra
    if spec.aggregate and keys:
        numeric = [c for c in values if _numeric(df, c)]
        df = df.groupby(keys, sort=False)[numeric].mean().reset_index()
        values = [c for c in values if c in numeric]
    reported = _reported_rows(df)
    out = df[keys].copy().astype(object)
    if reported.any() and keys:
        labels = out.loc[reported, keys[-1]].astype(str)
        out.loc[reported, keys[-1]] = labels.where(labels.str.contains("reported"), labels + " (reported, not run)")
    for ours, paper in pairs:
        mine = pd.to_numeric(df[ours], errors="coerce").where(~reported)
        theirs = pd.to_numeric(df[paper], errors="coerce")
        out[f"paper {ours}"], out[f"ours {ours}"] = theirs, mine
        if spec.difference:
            out[f"Δ {ours}"] = mine - theirs
    for col in extra:
        out[col] = df[col].where(~reported) if _numeric(df, col) else df[col]
    return out.reset_index(drop=True)


def _holds(value) -> bool | None:
    """True / False, or None for "not testable" (and anything else that is neither)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _first(df: pd.DataFrame, names: tuple[str, ...]) -> pd.Series | None:
    return next((df[n] for n in names if n in df.columns), None)


def _text(series: pd.Series | None, n: int) -> pd.Series:
    if series is None:
        return pd.Series([""] * n)
    return series.fillna("").astype(str).reset_index(drop=True)


def is_claims_table(df: pd.DataFrame) -> bool:
    """True when ``df`` has a claim column and a holds/supported column."""
    return "claim" in df.columns and _first(df, HOLDS_COLUMNS) is not None


def normalise_claims(df: pd.DataFrame) -> pd.DataFrame:
    """A claims table of any notebook as columns claim, paper, ours, holds (True, False or None).

    ``paper`` is the paper's statement, with its numbers after a colon when the table has them.
    """
    n = len(df)
    statement, numbers = _text(_first(df, PAPER_COLUMNS), n), _text(_first(df, PAPER_NUMBER_COLUMNS), n)
    paper = [s if not num or num.lower() == "n/a" else f"{s}: {num}" if s else num
             for s, num in zip(statement, numbers)]
    holds = [_holds(v) for v in _first(df, HOLDS_COLUMNS)]
    return pd.DataFrame({"claim": _text(df["claim"], n), "paper": paper, "ours": _text(_first(df, OURS_COLUMNS), n),
                         "holds": holds})


def claims_counts(claims: pd.DataFrame) -> dict[str, int]:
    """Tested (holds is True or False), holding, not holding and not testable claims."""
    holds = claims["holds"]
    tested = holds.map(lambda v: v is not None)
    return {"tested": int(tested.sum()), "holding": int((holds == True).sum()),  # noqa: E712 (object column)
            "not_holding": int((holds == False).sum()), "not_testable": int((~tested).sum())}  # noqa: E712


def comparison_table(df: pd.DataFrame, comparison: Comparison) -> pd.DataFrame | None:
    """MAE row against DRACO row per dataset (and their mean): each value, DRACO − MAE and the better one.

    None when the table lacks either method or every value column.
    """
    values = [v for v in comparison.values if v in df.columns]
    if "method" not in df.columns or not values:
        return None
    sub = df[df["method"].isin([comparison.mae, comparison.draco])]
    if set(sub["method"]) != {comparison.mae, comparison.draco}:
        return None
    if "dataset" not in sub.columns:
        sub = sub.assign(dataset="all")
    wide = sub.pivot_table(index="dataset", columns="method", values=values, aggfunc="mean", sort=False)
    if len(wide) > 1:
        wide.loc["mean"] = wide.mean()
    out = pd.DataFrame({"dataset": wide.index})
    for v in values:
        mae, draco = wide[(v, comparison.mae)].to_numpy(float), wide[(v, comparison.draco)].to_numpy(float)
        out[f"{v} MAE"], out[f"{v} DRACO"], out[f"Δ {v}"] = mae, draco, draco - mae
    first = values[0]
    delta = out[f"Δ {first}"] * (1 if comparison.higher_is_better else -1)
    out[f"better ({first})"] = ["—" if not math.isfinite(d) else "tie" if round(d, TIE_DECIMALS) == 0 else
                                "DRACO" if d > 0 else "MAE" for d in delta.astype(float)]
    return out
