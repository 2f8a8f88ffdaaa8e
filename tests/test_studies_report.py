"""The reproduction report (cryolib.studies.report): built from a small fake results folder written here.

Links resolve, numbers follow the CSVs, missing artifacts are reported as missing, claims are counted
right, the write is atomic; and the registry agrees with the notebooks that write the files.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cryolib.core.results import save_table
from cryolib.studies import report as rp
from cryolib.studies import report_artifacts as ra
from cryolib.studies import report_tables as rt
from cryolib.studies.draco_picking import EMMAE_DRACO, EMMAE_MAE

ROOT = Path(__file__).resolve().parent.parent
PROFILE = "fake"
LINK = re.compile(r"\]\(([^)]+)\)")


def _table2(draco_b_eq11: float = 1.234) -> pd.DataFrame:
    return pd.DataFrame({"dataset": ["sim-a", "sim-a", "sim-b", "sim-b"], "method": ["MAE", "DRACO-B"] * 2,
                         "snr_eq11_db": [-3.111, draco_b_eq11, -4.222, 2.468],
                         "paper_snr_eq11_db": [-1.5, 1.0, -2.5, 3.0],
                         "true_snr_db": [-7.001, -5.002, -8.003, -6.004], "band_snr_db": [-9.1, -8.2, -9.3, -8.4]})


def _claims() -> dict[str, pd.DataFrame]:
    """Three schemas, as notebooks 03-08 write them."""
    return {
        "fig2_claims": pd.DataFrame({"claim": ["c1", "c2"], "paper_statement": ["s1", "s2"],
                                     "our_numbers": ["o1", "o2"], "supported": ["yes", "no"]}),
        "table2_claims": pd.DataFrame({"claim": ["d1", "d2", "d3", "d4"], "paper_statement": ["p"] * 4,
                                       "paper_numbers": ["4/4 sets", "n/a", "3/4 sets", "n/a"],
                                       "our_numbers": ["x"] * 4, "supported": ["yes", "yes", "no", "not testable"]}),
        "draco_pretraining_claims": pd.DataFrame({"claim": ["e1", "e2"], "paper": ["1.33x", "minimised"],
                                                  "ours": ["1.45x", "0.5 -> 0.6"], "holds": [True, False]}),
        "ablation_claims": pd.DataFrame({"claim": ["f1"], "paper_statement": ["s"], "paper_numbers": ["n/a"],
                                         "our_numbers": ["o"], "supported": ["yes"]}),
    }


def write_fake_results(root: Path, draco_b_eq11: float = 1.234) -> Path:
    """A results folder with Table 2, four claims tables, one figure, one executed notebook and run.yaml."""
    save_table(_table2(draco_b_eq11), "table2_snr", PROFILE, root)
    save_table(pd.DataFrame({"method": ["DRACO-B", "Miffi (reported)"], "source": ["run here", "reported (not run)"],
                             "f1": [0.5, float("nan")], "paper_f1": [0.964, 0.871]}), "table4_curation", PROFILE, root)
    for name, df in _claims().items():
        save_table(df, name, PROFILE, root)
    out = root / PROFILE
    (out / "figures" / "fig4_denoising.png").write_bytes(b"\x89PNG fake")
    (out / "notebooks" / "05_denoising.ipynb").write_text("{}")
    runs = {"05_denoising": {"started": "2026-01-01T00:00:00", "wall_time_s": 90.0, "git_commit": "abc123-dirty",
                             "machine": {"platform": "Linux-test", "cpus": 2}}}
    (out / "run.yaml").write_text(yaml.safe_dump(runs))
    return out


@pytest.fixture
def fake(tmp_path) -> Path:
    write_fake_results(tmp_path)
    return tmp_path


def _build(root: Path) -> str:
    return rp.build_report(PROFILE, root).read_text()


def _links(text: str) -> list[str]:
    return [t for t in LINK.findall(text) if not t.startswith(("#", "http"))]


def test_every_link_resolves_and_code_links_point_at_the_def(fake):
    text = _build(fake)
    base = fake / PROFILE
    links = _links(text)
    assert links, "the report has no links"
    for target in links:
        path, _, line = target.partition("#L")
        assert (base / path).exists(), target
        if line:
            source = (base / path).read_text().splitlines()[int(line) - 1]
            assert source.lstrip().startswith("def "), (target, source)
    # a row of the Table 2 summary links to its table, its executed notebook and its function
    row = next(ln for ln in text.splitlines() if ln.startswith("| sim-a") and "DRACO-B" in ln)
    assert "tables/table2_snr.md" in row and "notebooks/05_denoising.ipynb" in row
    assert "cryolib/studies/draco_denoising.py#L" in row
    assert "![Figure 4 (fig4_denoising)](figures/fig4_denoising.png)" in text


def test_numbers_follow_the_csvs(tmp_path):
    write_fake_results(tmp_path, draco_b_eq11=1.234)
    before = _build(tmp_path)
    assert "1.234" in before and "0.234" in before  # ours, and ours − paper (1.0)
    write_fake_results(tmp_path, draco_b_eq11=7.654)
    after = _build(tmp_path)
    assert "7.654" in after and "6.654" in after and "1.234" not in after


def _numeric_cells(text: str, section: str) -> list[str]:
    """The numeric cells of the tables between the heading ``section`` and the next heading of its level."""
    start = text.index(section)
    level = section.split(" ")[0] + " "
    end = text.find("\n" + level, start + len(section))
    cells = [c.strip() for ln in text[start:end if end > 0 else None].splitlines() if ln.startswith("| ")
             for c in ln.strip("|").split("|")]
    return [c for c in cells if re.fullmatch(r"-?\d+\.\d+", c)]


def test_every_number_in_the_tables_changes_with_the_csvs(tmp_path):
    """Change every number of Table 2 (x -> 2x + 1): every number in its summary and in the comparison moves."""
    write_fake_results(tmp_path)
    before = _build(tmp_path)
    t2 = _table2()
    num = t2.select_dtypes("number").columns
    t2[num] = t2[num] * 2 + 1
    save_table(t2, "table2_snr", PROFILE, tmp_path)
    after = _build(tmp_path)
    for section in ("### Table 2:", "### Denoising (Table 2)"):
        old, new = _numeric_cells(before, section), _numeric_cells(after, section)
        assert len(old) == len(new) > 10, section
        assert all(a != b for a, b in zip(old, new)), (section, old, new)


def test_missing_artifacts_are_listed_never_skipped(fake):
    text = _build(fake)
    for a in ra.ARTIFACTS:  # every registered artifact has its section
        assert f"### {a.name}: {a.title}" in text, a.key
    assert "*Not produced in this run (run notebook 07):* `table1_picking`, `table1_picking_bars`, " \
           "`picking_claims`." in text
    assert "not produced (run notebook 03)" in text and "`realdata/realdata_denoising`" in text
    assert "*Not produced in this run (run `benchmarks/realdata.py`):*" in text
    report = rp.collect_report(PROFILE, fake)
    metrics = rp.report_metrics(report)
    assert metrics["n_artifacts"] == len(ra.ARTIFACTS)
    present = {e.artifact.key for e in report.entries if e.present}
    assert "draco_fig4" in present and "draco_table2" not in present  # Table 2's per-micrograph table is missing
    assert "table2_snr_per_micrograph" in metrics["missing"] and metrics["n_present"] == len(present)


def test_claims_are_counted_per_paper_once(fake):
    report = rp.collect_report(PROFILE, fake)
    counts = rp.claims_summary(report).set_index("paper")
    assert counts.loc["Cryo-EMMAE"].to_dict() == {"tested": 2, "holding": 1, "not_holding": 1, "not_testable": 0}
    # table2 (2 yes, 1 no, 1 not testable) + pretraining (1 True, 1 False) + ablation (1 yes, shared by Tables 5 and 6)
    assert counts.loc["DRACO"].to_dict() == {"tested": 6, "holding": 4, "not_holding": 2, "not_testable": 1}
    metrics = rp.report_metrics(report)
    assert metrics["claims_tested"] == 8 and metrics["claims_holding"] == 5
    text = rp.render(report)
    assert "Claims: listed under [Table 5](#draco-table5) (`ablation_claims`)." in text
    assert "p: 4/4 sets" in text  # the paper's statement with its numbers; "n/a" numbers are left out
    assert "Not testable here: x." in text


def test_the_report_is_written_atomically(fake, monkeypatch):
    path = rp.build_report(PROFILE, fake)
    old = path.read_text()
    save_table(_table2(9.876), "table2_snr", PROFILE, fake)

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        rp.build_report(PROFILE, fake)
    assert path.read_text() == old
    assert sorted(p.name for p in path.parent.glob(".REPORT*")) == []  # no temporary file left behind


def test_summary_table_pairs_reported_rows_and_aggregation():
    df = pd.DataFrame({"method": ["A", "A", "crYOLO"], "dataset": ["x", "y", "x"],
                       "source": ["ours", "ours", "reported (paper)"], "f1": [0.5, 0.7, 0.9],
                       "paper_f1": [0.6, 0.8, 0.9], "recall": [0.1, 0.2, 0.3]})
    out = rt.summary_table(df, ra.Summary(keys=("dataset", "method"), extra=("recall",)))
    assert list(out.columns) == ["dataset", "method", "paper f1", "ours f1", "Δ f1", "recall"]
    assert out["Δ f1"].iloc[0] == pytest.approx(-0.1)
    assert out["method"].iloc[2] == "crYOLO (reported, not run)" and pd.isna(out["ours f1"].iloc[2])
    assert pd.isna(out["recall"].iloc[2]) and out["paper f1"].iloc[2] == 0.9
    agg = rt.summary_table(df[df["source"] == "ours"], ra.Summary(keys=("method",), aggregate=True,
                                                                   pairs=(("f1", "paper_f1"),), difference=False))
    assert list(agg.columns) == ["method", "paper f1", "ours f1"] and agg["ours f1"].iloc[0] == pytest.approx(0.6)


def test_claims_of_every_schema_normalise():
    claims = _claims()
    assert rt.normalise_claims(claims["table2_claims"])["holds"].tolist() == [True, True, False, None]
    assert rt.normalise_claims(claims["draco_pretraining_claims"])["paper"].tolist() == ["1.33x", "minimised"]
    back = pd.read_csv(pd.io.common.StringIO(claims["draco_pretraining_claims"].to_csv(index=False)))
    assert rt.normalise_claims(back)["holds"].tolist() == [True, False]  # bools read back from a CSV
    assert not rt.is_claims_table(_table2())


def test_comparison_table_says_which_features_win():
    comp = ra.Comparison("t", "draco_table1", EMMAE_MAE, EMMAE_DRACO, ("f1",))
    df = pd.DataFrame({"dataset": ["a", "b"] * 2, "method": [EMMAE_MAE] * 2 + [EMMAE_DRACO] * 2,
                       "f1": [0.5, 0.4, 0.6, 0.3]})
    out = rt.comparison_table(df, comp)
    assert out["dataset"].tolist() == ["a", "b", "mean"]
    assert out["Δ f1"].tolist() == pytest.approx([0.1, -0.1, 0.0])
    assert out["better (f1)"].tolist() == ["DRACO", "MAE", "tie"]
    lower = ra.Comparison("t", "draco_table3", "MAE", "DRACO-B", ("resolution_A",), higher_is_better=False)
    res = pd.DataFrame({"dataset": ["a", "a"], "method": ["MAE", "DRACO-B"], "resolution_A": [9.0, 8.0]})
    assert rt.comparison_table(res, lower)["better (resolution_A)"].tolist() == ["DRACO"]  # smaller Å is better
    assert rt.comparison_table(df[df["method"] == EMMAE_MAE], comp) is None


# ---------------------------------------------------------------- the registry against the notebooks


def _writer_text(source: str) -> str:
    path = ROOT / source if ra.is_script(source) else ROOT / "notebooks" / f"{source}.ipynb"
    if path.suffix == ".ipynb":
        return "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
    return path.read_text()


def _landed(a: ra.Artifact) -> bool:
    """An artifact of issue 15 is checked once its library function and its notebook exist."""
    writer = ROOT / a.source if ra.is_script(a.source) else ROOT / "notebooks" / f"{a.source}.ipynb"
    return not a.new or (ra.resolve(a.function) is not None and writer.is_file())


def test_every_registered_function_resolves_to_its_source_line():
    keys = [a.key for a in ra.ARTIFACTS]
    assert len(keys) == len(set(keys))
    for a in filter(_landed, ra.ARTIFACTS):
        for ref in [a.function, *(c.function for c in a.claims)]:
            path, line = ra.source_location(ref)
            assert path.is_relative_to(ROOT / "cryolib"), (a.key, path)
            assert path.read_text().splitlines()[line - 1].lstrip().startswith("def "), (a.key, ref)


def test_every_registered_file_is_written_by_its_notebook():
    for a in filter(_landed, ra.ARTIFACTS):
        text = _writer_text(a.source)
        for stem in [*a.tables, *a.figures, *(c.stem for c in a.claims)]:
            assert f'"{stem.split("/")[-1]}' in text, (a.key, a.source, stem)


def test_every_table_and_figure_a_notebook_writes_is_registered():
    registered = {s for a in ra.ARTIFACTS for s in [*a.tables, *a.figures, *(c.stem for c in a.claims)]}
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        written = re.findall(r'save_(?:table|figure)\([^,]+,\s*"([^"]+)"', _writer_text(nb.stem))
        assert set(written) <= registered, (nb.name, set(written) - registered)


def test_the_committed_results_have_nounregistered_claims():
    tables = ROOT / "results" / "default" / "tables"
    if not tables.is_dir():
        pytest.skip("no committed default results")
    assert rp.unregistered_claims(tables.parent) == []


def test_issue15_functions_resolve_once_their_notebook_writes_the_table():
    """The artifacts of issue 15 name their functions as "module:name": once a notebook writes the table,
    the name must resolve (a renamed function fails here rather than dropping the report's link)."""
    for a in (a for a in ra.ARTIFACTS if a.new):
        writer = ROOT / "notebooks" / f"{a.source}.ipynb"
        if writer.is_file() and f'"{a.tables[0]}"' in _writer_text(a.source):
            assert all(ra.resolve(r) is not None for r in [a.function, *(c.function for c in a.claims)]), a.key
