"""The reproduction report: ``results/<profile>/REPORT.md`` from the results files of notebooks 01-09.

For every table and figure of both papers (the registry in :mod:`cryolib.studies.report_artifacts`):
the paper's numbers, ours and the difference, the claims tested and whether each holds, the figures
embedded, and links to the source table, the executed notebook and the library function (file and line,
found by :mod:`inspect`). Then the cross-paper comparison (MAE against DRACO features) and the run
(profile, machine, commit, wall time per notebook from ``run.yaml``). Every number is read from a results
file; a missing file is listed as not produced, never skipped. Issue 15 of the project.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import yaml

from cryolib.core.atomic import atomic_write_text
from cryolib.core.provenance import git_commit
from cryolib.core.results import results_dir
from cryolib.studies import report_tables as rt
from cryolib.studies.report_artifacts import (ARTIFACTS, COMPARISONS, OURS, PAPERS, Artifact, Claims, Comparison,
                                              artifact, is_script, ref_name, script_path, source_location)

REPORT_NAME = "REPORT.md"
FLOATFMT = ".3f"  # as save_table writes the tables' Markdown


@dataclass
class Entry:
    """One artifact as found in a results folder."""

    artifact: Artifact
    tables: dict[str, Path | None]  # stem -> CSV path, None when not produced
    figures: dict[str, Path | None]  # stem -> PNG path, None when not produced
    summary: pd.DataFrame | None
    claims: list[tuple[Claims, pd.DataFrame | None, bool]]  # (claims, normalised table, first owner)

    @property
    def missing(self) -> list[str]:
        return [s for s, p in {**self.tables, **self.figures}.items() if p is None] + \
            [c.stem for c, df, _ in self.claims if df is None]

    @property
    def present(self) -> bool:
        return not self.missing


@dataclass
class Report:
    """Everything REPORT.md says, read from ``results/<profile>/``."""

    profile: str
    results: Path
    runs: dict
    entries: list[Entry]
    claims: pd.DataFrame  # paper_name, artifact, anchor, stem, claim, paper, ours, holds (True/False/None)
    comparisons: list[tuple[Comparison, pd.DataFrame | None]]
    unregistered: list[str] = field(default_factory=list)  # claims tables no artifact names
    link_base: Path | None = None  # the folder links are relative to (None: the results folder, where REPORT.md is)

    @property
    def base(self) -> Path:
        return self.link_base or self.results


def _figure(results: Path, stem: str) -> Path | None:
    path = rt.result_path(results, stem, "figures", ".png")
    return path if path.is_file() else None


def _read_claims(results: Path, stem: str) -> pd.DataFrame | None:
    df = rt.read_table(rt.result_path(results, stem, "tables", ".csv"))
    return rt.normalise_claims(df) if df is not None and rt.is_claims_table(df) else None


def collect_entry(results: Path, art: Artifact, owned: set[str]) -> Entry:
    """Read one artifact's files; a claims table belongs to the first artifact that lists it."""
    tables = {s: p if p.is_file() else None for s in art.tables for p in [rt.result_path(results, s, "tables", ".csv")]}
    summary = None
    if art.summary is not None and art.tables and tables[art.tables[0]] is not None:
        df = rt.read_table(tables[art.tables[0]])
        summary = rt.summary_table(df, art.summary) if df is not None else None
    claims = []
    for c in art.claims:
        claims.append((c, _read_claims(results, c.stem), c.stem not in owned))
        owned.add(c.stem)
    return Entry(art, tables, {s: _figure(results, s) for s in art.figures}, summary, claims)


