"""The workflows' shared pieces: the one in-process, timed CLI runner, and the family benchmarks' rule and
tables as functions of their saved results (synthetic here; the benchmarks themselves are not run)."""

from __future__ import annotations

import hashlib

import pytest

from protein_performer.experiments.bench import families, multi_family
from protein_performer.experiments.runs import CommandFailed, cli_command


def test_cli_command_runs_in_this_process_times_it_and_raises_on_failure(tmp_path, caplog):
    fasta = tmp_path / "p.fasta"
    fasta.write_text("".join(f">p{i}\n{'ACDEFGHIKLMNPQRSTVWY' * (i + 2)}\n" for i in range(30)))
    with caplog.at_level("INFO"):
        seconds = cli_command("prepare", str(fasta), "--out", str(tmp_path / "data"), "--quiet")
    assert seconds > 0 and (tmp_path / "data" / "manifest.json").is_file()
    assert f"$ protein-performer prepare {fasta}" in caplog.text  # the command a user would type
    with pytest.raises(CommandFailed, match="protein-performer prepare .*missing.fasta.* failed with exit code"):
        cli_command("prepare", str(tmp_path / "missing.fasta"), "--out", str(tmp_path / "other"))


def test_held_out_families_follow_the_hash_rule_of_the_split():
    for query in ("P00550", "P0A6J5", "sp|P62552|CCDB_ECOLI", ""):
        unit = int.from_bytes(hashlib.blake2b(query.encode(), digest_size=8).digest(), "little") / 2**64
        assert multi_family.held_out(query, 0.1) == (unit < 0.1)
        assert multi_family.held_out(query, 1.0) and not multi_family.held_out(query, 0.0)


def _corr(value: float, n: int = 10) -> dict:
    return {"spearman": value, "ci95": [value - 0.01, value + 0.01], "n": n}


def test_the_multi_family_tables_are_a_function_of_the_saved_result():
    gains = [{"family": "fam/P1.a3m", "members": 4, "residues": 100, "alone": -2.9, "with_homologs": -2.1, "gain": 0.8},
             {"family": "fam/P2.a3m", "members": 6, "residues": 300, "alone": -2.8, "with_homologs": -2.7, "gain": 0.1}]
    tem1 = {"baselines": {"blosum62": _corr(0.35)}, "profile": _corr(0.66),
            "models": [_corr(0.03) | {"strategy": "alone"}, _corr(0.64) | {"strategy": "+homologs"},
                       _corr(0.67) | {"strategy": "mix", "profile_weight": 0.85}]}
    result = {"held_out": gains, "held_out_mean": multi_family.held_out_mean(gains), "tem1": tem1,
              "context_lengths": {"1024": _corr(0.5) | {"minutes": 0.3}}}
    text = multi_family.markdown(result)
    assert "| P1 | 4 | 100 | -2.900 | -2.100 | +0.800 |" in text
    assert "| **all 2** (residue-weighted) | 10 | 400 | -2.825 | -2.550 | +0.275 |" in text
    assert "2 of 2 families gain" in text and "| mix (w 0.85) | 0.670 [0.660, 0.680] |" in text
    assert "|---:|---:|---:|" in text and "| 1,024 | 0.500 [0.490, 0.510] | 0.3 |" in text


def test_the_families_benchmark_tables_are_a_function_of_the_saved_result():
    scored = {"models": [_corr(0.70), _corr(0.72), _corr(0.73) | {"profile_weight": 0.25}],
              "baselines": {"blosum62": _corr(0.35)}, "profile": _corr(0.66)}
    results = {"minutes": 10, "seconds_per_step": {"hybrid Performer": 0.2},
               "models": {"hybrid Performer": {"steps": 3000, "val_ppl": 9.5, "scored": scored}},
               "references": {"EVmutation": _corr(0.61)},
               "context_lengths": {"8192": _corr(0.72) | {"seconds": 65.0}}}
    text = families.markdown(results)
    assert ("| hybrid Performer | 0.200 | 3,000 | 9.500 | 0.700 [0.690, 0.710] | 0.720 [0.710, 0.730] | "
            "0.730 [0.720, 0.740] (0.25) |") in text
    assert "| EVmutation | 0.610 [0.600, 0.620] |" in text and "| 8,192 | 0.720 [0.710, 0.730] | 65 |" in text
