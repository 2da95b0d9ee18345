"""Issue 24 items 12 and 13: progress bars on long work, and one meaning per flag name.

Item 12: embed, similarity, score-variants (its scorers and the --plot matrix), generate and prepare
draw a bar on stderr when it is a terminal, none with --quiet or when it is not (piped); the library
functions draw none unless asked. Item 13: flags are named by their unit; every old name still
works, logs one warning naming the new flag, and is hidden from --help, whose text names the unit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys

import pytest
import torch

from protein_performer import cli
from protein_performer.model import PerformerConfig, PerformerLM

ALL_20 = "ACDEFGHIKLMNPQRSTVWY"


def _model(causal: bool) -> PerformerLM:
    torch.manual_seed(0)
    return PerformerLM(PerformerConfig(dim=16, depth=2, heads=2, nb_features=8, dropout=0.0, causal=causal)).eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """A masked and a causal checkpoint, three proteins holding all 20 amino acids, a wild type and
    three of its mutants."""
    from test_generate import save_checkpoint

    d = tmp_path_factory.mktemp("flags")
    fasta = d / "proteins.fasta"
    fasta.write_text("".join(f">p{i}\n{ALL_20[i:] + ALL_20 + ALL_20[:i]}\n" for i in range(3)))
    wt = d / "wt.fasta"
    wt.write_text(">wt\nMKTAYIAKQRQISFVKSHFSRQ\n")
    variants = d / "dms.csv"
    variants.write_text("mutant,fitness\nK2A,1\nT3W,2\nQ9E,3\n")
    return {"mlm": save_checkpoint(_model(False), d / "mlm.ckpt", "mlm"),
            "clm": save_checkpoint(_model(True), d / "clm.ckpt", "clm"),
            "fasta": fasta, "wt": wt, "variants": variants}


def _commands(files: dict, out) -> dict[str, tuple[list[str], list[str]]]:
    """command -> (argv, the bar descriptions it must show)."""
    return {
        "prepare": (["prepare", str(files["fasta"]), "--out", str(out / "ds")], ["prepare"]),
        "embed": (["embed", "--checkpoint", str(files["mlm"]), "--fasta", str(files["fasta"]),
                   "--out", str(out / "e.h5"), "--device", "cpu"], ["embed"]),
        "similarity": (["similarity", "--checkpoint", str(files["mlm"]), "--fasta", str(files["fasta"]),
                        "--out", str(out / "sim"), "--device", "cpu"], ["similarity"]),
        "score-variants": (["score-variants", "--checkpoint", str(files["mlm"]), str(files["clm"]),
                            "--fasta", str(files["wt"]), "--variants", str(files["variants"]), "--plot",
                            str(out / "dms.png"), "--out", str(out / "scored.csv"), "--device", "cpu"],
                           ["masked marginals", "log-likelihoods", "substitution matrix"]),
        "generate": (["generate", "--checkpoint", str(files["clm"]), "--num", "2", "--stop-at-residues", "12",
                      "--out", str(out / "gen.fasta"), "--device", "cpu"], ["generate"]),
    }


# ------------------------------------------------------------------ item 12: progress bars


@pytest.mark.parametrize("command", ["prepare", "embed", "similarity", "score-variants", "generate"])
def test_a_progress_bar_on_a_terminal_none_with_quiet_or_when_piped(command, files, tmp_path, capsys, monkeypatch):
    def run(mode: str, tty: bool) -> str:
        (tmp_path / mode).mkdir()
        argv, _ = _commands(files, tmp_path / mode)[command]
        monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
        assert cli.main([*argv, *(["--quiet"] if mode == "quiet" else [])]) == 0
        return capsys.readouterr().err

    _, descriptions = _commands(files, tmp_path)[command]
    terminal, quiet, piped = run("terminal", tty=True), run("quiet", tty=True), run("piped", tty=False)
    for desc in descriptions:
        assert f"{desc}:" in terminal, f"no '{desc}' bar on a terminal:\n{terminal}"
        assert f"{desc}:" not in quiet + piped
    assert "\r" in terminal and "\r" not in quiet + piped  # a bar redraws its line; nothing else does


def test_library_functions_draw_no_bar_unless_asked(capsys, monkeypatch):
    from protein_performer.generate import SamplingConfig, generate
    from protein_performer.variants.scoring import substitution_matrix

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # even on a terminal
    generate(_model(True), "MK", 2, SamplingConfig(max_residues=8), torch.Generator().manual_seed(0))
    substitution_matrix(_model(False), "MKTAYIAK")
    assert capsys.readouterr().err == ""
    substitution_matrix(_model(False), "MKTAYIAK", progress=None)  # None: on a terminal, as the commands
    assert "substitution matrix: 100%" in capsys.readouterr().err


# ------------------------------------------------------------------ item 13: one meaning per flag name

# (command, new flag, deprecated flag, value, words of the new flag's help that name its unit)
RENAMED = [
    ("prepare", "--max-residues", "--max-length", ["900"], "more than N residues"),
    ("prepare", "--min-residues", "--min-length", ["5"], "fewer than N residues"),
    ("prepare", "--quiet", "--no-progress", [], "no progress bar"),
    ("score", "--window-tokens", "--max-length", ["512"], "tokens per window"),
    ("score-variants", "--window-tokens", "--max-length", ["128"], "tokens per window"),
    ("score-variants", "--context-tokens", "--context-length", ["1200"], "tokens in a window of homologs"),
    ("embed", "--window-residues", "--max-length", ["300"], "residues per window"),
    ("generate", "--stop-at-residues", "--max-length", ["30"], "stops at N residues"),
    ("generate", "--stop-at-residues", "--max-residues", ["30"], "stops at N residues"),
    ("prepare", "--input-format", "--format", ["fasta"], "input format"),
    ("homologs", "--fasta", "--query", ["q.fasta"], "first record is the query"),
    ("attention", "--block", "--layer", ["2"], "attention block, 1..depth"),
    ("similarity", "--blocks", "--layers", ["1", "-1"], "attention blocks to analyse, 1..depth"),
]
REQUIRED = {
    "prepare": ["in.fasta", "--out", "ds"],
    "score": ["--checkpoint", "m.ckpt", "--fasta", "in.fasta"],
    "score-variants": ["--fasta", "wt.fasta", "--variants", "v.csv", "--out", "o.csv"],
    "embed": ["--checkpoint", "m.ckpt", "--fasta", "in.fasta", "--out", "e.h5"],
    "generate": ["--checkpoint", "m.ckpt", "--out", "g.fasta"],
    "homologs": ["--db", "db.fasta", "--out", "h.a3m"],
    "attention": ["--checkpoint", "m.ckpt", "--fasta", "in.fasta", "--id", "p0", "--out", "a.png"],
    "similarity": ["--checkpoint", "m.ckpt", "--fasta", "in.fasta", "--out", "sim"],
}


def _parser(command: str) -> argparse.ArgumentParser:
    """The parser ``protein-performer COMMAND`` builds."""
    parser = argparse.ArgumentParser(prog=f"protein-performer {command}")
    importlib.import_module(cli.COMMANDS[command][0]).add_arguments(parser)
    return parser


@pytest.mark.parametrize("command, new, old, value, unit", RENAMED, ids=[f"{c} {o}" for c, _, o, _, _ in RENAMED])
def test_an_old_flag_sets_the_new_one_and_warns_once_naming_it(command, new, old, value, unit, caplog):
    with caplog.at_level(logging.WARNING):
        renamed = _parser(command).parse_args([*REQUIRED[command], new, *value])
        assert not caplog.records  # the new name: no warning
        deprecated = _parser(command).parse_args([*REQUIRED[command], old, *value])
    assert deprecated == renamed != _parser(command).parse_args(REQUIRED[command])
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and old in warnings[0] and new in warnings[0] and "deprecated" in warnings[0]


@pytest.mark.parametrize("command, new, old, value, unit", RENAMED, ids=[f"{c} {n}" for c, n, _, _, _ in RENAMED])
def test_help_names_the_unit_and_the_old_name_only_as_deprecated(command, new, old, value, unit):
    parser = _parser(command)
    text = " ".join(parser.format_help().split())  # unwrapped
    assert f"{new} " in text and unit in text
    assert f"[formerly {old}, deprecated]" in text
    assert not re.search(rf"\[{old}[ \]]", parser.format_usage())  # not offered as an option


def test_hidden_state_and_block_numbering_is_spelled_out_in_both_helps():
    embed = " ".join(_parser("embed").format_help().split())
    attention = " ".join(_parser("attention").format_help().split())
    assert "0 = the token embeddings, k = the output of block k" in embed and "-1, the final layer" in embed
    assert "block K's output is embed's --layers K" in attention and "-1, the last" in attention


def test_an_old_flag_runs_the_command_end_to_end(files, tmp_path, caplog):
    """``attention --layer`` and ``generate --max-length`` (the old names) give what the new ones do."""
    common = ["--checkpoint", str(files["mlm"]), "--fasta", str(files["fasta"]), "--id", "p1", "--head", "1"]
    with caplog.at_level(logging.WARNING):
        assert cli.main(["attention", *common, "--block", "2", "--out", str(tmp_path / "new.png")]) == 0
        assert cli.main(["attention", *common, "--layer", "2", "--out", str(tmp_path / "old.png")]) == 0
        gen = ["generate", "--checkpoint", str(files["clm"]), "--num", "2", "--device", "cpu", "--quiet"]
        assert cli.main([*gen, "--stop-at-residues", "9", "--out", str(tmp_path / "new.fasta")]) == 0
        assert cli.main([*gen, "--max-length", "9", "--out", str(tmp_path / "old.fasta")]) == 0
    assert (tmp_path / "new.csv").read_text() == (tmp_path / "old.csv").read_text()
    assert (tmp_path / "new.fasta").read_text() == (tmp_path / "old.fasta").read_text()
    deprecations = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(deprecations) == 2
    assert "--layer" in deprecations[0] and "--block" in deprecations[0]
    assert "--max-length" in deprecations[1] and "--stop-at-residues" in deprecations[1]


def test_no_command_shows_an_ambiguous_length_flag():
    """``--max-length`` and ``--context-length`` are gone from every help but as deprecated notes."""
    for command in cli.COMMANDS:
        text = " ".join(_parser(command).format_help().split())
        shown = text.replace("[formerly --max-length, deprecated]", "").replace(
            "[formerly --context-length, deprecated]", "").replace("[formerly --min-length, deprecated]", "")
        assert "--max-length" not in shown and "--context-length" not in shown and "--min-length" not in shown, command


def test_fetch_query_is_now_uniprot_query(caplog):
    """``--query`` meant a FASTA file in homologs, a record id in prepare and a UniProt query in fetch:
    fetch's is ``--uniprot-query`` now, the old name a deprecated alias."""
    with caplog.at_level(logging.WARNING):
        new = _parser("fetch").parse_args(["--out", "x.fasta.gz", "--uniprot-query", "organism_id:1"])
        assert not caplog.records
        old = _parser("fetch").parse_args(["--out", "x.fasta.gz", "--query", "organism_id:1"])
    assert new == old and new.uniprot_query == "organism_id:1"
    assert len(caplog.records) == 1 and "--uniprot-query" in caplog.records[0].getMessage()
