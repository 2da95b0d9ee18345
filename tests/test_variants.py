"""Variant scoring: mutant parsing and its errors, windows, each strategy against its definition,
the baselines on the real TEM-1 scan, and the command end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from protein_performer.alphabet import ALPHABET
from protein_performer.cli import main
from protein_performer.model import PerformerConfig, PerformerLM
from protein_performer.variants import (
    InvalidVariant,
    Substitution,
    assign_windows,
    blosum62_scores,
    parse_mutant,
    read_variants,
    score_mutants,
    spearman,
)
from shared_data import data_path

DATA = data_path("variants")  # the tests that read it take the variants_dir fixture (conftest)
TEM1_CSV, TEM1_FASTA, TEM1_OFFSET = DATA / "BLAT_ECOLX_Ranganathan2015.csv", DATA / "BLAT_ECOLX_Ranganathan2015.fasta", 24
SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDWUAFEHL".replace("U", "S")


@pytest.fixture(scope="module")
def tem1(variants_dir) -> tuple[str, Path]:
    from protein_performer.variants import read_wild_type

    return read_wild_type(TEM1_FASTA), TEM1_CSV


def tiny(causal: bool, seed: int = 0, **config) -> PerformerLM:
    torch.manual_seed(seed)
    model = PerformerLM(PerformerConfig(dim=16, depth=2, heads=2, nb_features=8, dropout=0.0, causal=causal, **config))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0.0, 0.2)  # large enough that context matters
    return model.eval()


# --------------------------------------------------------------------------- parsing


def test_mutants_parse_with_the_offset_and_multi_mutants():
    assert parse_mutant("K3A", "MKTAY", 2) == (Substitution("K", 1, "A"),)
    assert parse_mutant("M1A:y5w", "MKTAY", 1) == (Substitution("M", 0, "A"), Substitution("Y", 4, "W"))


@pytest.mark.parametrize("text, message", [
    ("K2", "is not a substitution like H24C"),
    ("", "empty mutant"),
    ("M1J", "'J' in 'M1J' is not one of the 20 standard amino acids"),
    ("Y9A", "position 9 of 'Y9A' is outside the sequence .positions 1..5 with --offset-idx 1.; check --offset-idx"),
    ("A2C", "wild-type letter A of 'A2C' does not match the sequence, which has K at position 2"),
    ("M1A:M1C", "changes one position twice"),
])
def test_each_bad_mutant_gets_its_own_error(text, message):
    with pytest.raises(InvalidVariant, match=message):
        parse_mutant(text, "MKTAY", 1)


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["mutant", "fitness"])
        w.writerows(rows)
    return path


def test_a_bad_row_stops_the_read_naming_row_and_fix_unless_skipped(tmp_path):
    path = _write_csv(tmp_path / "v.csv", [("M1A", "0.1"), ("K2C", "0.2"), ("T3Q", "0.3"), ("X4A", "0.4")])
    with pytest.raises(InvalidVariant, match=r"v.csv: row 3 \(line 4, mutant 'T3Q'\): wild-type letter T.*--skip-invalid"):
        read_variants(path, "MKAAY")
    table = read_variants(path, "MKAAY", skip_invalid=True)
    assert [m is None for m in table.mutants] == [False, False, True, True]
    assert len(table.problems) == 2 and "row 4" in table.problems[1]


def test_the_whole_tem1_scan_parses_with_offset_24_and_blosum62_matches_the_reference(tem1):
    sequence, path = tem1
    table = read_variants(path, sequence, offset=TEM1_OFFSET)
    assert len(table.mutants) == 4996 and not table.problems
    with pytest.raises(InvalidVariant, match="check --offset-idx"):
        read_variants(path, sequence, offset=1)
    measured = np.array([float(r[table.header.index("2500")]) for r in table.rows])
    rho = spearman(blosum62_scores(table.mutants), measured, bootstrap=200)
    assert rho.spearman == pytest.approx(0.35, abs=0.01)  # ESM's reference point for BLOSUM62
    assert rho.ci95[0] < rho.spearman < rho.ci95[1]


def test_spearman_is_scipys_and_its_interval_covers_it():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    y = x + rng.normal(size=300)
    y[5] = np.nan  # missing measurements are left out
    r = spearman(x, y, bootstrap=500)
    assert r.n == 299 and r.spearman == pytest.approx(spearmanr(x[~np.isnan(y)], y[~np.isnan(y)])[0], abs=1e-12)
    assert r.ci95[0] < r.spearman < r.ci95[1]


# --------------------------------------------------------------------------- windows and strategies


@pytest.mark.parametrize("causal", [False, True])
def test_windows_cover_every_token_from_inside_with_context(causal):
    for n, size in [(10, 16), (100, 16), (101, 24), (263, 64)]:
        starts, owner = assign_windows(n, size, causal)
        s = np.asarray(starts)[owner]
        i = np.arange(n)
        assert ((s <= i) & (i < s + size)).all()
        if n > size and causal:
            assert ((i - s)[size:] >= size // 2 - 1).all()  # a long prefix
        if n > size and not causal:
            inner = (i >= size // 2) & (i < n - size // 2)
            assert (np.minimum(i - s, s + size - 1 - i)[inner] >= size // 4 - 1).all()  # context both sides


@pytest.mark.parametrize("causal", [False, True])
def test_windowed_scores_equal_whole_sequence_scores_for_a_short_range_model(causal):
    # Two layers of local attention within 2 residues see 4 residues each way: windows of 32 tokens
    # (stride 16) give every position all of that context, so windowing changes nothing.
    model = tiny(causal, local_heads=2, local_window=2)
    mut = lambda i, to: f"{SEQ[i - 1]}{i}{to}"  # noqa: E731
    mutants = [parse_mutant(m, SEQ, 1) for m in (mut(1, "A"), mut(58, "C"), f"{mut(120, 'W')}:{mut(150, 'G')}",
                                                 mut(200, "P"), mut(len(SEQ), "A"))]
    strategies = ["masked-marginals"] if causal else ["masked-marginals", "wt-marginals"]
    for strategy in strategies:
        whole = score_mutants(model, SEQ, mutants, causal=causal, strategy=strategy, window_tokens=1024)
        windowed = score_mutants(model, SEQ, mutants, causal=causal, strategy=strategy, window_tokens=32)
        np.testing.assert_allclose(windowed, whole, rtol=0, atol=1e-4)


def test_the_old_keyword_max_length_still_gives_window_tokens_and_warns():
    model = tiny(False, local_heads=2, local_window=2)
    mutants = [parse_mutant(f"{SEQ[57]}58C", SEQ, 1)]
    want = score_mutants(model, SEQ, mutants, causal=False, window_tokens=32)
    with pytest.warns(DeprecationWarning, match=r"score_mutants\(max_length=...\) is deprecated.*window_tokens"):
        got = score_mutants(model, SEQ, mutants, causal=False, max_length=32)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match="give window_tokens"):
        score_mutants(model, SEQ, mutants, causal=False, max_length=32, window_tokens=32)


def _log_probs(model, tokens):
    with torch.no_grad():
        return model(torch.tensor(tokens, dtype=torch.long)[None]).logits[0].double().log_softmax(-1)


def test_masked_strategies_follow_their_definitions():
    model, seq = tiny(False), SEQ[:40]
    mutants = [parse_mutant("K2C", seq, 1), parse_mutant("T3A", seq, 1), parse_mutant("K2C:T3A", seq, 1), None]
    aa = lambda c: int(ALPHABET.encode(c)[0])  # noqa: E731
    wt = ALPHABET.frame(seq)
    mm = score_mutants(model, seq, mutants, causal=False, strategy="masked-marginals")
    masked = wt.copy()
    masked[2] = ALPHABET.mask_idx
    lp = _log_probs(model, masked)[2]
    assert mm[0] == pytest.approx(float(lp[aa("C")] - lp[aa("K")]), abs=1e-9)
    assert mm[2] == pytest.approx(mm[0] + mm[1], abs=1e-12) and np.isnan(mm[3])
    wm = score_mutants(model, seq, mutants, causal=False, strategy="wt-marginals")
    lp = _log_probs(model, wt)[2]
    assert wm[0] == pytest.approx(float(lp[aa("C")] - lp[aa("K")]), abs=1e-9)
    pp = score_mutants(model, seq, mutants[:1], causal=False, strategy="pseudo-ppl")

    def pll(tokens):
        total = 0.0
        for i in range(1, len(tokens) - 1):
            x = tokens.copy()
            x[i] = ALPHABET.mask_idx
            total += float(_log_probs(model, x)[i, tokens[i]])
        return total

    mutant = ALPHABET.frame(seq[:1] + "C" + seq[2:])
    assert pp[0] == pytest.approx(pll(mutant) - pll(wt), abs=1e-8)


def test_causal_scores_are_log_likelihood_ratios_of_whole_sequences():
    model, seq = tiny(True), SEQ[:50]
    mutants = [parse_mutant(f"K2C:{seq[29]}30W", seq, 1)]

    def ll(s):
        tokens = ALPHABET.frame(s)
        lp = _log_probs(model, tokens)[:-1]
        return float(lp.gather(-1, torch.tensor(tokens[1:], dtype=torch.long)[:, None]).sum())

    mutant = seq[:1] + "C" + seq[2:29] + "W" + seq[30:]
    score = score_mutants(model, seq, mutants, causal=True)
    assert score[0] == pytest.approx(ll(mutant) - ll(seq), abs=1e-8)


# --------------------------------------------------------------------------- the command


def test_score_variants_command_on_a_tem1_slice(tmp_path, tem1):
    from test_generate import save_checkpoint

    lines = TEM1_CSV.read_text(encoding="utf-8-sig").splitlines()
    rows = [lines[0], *lines[1:3000:37]]  # a slice: header and 82 rows across the protein
    slice_path = tmp_path / "tem1_slice.csv"
    slice_path.write_text("\n".join(rows) + "\n")
    masked = save_checkpoint(tiny(False), tmp_path / "masked.ckpt", "mlm")
    causal = save_checkpoint(tiny(True), tmp_path / "causal.ckpt", "clm")
    out = tmp_path / "scored.csv"
    argv = ["score-variants", "--checkpoint", str(masked), str(causal), "--fasta", str(TEM1_FASTA),
            "--variants", str(slice_path), "--offset-idx", "24", "--score-col", "2500", "--bootstrap", "200",
            "--window-tokens", "128", "--plot", str(tmp_path / "dms.png"), "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    with open(out, newline="") as fh:
        scored = list(csv.reader(fh))
    original = list(csv.reader(rows))
    assert [r[:-2] for r in scored] == original  # the input, verbatim
    assert scored[0][-2:] == ["masked", "causal"]
    assert all(r[-1] and r[-2] for r in scored[1:])
    summary = json.loads(out.with_suffix(".json").read_text())
    assert [m["strategy"] for m in summary["models"]] == ["masked-marginals", "log-likelihood-ratio"]
    assert summary["rows"] == 82 and summary["invalid_rows"] == 0
    assert set(summary["baselines"]) == {"blosum62", "unigram"}
    for entry in [*summary["models"], *summary["baselines"].values()]:
        assert -1 <= entry["spearman"] <= 1 and entry["ci95"][0] <= entry["spearman"] <= entry["ci95"][1]
    assert (tmp_path / "dms.png").stat().st_size > 0
    matrix = np.loadtxt(tmp_path / "dms.matrix.csv", delimiter=",", skiprows=1)
    assert matrix.shape == (263, 20)


def test_score_variants_command_reports_a_bad_row_or_counts_skips(tmp_path, capsys):
    from test_generate import save_checkpoint

    ckpt = save_checkpoint(tiny(False), tmp_path / "m.ckpt", "mlm")
    fasta = tmp_path / "wt.fasta"
    fasta.write_text(">wt\nMKTAYIAKQR\n")
    variants = _write_csv(tmp_path / "v.csv", [("K2A", "1"), ("K2", "2"), ("A4C", "3")])
    base = ["score-variants", "--checkpoint", str(ckpt), "--fasta", str(fasta), "--variants", str(variants),
            "--out", str(tmp_path / "o.csv"), "--device", "cpu"]
    assert main(base) == 1
    err = capsys.readouterr().err
    assert "row 2 (line 3, mutant 'K2')" in err and "--skip-invalid" in err
    assert main([*base, "--skip-invalid", "--score-col", "fitness", "--bootstrap", "0"]) == 0
    out = list(csv.reader(open(tmp_path / "o.csv")))
    assert len(out) == 4 and out[1][-1] and out[2][-1] == "" and out[3][-1]
    assert json.loads((tmp_path / "o.json").read_text())["invalid_rows"] == 1


def _masked_ckpt(tmp_path: Path) -> Path:
    from test_generate import save_checkpoint

    return save_checkpoint(tiny(False), tmp_path / "m.ckpt", "mlm")


def test_plot_never_replaces_the_input_csv_or_another_output(tmp_path, capsys):
    """Issue 24 item 1: `--variants dms.csv --plot dms.png` used to replace the input with the matrix."""
    fasta = tmp_path / "wt.fasta"
    fasta.write_text(">wt\nMKTAYIAKQR\n")
    variants = _write_csv(tmp_path / "dms.csv", [("K2A", "1"), ("T3W", "2"), ("Q9E", "3")])
    before = variants.read_bytes()
    base = ["score-variants", "--checkpoint", str(_masked_ckpt(tmp_path)), "--fasta", str(fasta),
            "--variants", str(variants), "--device", "cpu", "--plot", str(tmp_path / "dms.png")]
    assert main([*base, "--out", str(tmp_path / "scored.csv")]) == 0
    assert variants.read_bytes() == before
    assert np.loadtxt(tmp_path / "dms.matrix.csv", delimiter=",", skiprows=1).shape == (10, 20)
    # an existing output is replaced only with --overwrite; an output may not be another output
    assert main([*base, "--out", str(tmp_path / "scored.csv")]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "dms.matrix.csv"), "--overwrite"]) == 1
    assert "dms.matrix.csv is also --out" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "scored.csv"), "--overwrite"]) == 0
    assert variants.read_bytes() == before


def test_outputs_may_go_into_folders_that_do_not_exist_yet(tmp_path):
    """--out, its summary and --plot (with its matrix) create their missing parent folders."""
    fasta = tmp_path / "wt.fasta"
    fasta.write_text(">wt\nMKTAYIAKQR\n")
    variants = _write_csv(tmp_path / "dms.csv", [("K2A", "1"), ("T3W", "2"), ("Q9E", "3")])
    out, plot = tmp_path / "new" / "deeper" / "scored.csv", tmp_path / "figures" / "dms.png"
    assert main(["score-variants", "--checkpoint", str(_masked_ckpt(tmp_path)), "--fasta", str(fasta),
                 "--variants", str(variants), "--device", "cpu", "--score-col", "fitness", "--bootstrap", "0",
                 "--out", str(out), "--plot", str(plot)]) == 0
    assert len(list(csv.reader(open(out)))) == 4
    assert json.loads(out.with_suffix(".json").read_text())["rows"] == 3
    assert plot.stat().st_size > 0 and plot.with_suffix(".matrix.csv").is_file()


def test_a_row_with_more_fields_than_the_header_is_an_error(tmp_path, capsys):
    """Issue 24 item 3: `H24C,P25A,0.4` (an unquoted multi-mutant) was scored as H24C."""
    fasta = tmp_path / "wt.fasta"
    fasta.write_text(">wt\nMKTAYIAKQR\n")
    variants = tmp_path / "v.csv"
    variants.write_text("mutant,fitness\nK2A,1\nK2A,T3W,0.4\nQ9E,3\n")
    argv = ["score-variants", "--checkpoint", str(_masked_ckpt(tmp_path)), "--fasta", str(fasta),
            "--variants", str(variants), "--device", "cpu", "--out", str(tmp_path / "o.csv")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "row 2 (line 3, mutant 'K2A')" in err and "3 fields for 2 columns" in err and "H24C:P25A" in err
    assert main([*argv, "--skip-invalid", "--score-col", "fitness", "--bootstrap", "0"]) == 0
    assert json.loads((tmp_path / "o.json").read_text())["invalid_rows"] == 1


def test_a_non_numeric_score_column_is_an_error_naming_it(tmp_path, capsys):
    """Issue 24 item 7: `--score-col mutant` gave 'Spearman nan on 0 rows' and exit 0."""
    fasta = tmp_path / "wt.fasta"
    fasta.write_text(">wt\nMKTAYIAKQR\n")
    variants = _write_csv(tmp_path / "v.csv", [("K2A", "1"), ("T3W", "2"), ("Q9E", "3")])
    argv = ["score-variants", "--checkpoint", str(_masked_ckpt(tmp_path)), "--fasta", str(fasta),
            "--variants", str(variants), "--device", "cpu", "--out", str(tmp_path / "o.csv"), "--score-col", "mutant"]
    assert main(argv) == 1
    assert "--score-col 'mutant' is not numeric (row 1: 'K2A')" in capsys.readouterr().err
