"""The figures table of docs/benchmarks.md (:mod:`protein_performer.experiments.report.benchmarks`,
``scripts/benchmarks_table.py``) as a function of the JSON files the benchmarks write, on synthetic
results, and the shipped table against the shipped JSON files."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from protein_performer.experiments.report import benchmarks

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table():
    return benchmarks


def generate_json(flat: float = 1.1, speedup: float = 20.0) -> dict:
    """bench_generate.py's JSON: FAVOR+ 2 ms/token at 512, ``flat`` x that at 16,384; recomputing
    the prefix ``speedup`` x the step at 4,096."""
    return {"args": {"rounds": 9},
            "favor_step": {"512": {"ms_per_token": 2.0}, "4096": {"ms_per_token": 2.0},
                           "16384": {"ms_per_token": 2.0 * flat}},
            "exact_kv_cache": {}, "favor_recompute": {"4096": {"ms_per_token": 2.0 * speedup}}}


def demo_summary(gain: float = 1.6, ratio_ci: tuple[float, float] = (0.94, 0.96)) -> dict:
    score = {"perplexity_ratio": sum(ratio_ci) / 2, "perplexity_ratio_ci95": list(ratio_ci), "passes": 5,
             "accuracy_gain": gain, "accuracy_gain_ci95": [gain - 0.4, gain + 0.4], "accuracy": 0.1204,
             "unigram_accuracy": 0.1077, "context_accuracy_gain": 0.6, "context_accuracy_gain_ci95": [-0.1, 1.3]}
    figures = [{"source": source, "measure": measure, "heads": "all", "pearson": r}
               for source, measure, r in (("trained", "contexts", 0.36), ("untrained", "contexts", 0.02),
                                          ("shuffled", "contexts", 0.1), ("trained", "contexts_by_offset", 0.2))]
    similarity = {"proteins": 197, "attention": {"pearson": -0.05}, "study": {"figures": figures}}
    return {"command": "python scripts/demo.py", "steps": 1300, "minutes": 4.7, "date": "2026-01-02",
            "score": score, "similarity": similarity}


def test_generation_rows_compute_the_ratios_and_verdicts(table):
    ok, slow = table.generation_rows(generate_json()), table.generation_rows(generate_json(1.3, 8.0))
    assert [r.measured.split(" ")[0] for r in ok] == ["1.10x", "20x"]
    assert [r.status for r in ok] == ["≤1.2x PASS", "≥10x PASS"]
    assert [r.status for r in slow] == ["≤1.2x MISS", "≥10x MISS"]
    assert [r.target for r in ok] == [r.target for r in slow]  # the key does not move with the figures


def test_demo_rows_follow_the_targets(table):
    rows = {r.target.split(": ", 1)[1]: r for r in table.demo_rows(demo_summary())}
    assert rows["held-out masked perplexity / unigram"].status.endswith("PASS")
    assert rows["held-out masked accuracy gain over the unigram"].measured.startswith("+1.60 points [+1.20, +2.00]")
    assert rows["held-out masked accuracy gain over the unigram"].status.endswith("PASS")
    assert rows["held-out masked accuracy gain over the neighbour n-gram"].status.endswith("MISS")  # interval below 0
    assert rows["contexts"].measured == "0.360 (untrained 0.020)" and rows["contexts"].status == "≥ 0.35: PASS"
    assert rows["contexts, offset null"].measured == "0.200" and rows["contexts, offset null"].status.endswith("MISS")
    worse = {r.target: r.status for r in table.demo_rows(demo_summary(1.0, (0.97, 1.01)))}
    assert worse["demo: held-out masked perplexity / unigram"].endswith("MISS")
    assert worse["demo: held-out masked accuracy gain over the unigram"].endswith("MISS")


def test_reproduce_rows_read_the_shipped_results_through_the_reports_rules(table):
    res = json.loads((REPO / "docs" / "figures" / "results_all.json").read_text())
    before = copy.deepcopy(res)
    rows = {r.target: r for r in table.reproduce_rows(res)}
    assert res == before
    assert len(rows) == 4 and all(r.status.endswith(("PASS", "MISS", ")")) for r in rows.values())
    short = rows["reproduce, L = 512, equal wall clock: hybrid / exact test perplexity, BID / UNI"]
    assert short.measured.startswith("0.980 / 0.997") and short.status == "≤ 1: PASS"
    assert "/work/" not in "".join(r.by for r in rows.values())


def test_a_present_source_redraws_its_rows_in_place_and_the_rest_stays(table):
    target = table.generation_rows(generate_json())[0].target
    text = "\n".join([
        "intro", table.BEGIN, "| target | measured | status | measured by | from |", "|---|---|---|---|---|",
        "| hand row | 3x `a|b` | ≥2x PASS | `x.py` | hand-copied |",
        f"| {target} | 9.99x | ≤1.2x MISS | old run | `docs/benchmarks/generate.json` |",
        "| demo: held-out masked perplexity / unigram | 0.9 | kept | old demo | `outputs/demo/summary.json` |",
        table.END, "after", ""])
    loaded = {"docs/benchmarks/generate.json": generate_json(), "outputs/demo/summary.json": None,
              "docs/figures/results_all.json": None, "docs/benchmarks/assays.json": None}
    new = table.regenerate(text, loaded)
    head, rows, tail = table.read_block(new)
    assert head == "intro\n" and tail == "\nafter\n"
    assert rows[0] == ["hand row", "3x `a|b`", "≥2x PASS", "`x.py`", "hand-copied"]  # a pipe in code stays
    assert rows[1][:3] == [target, "1.10x (16,384 / 512; 9 rounds)", "≤1.2x PASS"]
    assert rows[2][1:3] == ["0.9", "kept"]  # its JSON is absent: kept as it was
    assert rows[3][0].startswith("generation: stepping") and rows[3][-1] == "`docs/benchmarks/generate.json`"
    assert table.regenerate(new, loaded) == new  # a second pass changes nothing
    with pytest.raises(ValueError, match="figures:begin"):
        table.regenerate("no block", loaded)


def assays_summary(performer: float = 0.8, profile: float = 0.7) -> dict:
    """The benchmark's summary: one DMS (Spearman), one clinical assay (AUC), one failed assay."""
    def metric(value: float) -> dict:
        return {"value": value, "ci95": [value - 0.01, value + 0.01], "n": 100}

    return {"command": "python scripts/bench_assays.py", "date": "2026-01-03", "assays": [
        {"DMS_id": "A_DMS", "status": "done", "rows": 100,
         "scorers": {"Performer best": {"spearman": metric(performer)}, "Performer last": {"spearman": metric(0.1)},
                     "profile": {"spearman": metric(profile)}, "blosum62": {"spearman": metric(0.9)}}},
        {"DMS_id": "B_ClinVar", "status": "done", "rows": 100,
         "scorers": {"Performer best": {"auc": metric(0.6)}, "profile": {"auc": metric(profile)}}},
        {"DMS_id": "C", "status": "failed", "error": "no family"}]}


