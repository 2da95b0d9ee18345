"""Family inputs that used to be accepted with no meaning, or crashed (issue 36 items 5, 8, 12, 14, 17)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from protein_performer.cli import main
from protein_performer.corpus.families import column_profile, read_family, similarity_splits, sniff_family_format
from protein_performer.model import PerformerConfig, PerformerLM


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_an_all_lower_case_a3m_is_refused_and_a_lower_case_fasta_is_read_as_fasta(tmp_path):
    a3m = _write(tmp_path / "f.a3m", ">q\nmktayiakqr\n>h\nmktayikqr\n")
    with pytest.raises(ValueError, match=r"no aligned columns.*--family-format fasta"):
        read_family(a3m)
    plain = _write(tmp_path / "f.txt", ">q\nmktayiakqr\n>h\nmksayiakhr\n")
    assert sniff_family_format(plain) == "fasta"
    fam = read_family(plain)
    assert not fam.aligned and fam.sequences[0] == "MKTAYIAKQR"


def test_split_identity_fractions_and_pseudocount_out_of_range_are_refused(tmp_path):
    fam = read_family(_write(tmp_path / "f.a3m", ">q\nMKTAYIAKQR\n>h\nMKSAYIAKHR\n>g\nMRTAFIAKQR\n"))
    for bad in (1.5, -0.5, 0.0):
        with pytest.raises(ValueError, match="split identity must be in"):
            similarity_splits(fam, split_identity=bad)
    with pytest.raises(ValueError, match="sum to less than 1"):
        similarity_splits(fam, valid_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match="positive number"):
        column_profile(fam, pseudocount=float("nan"))
    out = tmp_path / "p"
    assert main(["prepare", str(tmp_path / "f.a3m"), "--family", "--split-identity", "1.5", "--out", str(out),
                 "--quiet"]) == 1
    assert not out.exists()


def test_a_stockholm_name_used_twice_in_one_block_is_named_not_called_ragged(tmp_path):
    sto = _write(tmp_path / "f.sto", "# STOCKHOLM 1.0\nq MKTAY\nh MKSAY\nh MRTAF\n//\n")
    with pytest.raises(ValueError, match=r"line 4: the name 'h' is used twice in one block"):
        read_family(sto)
    # interleaved blocks repeat every name once per block: accepted
    sto2 = _write(tmp_path / "g.sto", "# STOCKHOLM 1.0\nq MKT\nh MKS\n\nq AYI\nh AYV\n//\n")
    assert read_family(sto2).sequences == ["MKTAYI", "MKSAYV"]


def test_an_aligned_positions_model_with_unaligned_homologs_is_refused_in_one_line(tmp_path, capsys):
    from test_generate import save_checkpoint

    cfg = PerformerConfig(dim=16, depth=1, heads=2, nb_features=8, restart_positions=True, local_heads=1,
                          aligned_positions=True, segment_attention=True)
    torch.manual_seed(0)
    ckpt = save_checkpoint(PerformerLM(cfg), tmp_path / "m.ckpt", "mlm")
    wt = "MKTAYIAKQRLEWVGHPNDC"
    fasta = _write(tmp_path / "wt.fasta", f">wt\n{wt}\n")
    homologs = _write(tmp_path / "h.fasta", f">q\n{wt}\n>h\nMKSAYIAKHRLEWVGHPNDC\n>g\nMRTAFIAKQRLDWVGHPNEC\n")
    variants = _write(tmp_path / "v.csv", "mutant,fit\nK2R,1\nT3S,2\nA4G,3\n")
    out = tmp_path / "o.csv"
    assert main(["score-variants", "--checkpoint", str(ckpt), "--fasta", str(fasta), "--variants", str(variants),
                 "--homologs", str(homologs), "--score-col", "fit", "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "aligned_positions" in err and "Traceback" not in err and not out.exists()


TINY = """trainer:
  max_steps: 4
  val_check_interval: 2
  limit_val_batches: 2
  logger: false
model:
  config: {dim: 16, depth: 1, heads: 2, nb_features: 8, local_heads: 1, local_window: 4, restart_positions: true}
  warmup_steps: 1
data:
  mode: family
  window_tokens: 256
  batch_size: 1
  num_workers: 0