def _all_claims(entries: list[Entry]) -> pd.DataFrame:
    frames = [df.assign(paper_name=e.artifact.paper, artifact=e.artifact.name, anchor=anchor(e), stem=c.stem)
              for e in entries for c, df, first in e.claims if df is not None and first]
    cols = ["paper_name", "artifact", "anchor", "stem", "claim", "paper", "ours", "holds"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def unregistered_claims(results: Path) -> list[str]:
    """Claims tables (`tables/*_claims.csv`) that no registered artifact names."""
    known = {c.stem for a in ARTIFACTS for c in a.claims}
    return sorted(p.stem for p in (results / "tables").glob("*_claims.csv") if p.stem not in known)


def _comparisons(results: Path) -> list[tuple[Comparison, pd.DataFrame | None]]:
    out = []
    for comp in COMPARISONS:
        art = artifact(comp.artifact)
        df = rt.read_table(rt.result_path(results, art.tables[0], "tables", ".csv"))
        out.append((comp, rt.comparison_table(df, comp) if df is not None else None))
    return out


def collect_report(profile: str, root: str | os.PathLike | None = None) -> Report:
    """Read every registered artifact of ``results/<profile>/`` (``root`` overrides ``results/``)."""
    results = results_dir(profile, root)
    run_yaml = results / "run.yaml"
    runs = (yaml.safe_load(run_yaml.read_text()) or {}) if run_yaml.is_file() else {}
    owned: set[str] = set()
    entries = [collect_entry(results, a, owned) for a in ARTIFACTS]
    return Report(profile, results, runs, entries, _all_claims(entries), _comparisons(results),
                  unregistered_claims(results))


# ---------------------------------------------------------------- Markdown helpers


def markdown_table(df: pd.DataFrame) -> str:
    """``df`` as a Markdown table, floats as save_table writes them, missing values as a dash."""
    clean = df.astype(object).where(df.notna(), None)
    return clean.to_markdown(index=False, floatfmt=FLOATFMT, missingval="—")


def _rel(target: Path, base: Path) -> str:
    return Path(os.path.relpath(Path(target).resolve(), base.resolve())).as_posix()


def link(text: str, target: Path, base: Path, line: int | None = None) -> str:
    """A Markdown link from a file in ``base`` to ``target`` (``#L<line>`` for source lines)."""
    return f"[{text}]({_rel(target, base)}{f'#L{line}' if line else ''})"


def _short(source: str) -> str:
    return Path(source).name if is_script(source) else source[:2]


def _rerun(source: str) -> str:
    return f"run `{source}`" if is_script(source) else f"run notebook {source[:2]}"


def source_link(source: str, report: Report) -> str | None:
    """Link to the executed notebook (``notebooks/<source>.ipynb``) or the benchmark script; None if absent."""
    path = script_path(source) if is_script(source) else report.results / "notebooks" / f"{source}.ipynb"
    return link(f"nb {_short(source)}" if not is_script(source) else _short(source), path, report.base) \
        if path.is_file() else None


def code_link(ref, base: Path, text: str | None = None) -> str:
    """Link to a library function's file and line (text: its module and name), or a note that it is missing."""
    name = ref_name(ref).removeprefix("cryolib.studies.")
    loc = source_location(ref)
    return link(text or f"`{name}`", loc[0], base, loc[1]) if loc else f"`{name}` (not in this checkout)"


def function_link(entry: Entry, report: Report, text: str | None = None) -> str:
    """Link to the artifact's library function."""
    return code_link(entry.artifact.function, report.base, text)


def table_link(report: Report, stem: str, text: str = "table") -> str | None:
    """Link to ``tables/<stem>.md`` (or its CSV when there is no Markdown copy); None if neither exists."""
    for suffix in (".md", ".csv"):
        path = rt.result_path(report.results, stem, "tables", suffix)
        if path.is_file():
            return link(text, path, report.base)
    return None


def row_links(entry: Entry, report: Report, stem: str, text: str = "table") -> str:
    """The links every row of a table carries: its source table, notebook and library function."""
    parts = [table_link(report, stem, text), source_link(entry.artifact.source, report),
             function_link(entry, report, "code")]
    return " · ".join(p for p in parts if p)


def not_produced(entry: Entry) -> str:
    """The line that names an artifact's missing files and how to make them."""
    return f"*Not produced in this run ({_rerun(entry.artifact.source)}):* " + \
        ", ".join(f"`{s}`" for s in entry.missing) + "."


# ---------------------------------------------------------------- sections

INTRO = (
    "This study reproduces two papers on self-supervised cryo-EM models on simulated analogs of their "
    "EMPIAR/CryoPPP datasets (made by `cryolib.simulate`, with exact ground truth): **Cryo-EMMAE** "
    "(Zamanos et al., 2024; a masked autoencoder whose embeddings are clustered to pick particles without "
    "labels) and **DRACO** (2024; a denoising-reconstruction autoencoder pretrained on odd/even movie halves, "
    "then used as a zero-shot denoiser and as a backbone for curation and picking). Each section below is one "
    "table or figure of a paper (or one check of ours): the paper's numbers beside ours and their "
    "difference, the paper's claims tested on our numbers, and links to the source table, the executed "
    "notebook and the library function. Our models are small CPU stand-ins trained on a few analogs, so "
    "compare the order of methods, not absolute values. Every number here is read from a results file; "
    "`cryolib.studies.report.build_report` writes this file (notebook 10).")


def _machines(runs: dict) -> str:
    seen = sorted({f"{r['machine']['platform']}, {r['machine']['cpus']} CPUs" for r in runs.values()
                   if isinstance(r, dict) and "machine" in r})
    return "; ".join(seen) or "not recorded"


def run_table(report: Report) -> pd.DataFrame:
    """Per notebook in ``run.yaml``: start, wall time (s), commit and a link to its executed copy."""
    rows = []
    for name, run in report.runs.items():
        if not isinstance(run, dict) or name == "10_report":  # the report's own entry is written after it
            continue
        commit = str(run.get("git_commit", ""))
        wall = run.get("wall_time_s")
        rows.append({"notebook": source_link(name, report) or name, "started": run.get("started"),
                     "wall time": f"{wall / 60:.1f} min" if isinstance(wall, (int, float)) else "—",
                     "commit": commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")})
    return pd.DataFrame(rows, columns=["notebook", "started", "wall time", "commit"])


def header(report: Report) -> list[str]:
    """Title, what the study is, and the run: profile, machine, commit, date and wall time per notebook."""
    times = run_table(report)
    total = sum(r.get("wall_time_s") or 0 for k, r in report.runs.items() if isinstance(r, dict) and k != "10_report")
    return [f"# Reproduction report: Cryo-EMMAE and DRACO (profile `{report.profile}`)", "", INTRO, "",
            "## The run", "",
            f"- **Profile:** `{report.profile}` (sizes in `cryolib/core/profiles.py`)",
            f"- **Machine of the notebooks:** {_machines(report.runs)}",
            f"- **Report built** {time.strftime('%Y-%m-%d %H:%M')} on {platform.platform()}, "
            f"{os.cpu_count()} CPUs, at commit `{git_commit()}`",
            f"- **Notebook wall time:** {total / 60:.1f} min in all, per notebook below "
            "(a `-dirty` commit had uncommitted changes)", "",
            markdown_table(times) if len(times) else "*No `run.yaml` in this results folder.*", ""]


def claims_summary(report: Report) -> pd.DataFrame:
    """Per paper (and our own checks): claims tested, holding, not holding and not testable."""
    rows = []
    for paper in (*PAPERS, OURS):
        sub = report.claims[report.claims["paper_name"] == paper]
        if paper == OURS and sub.empty:
            continue
        rows.append({"paper": paper, **rt.claims_counts(sub)})
    return pd.DataFrame(rows, columns=["paper", "tested", "holding", "not_holding", "not_testable"])


def links_table(report: Report, base: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per artifact: paper, name, status, and links to its table, notebook and function
    (relative to ``base``, default the results folder where REPORT.md lives)."""
    report = replace(report, link_base=Path(base) if base is not None else report.link_base)
    rows = []
    for e in ordered(report.entries):
        a = e.artifact
        first = a.tables[0] if a.tables else None
        rows.append({"paper": a.paper, "artifact": f"[{a.name}](#{anchor(e)})",
                     "status": "produced" if e.present else f"not produced ({_rerun(a.source)})",
                     "table": (table_link(report, first, first) if first else None) or "—",
                     "notebook": source_link(a.source, report) or a.source, "function": function_link(e, report)})
    return pd.DataFrame(rows)


def summary_section(report: Report) -> list[str]:
    """How many claims were tested and hold, per paper; how many artifacts this run produced."""
    n_present = sum(e.present for e in report.entries)
    out = ["## Summary", "", markdown_table(claims_summary(report).rename(columns=lambda c: c.replace("_", " "))), "",
           f"{n_present} of {len(report.entries)} registered tables and figures were produced in this run."]
    untestable = report.claims[report.claims["holds"].isna()]
    if len(untestable):
        reasons = "; ".join(r.ours.removeprefix("not run: ") for r in untestable.itertuples())
        out[-1] += f" Not testable here: {reasons}."
    out += [""]
    failing = report.claims[report.claims["holds"] == False]  # noqa: E712 (object column)
    if len(failing):
        out += ["Claims that do not hold in this run:", ""] + \
            [f"- {r.paper_name}, [{r.artifact}](#{r.anchor}): {r.claim} (ours: {r.ours})" for r in failing.itertuples()]
        out += [""]
    out += ["### Index", "", markdown_table(links_table(report)), ""]
    return out


def comparison_section(report: Report) -> list[str]:
    """MAE features (Cryo-EMMAE) against DRACO features, for picking, denoising and resolution."""
    out = ["## Cross-paper comparison: MAE features against DRACO features", "",
           "Cryo-EMMAE clusters the features of a masked autoencoder; DRACO pretrains the same kind of encoder "
           "with its odd/even objective. Picking: Cryo-EMMAE's clustering run on its own MAE and on our DRACO-B "
           "encoder (Table 1 protocol). Denoising and resolution: the plain MAE of DRACO's warm-up stage against "
           "DRACO-B, both on the shared encoder. Δ is DRACO minus MAE.", ""]
    for comp, df in report.comparisons:
        art = artifact(comp.artifact)
        entry = next(e for e in report.entries if e.artifact.key == comp.artifact)
        out += [f"### {comp.title}", ""]
        if df is None:
            out += [f"*Not produced in this run ({_rerun(art.source)}): `{art.tables[0]}` with rows "
                    f"`{comp.mae}` and `{comp.draco}`.*", ""]
            continue
        out += [f"`{comp.mae}` against `{comp.draco}`:", "",
                markdown_table(df.assign(links=row_links(entry, report, art.tables[0]))), ""]
    return out


SECTION_TITLES = {PAPERS[0]: "## Cryo-EMMAE (Zamanos et al., 2024)", PAPERS[1]: "## DRACO (2024)",
                  OURS: "## Our own checks (not in the papers)"}


def ordered(entries: list[Entry]) -> list[Entry]:
    """Entries grouped as the report shows them: Cryo-EMMAE, DRACO, our checks (registry order within)."""
    order = list(SECTION_TITLES)
    return sorted(entries, key=lambda e: order.index(e.artifact.paper))


def anchor(entry: Entry) -> str:
    """The Markdown heading anchor of an artifact's section (its key)."""
    return entry.artifact.key.replace("_", "-")


def claims_block(entry: Entry, report: Report) -> list[str]:
    """The artifact's claims: the paper's statement, ours, whether it holds; or where they are listed."""
    out = []
    for c, df, first in entry.claims:
        if df is None:
            continue
        if not first:
            owner = next(e for e in report.entries if any(x.stem == c.stem for x, _, f in e.claims if f))
            out += [f"Claims: listed under [{owner.artifact.name}](#{anchor(owner)}) (`{c.stem}`).", ""]
            continue
        counts = rt.claims_counts(df)
        shown = df.assign(holds=df["holds"].map({True: "yes", False: "no"}).fillna("not testable"))
        links = " · ".join(p for p in [table_link(report, c.stem, "claims"),
                                       source_link(entry.artifact.source, report),
                                       code_link(c.function, report.base, "code")] if p)
        out += [f"**Claims** ({counts['holding']} of {counts['tested']} tested hold):", "",
                markdown_table(shown.assign(links=links)), ""]
    return out


def artifact_section(entry: Entry, report: Report) -> list[str]:
    """One table or figure: links, note, figures, the paper-vs-ours summary and the claims."""
    a = entry.artifact
    links = " · ".join(p for p in [*(table_link(report, s, f"{s}") for s in a.tables),
                                   source_link(a.source, report), function_link(entry, report)] if p)
    out = [f'<a id="{anchor(entry)}"></a>', f"### {a.name}: {a.title}", "", f"Source: {links}.", ""]
    if a.note:
        out += [a.note, ""]
    if entry.missing:
        out += [not_produced(entry), ""]
    out += [f"![{a.name} ({stem})]({_rel(path, report.base)})" for stem, path in entry.figures.items() if path]
    out += [""] if any(entry.figures.values()) else []
    if entry.summary is not None and len(entry.summary):
        out += [markdown_table(entry.summary.assign(links=row_links(entry, report, a.tables[0]))), ""]
    return out + claims_block(entry, report)


def paper_sections(report: Report) -> list[str]:
    """Every artifact, grouped: Cryo-EMMAE, DRACO, then our own checks."""
    out, paper = [], None
    for e in ordered(report.entries):
        if e.artifact.paper != paper:
            paper = e.artifact.paper
            out += [SECTION_TITLES[paper], ""]
        out += artifact_section(e, report)
    if report.unregistered:
        out += ["## Claims tables not in the registry", "",
                "Add these to `cryolib/studies/report_artifacts.py`: " +
                ", ".join(table_link(report, s, s) or s for s in report.unregistered) + ".", ""]
    return out


def render(report: Report) -> str:
    """The whole REPORT.md."""
    lines = header(report) + summary_section(report) + comparison_section(report) + paper_sections(report)
    return "\n".join(lines).rstrip() + "\n"


def build_report(profile: str, root: str | os.PathLike | None = None) -> Path:
    """Write ``results/<profile>/REPORT.md`` (atomically) from that folder's results and return its path."""
    report = collect_report(profile, root)
    return atomic_write_text(report.results / REPORT_NAME, render(report))


def report_metrics(report: Report) -> dict:
    """metrics.json of notebook 10: artifacts produced, claims tested and holding (per paper)."""
    per_paper = {r["paper"]: {k: int(r[k]) for k in ("tested", "holding", "not_holding", "not_testable")}
                 for r in claims_summary(report).to_dict("records")}
    return {"n_artifacts": len(report.entries), "n_present": sum(e.present for e in report.entries),
            "missing": sorted(s for e in report.entries for s in e.missing),
            "claims_tested": sum(p["tested"] for p in per_paper.values()),
            "claims_holding": sum(p["holding"] for p in per_paper.values()), "claims": per_paper,
            "unregistered_claims": report.unregistered}
