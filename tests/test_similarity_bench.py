"""The similarity benchmark's plan, its tables, and the committed doc against its committed JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protein_performer.corpus.split_rule import hash_unit
from protein_performer.experiments import similarity_bench as bench

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks" / "similarity.md"


def test_put_block_replaces_only_its_own_block():
    text = "# title\n\nprose\n"
    once = bench.put_block(text, "t", "| a |\n|---|\n| 1 |")
    assert once.startswith(text.rstrip()) and "| 1 |" in once
    twice = bench.put_block(once + "\nafter\n", "t", "| a |\n|---|\n| 2 |")
    assert "| 1 |" not in twice and "| 2 |" in twice and twice.endswith("after\n")
    assert bench.put_block(twice, "u", "x").count("<!-- /t -->") == 1


def test_family_files_follow_the_hold_out_rule(tmp_path):
    queries = [f"P{i:05d}" for i in range(40)]
    (tmp_path / "families.tsv").write_text("file\tquery\n" + "".join(f"{q}.a3m\t{q}\n" for q in queries))
    held = bench.family_files({"dir": ".", "split": "held-out", "fraction": 0.3}, tmp_path)
    train = bench.family_files({"dir": ".", "split": "train", "fraction": 0.3, "limit": 5}, tmp_path)
    assert {p.stem for p in held} == {q for q in queries if hash_unit(q) < 0.3}
    assert [p.stem for p in train] == sorted(q for q in queries if hash_unit(q) >= 0.3)[:5]


def test_command_of_a_plan_entry(tmp_path):
    entry = {"name": "m", "checkpoint": "runs/m.ckpt", "homologs": ["a.a3m", "b.a3m"],
             "options": {"windows": 2, "query_rows": 64, "controls": ["untrained"]}}
    args = bench.command(entry, tmp_path, tmp_path / "out")
    assert args[:3] == ["similarity", "--checkpoint", str(tmp_path / "runs/m.ckpt")]
    assert args[args.index("--homologs") + 1 : args.index("--homologs") + 3] == [str(tmp_path / "a.a3m"),
                                                                                   str(tmp_path / "b.a3m")]
    assert "--query-rows" in args and args[args.index("--controls") + 1] == "untrained"
    assert bench.slug("TEM-1 family") == "tem_1_family"


@pytest.mark.skipif(not DOC.with_suffix(".json").is_file(), reason="no committed similarity.json")
def test_the_committed_doc_holds_the_tables_its_json_gives(tmp_path):
    """Every figure of docs/benchmarks/similarity.md's tables comes from docs/benchmarks/similarity.json."""
    result = json.loads(DOC.with_suffix(".json").read_text())
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "results_all.json").write_text((REPO / "docs" / "figures" / "results_all.json").read_text())
    copy = tmp_path / "benchmarks" / "similarity.md"
    copy.write_text(DOC.read_text())
    bench.write_doc(copy, result)
    assert copy.read_text() == DOC.read_text()