"""


def test_make_variants_keeps_an_earlier_run_and_names_its_checkpoint_truthfully(tmp_path, caplog):
    """Item 5: the workflow deleted an earlier run's checkpoint folder (a user's notes in it) without a
    word, and called last.ckpt 'best on the held-out homologs'."""
    from protein_performer.experiments.families import main as variants_main

    rng = np.random.default_rng(0)
    aa = "ACDEFGHIKLMNPQRSTVWY"
    core = "".join(rng.choice(list(aa), 40))
    lines = [f">q\n{core}"]
    for k in range(60):
        s = list(core)
        for i in rng.choice(40, 16, replace=False):
            s[i] = aa[rng.integers(20)]
        lines.append(f">m{k}\n{''.join(s)}")
    a3m = _write(tmp_path / "fam.a3m", "\n".join(lines) + "\n")
    fasta = _write(tmp_path / "wt.fasta", f">wt\n{core}\n")
    rows = ["mutant,fit"] + [f"{core[i]}{i + 1}{aa[(aa.index(core[i]) + 3) % 20]},{rng.normal():.3f}" for i in range(20)]
    variants = _write(tmp_path / "dms.csv", "\n".join(rows) + "\n")
    config = _write(tmp_path / "tiny.yaml", TINY)
    out = tmp_path / "out"
    notes = out / "run" / "checkpoints" / "notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("my notes")
    argv = ["--homologs", str(a3m), "--fasta", str(fasta), "--variants", str(variants), "--offset-idx", "1",
            "--score-col", "fit", "--config", str(config), "--steps", "4", "--contexts", "1", "--bootstrap", "0",
            "--out", str(out)]
    assert variants_main(argv) == 0
    assert notes.read_text() == "my notes"
    summary = json.loads((out / "summary.json").read_text())
    best = sorted((out / "run" / "checkpoints").glob("best-*.ckpt"))
    assert best and summary["checkpoint"].endswith(best[-1].name)
    assert summary["checkpoint_kind"] == "best on the held-out homologs" and summary["last_step"] == 4
    assert "recipe" in summary and (out / "summary.md").read_text().count("Recipe (chosen from the family)") == 1
    # a second run reports the finished one instead of deleting it
    caplog.clear()
    with caplog.at_level("INFO"):
        assert variants_main(argv) == 0
    assert "holds a finished run" in caplog.text and "$ protein-performer fit" not in caplog.text
    assert notes.read_text() == "my notes"


def test_overlapping_homolog_sets_never_train_on_each_others_held_out_members(tmp_path):
    from protein_performer.corpus.prepare import FamilyOptions, SplitFractions, prepare
    from protein_performer.corpus.prepare_family import read_split_family
    from protein_performer.corpus.shards import open_split

    rng = np.random.default_rng(2)
    aa = "ACDEFGHIKLMNPQRSTVWY"

    def members(n: int, seed_core: str) -> list[str]:
        out = []
        for _ in range(n):
            s = list(seed_core)
            for i in rng.choice(len(s), len(s) // 2, replace=False):
                s[i] = aa[rng.integers(20)]
            out.append("".join(s))
        return out

    core = "".join(rng.choice(list(aa), 40))
    shared = members(40, core)  # in both sets, under other ids
    a = _write(tmp_path / "a.a3m", f">qa\n{core}\n" + "".join(f">a{k}\n{s}\n" for k, s in enumerate(shared)))
    b = _write(tmp_path / "b.a3m", f">qb\n{core[::-1]}\n" + "".join(f">b{k}\n{s}\n" for k, s in enumerate(shared)))
    options, fractions = FamilyOptions(), SplitFractions(valid=0.2, test=0.1)
    held = {s for path in (a, b) for s, split in zip(*(lambda f, sp: (f.sequences, sp))(
        *read_split_family(path, options, fractions))) if split != "train"}
    assert held  # the ids differ, so the two sets hold out different members
    prepare([a, b], tmp_path / "p", family=options, valid_fraction=0.2, test_fraction=0.1)
    train = open_split(tmp_path / "p", "train")
    from protein_performer.alphabet import ALPHABET

    trained = {ALPHABET.decode(train.protein(i)) for i in range(len(train))}
    assert not trained & held


def test_mixing_aligned_and_unaligned_sets_says_which_is_which(tmp_path, capsys):
    a = _write(tmp_path / "a.a3m", ">q\nMKTAYIAKQR\n>h\nMKSAYIAKHR\n")
    b = _write(tmp_path / "b.fasta", ">q\nMKTAYIAKQRLE\n>h\nMKSAYIAKHRLEGW\n")
    assert main(["prepare", str(a), str(b), "--family", "--family-format", "auto", "--out", str(tmp_path / "p"),
                 "--quiet"]) == 1
    assert "an unaligned homolog set among aligned ones" in capsys.readouterr().err


def test_a_second_score_variants_into_the_same_out_is_refused(tmp_path, capsys):
    from protein_performer.outputs import locked

    wt = "MKTAYIAKQRLEWVGHPNDC"
    fasta = _write(tmp_path / "wt.fasta", f">wt\n{wt}\n")
    homologs = _write(tmp_path / "h.a3m", f">q\n{wt}\n>h\nMKSAYIAKHRLEWVGHPNDC\n>g\nMRTAFIAKQRLDWVGHPNEC\n")
    variants = _write(tmp_path / "v.csv", "mutant,fit\nK2R,1\nT3S,2\nA4G,3\n")
    out = tmp_path / "o.csv"
    with locked(out, "--out"):  # another writer holds it
        assert main(["score-variants", "--homologs", str(homologs), "--fasta", str(fasta), "--variants",
                     str(variants), "--score-col", "fit", "--out", str(out), "--quiet"]) == 1
    assert "being written by another" in capsys.readouterr().err and not out.exists()