def test_assay_rows_set_the_best_performer_beside_the_profile(table):
    rows = {r.target.split(", ")[1].split(":")[0]: r for r in table.assay_rows(assays_summary())}
    assert set(rows) == {"A_DMS", "B_ClinVar"}  # the failed assay has no row
    assert rows["A_DMS"].measured.startswith("0.800 [0.790, 0.810] (Performer best; 100 variants)")
    assert rows["A_DMS"].status == "profile 0.700: above"  # BLOSUM62's 0.9 is not a Performer
    assert "AUC" in rows["B_ClinVar"].target and rows["B_ClinVar"].status == "profile 0.700: not above"


def test_the_shipped_table_is_what_the_shipped_results_give(table, tmp_path):
    """Regenerated from the JSON files in git (docs/...), the shipped table does not change; the rows of
    outputs/ files (not in git) and the typed rows stay, and every row says where it comes from."""
    assert table.main(["--root", str(REPO), "--outputs", str(tmp_path / "none"), "--check"]) == 0
    rows = table.read_block((REPO / "docs" / "benchmarks.md").read_text())[1]
    cells = {s.cell for s in table.SOURCES}
    assert all(r[-1] in cells or r[-1].endswith(", no JSON") for r in rows), [r[-1] for r in rows]
    in_git = [s for s in table.SOURCES if not s.path.startswith("outputs/")]
    assert all((REPO / s.path).is_file() for s in in_git)
    drawn = {r[-1] for r in rows}
    assert all(s.cell in drawn for s in in_git)  # every JSON in git gives rows
