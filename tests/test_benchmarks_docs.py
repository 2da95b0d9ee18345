"""The generated documents in git are what their JSON files in git give: a figure there is copied by a
program from the JSON its benchmark wrote, never by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from protein_performer.experiments.report.tables import md_table

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _between(text: str, begin: str, end: str) -> str:
    return text.split(begin, 1)[1].split(end, 1)[0]


def test_results_md_is_the_report_of_results_all_json():
    from protein_performer.experiments.report.document import render
    from protein_performer.experiments.results import Results

    res = Results.load(DOCS / "figures" / "results_all.json")
    link = os.path.relpath(REPO / res.benchmark["existing_md"], DOCS) if res.benchmark.get("existing_md") else None
    assert render(res, benchmark_link=link) == (DOCS / "RESULTS.md").read_text()


def test_generate_md_is_the_report_of_generate_json():
    from protein_performer.experiments.bench.generate import report

    results = json.loads((DOCS / "benchmarks" / "generate.json").read_text())
    assert report(results) == (DOCS / "benchmarks" / "generate.md").read_text()


def test_esm_md_tables_are_those_of_esm_favor_gap_json():
    """The block's tables (its prose names the run's machine and settings, which the JSON does not hold)."""
    from protein_performer.experiments.bench.esm_gap import Gap, render

    saved = json.loads((DOCS / "benchmarks" / "esm_favor_gap.json").read_text())
    rendered = render(saved["exactness"], [Gap(**g) for g in saved["favor_gap"]], 3, 8, "any machine")
    block = _between((DOCS / "benchmarks" / "esm.md").read_text(), "<!-- esm-favor-gap:begin -->",
                     "<!-- esm-favor-gap:end -->")

    def tables(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith("|")]

    assert tables(rendered) == tables(block) and len(tables(block)) > 10


def test_the_assay_table_of_families_md_is_that_of_assays_json():
    from protein_performer.experiments.assays import DOC_END, DOC_START, doc_block

    summary = json.loads((DOCS / "benchmarks" / "assays.json").read_text())
    block = _between((DOCS / "benchmarks" / "families.md").read_text(), DOC_START, DOC_END)
    assert block.strip() == doc_block(summary).strip()


def test_md_table_aligns_columns():
    assert md_table(["a", "b", "c"], [[1, "x", ""]], align="lr") == "| a | b | c |\n|---|---:|---|\n| 1 | x |  |"


@pytest.mark.parametrize("align", ["lrrr", "lx"])
def test_md_table_refuses_an_alignment_that_does_not_fit(align):
    with pytest.raises(ValueError, match="align"):
        md_table(["a", "b", "c"], [], align=align)
