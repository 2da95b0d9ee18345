"""Bad input and faults, fed to every command (issue 13): each test failed before its fix.

Items: 1 diverged training, 2 damaged prepared data, 4 non-ASCII letters, 5 Lightning errors,
6 output paths, 7 empty input, 8 leftovers, 9 fetch limits, 10 messages. Item 3 (FAVOR+ at
large norms) is tested in test_attention.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_utils import random_sequences, write_fasta
from protein_performer import cli
from protein_performer.alphabet import ALPHABET
from protein_performer.corpus import prepare as prep
from protein_performer.corpus.fasta import CleaningPolicy, read_records
from protein_performer.corpus.shards import DamagedDataset, open_split

NON_ASCII = ">x\nMKVÄLA\n"


@pytest.fixture
def small_fasta(tmp_path) -> Path:
    """40 random proteins (ids p0..p39): enough for three non-empty splits at 30% / 30%."""
    return write_fasta(tmp_path / "small.fasta",
                       [(f"p{i}", s) for i, s in enumerate(random_sequences(40, 20, 60, seed=1))])


def _prepare(fasta: Path, out: Path, **kwargs) -> dict:
    return prep.prepare([fasta], out, valid_fraction=0.3, test_fraction=0.3, **kwargs)


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


# ------------------------------------------------------------------ 2. damaged prepared dataset


def test_truncated_shard_is_refused_on_open_and_by_prepare(small_fasta, tmp_path, capsys, ckpt):
    out = tmp_path / "ds"
    manifest = _prepare(small_fasta, out)
    assert set(manifest["splits"]["test"]["files"]) == {"tokens.u8", "offsets.i64", "ids.txt"}
    tokens = out / "test" / "tokens.u8"
    with open(tokens, "r+b") as fh:
        fh.truncate(tokens.stat().st_size // 2)
    with pytest.raises(DamagedDataset, match=r"test/tokens.u8: damaged prepared dataset.*--overwrite"):
        open_split(out, "test")
    with pytest.raises(DamagedDataset, match="--overwrite"):
        _prepare(small_fasta, out)  # not "up to date"
    code, err = _cli(capsys, "score", "--checkpoint", str(ckpt), "--data-dir", str(out))
    assert code == 1 and "test/tokens.u8: damaged prepared dataset" in err
    assert _prepare(small_fasta, out, overwrite=True) == read_manifest_of(out)
    assert open_split(out, "test").offsets[-1] == tokens.stat().st_size


def read_manifest_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_flipped_byte_fails_the_checksum_in_prepare(small_fasta, tmp_path):
    out = tmp_path / "ds"
    _prepare(small_fasta, out)
    tokens = out / "train" / "tokens.u8"
    data = bytearray(tokens.read_bytes())
    data[5] = (data[5] + 1) % 20 + 4
    tokens.write_bytes(bytes(data))
    open_split(out, "train")  # sizes still agree: opening is cheap and does not read every byte
    with pytest.raises(DamagedDataset, match=r"train/tokens.u8: .*sha256"):
        _prepare(small_fasta, out)


def test_truncated_train_split_stops_fit_setup_with_one_line(small_fasta, tmp_path, capsys):
    out = tmp_path / "ds"
    _prepare(small_fasta, out)
    with open(out / "train" / "offsets.i64", "r+b") as fh:
        fh.truncate(20)
    from protein_performer.datamodule import ProteinDataModule

    with pytest.raises(DamagedDataset, match="offsets.i64"):
        ProteinDataModule(str(out), max_length=32).setup("fit")


# ------------------------------------------------------------------ 4. one character, one X


def test_non_ascii_letter_becomes_one_x(tmp_path):
    fasta = tmp_path / "u.fasta"
    fasta.write_text(NON_ASCII, encoding="utf-8")
    (record,) = read_records(fasta, CleaningPolicy(unknown="x"))
    assert record.sequence == "MKVXLA" and len(record.tokens) == 6
    with pytest.raises(ValueError, match=r"record 1 \('x'\): character 'Ä' at position 4"):
        list(read_records(fasta, CleaningPolicy(unknown="error")))
    manifest = prep.prepare([fasta], tmp_path / "ds", valid_fraction=0, test_fraction=0,
                            policy=CleaningPolicy(unknown="x"))
    assert manifest["residues"] == 6 and manifest["counts"]["unknown_to_x"] == 1


# ------------------------------------------------------------------ 6. output paths, checked first


def test_prepare_out_paths_are_checked_before_the_work(small_fasta, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = _cli(capsys, "prepare", str(small_fasta), "--out", str(blocker / "sub"), "--no-progress")
    assert code == 1 and "is a file, not a folder" in err and "Traceback" not in err
    monkeypatch.chdir(tmp_path)
    code, err = _cli(capsys, "prepare", str(small_fasta), "--out", ".", "--overwrite", "--no-progress")
    assert code == 1 and "current directory" in err
    assert small_fasta.is_file()
    # A read-only location (os.access says no; root ignores chmod, so ask the check directly).
    monkeypatch.setattr(prep.os, "access", lambda path, mode: False)
    code, err = _cli(capsys, "prepare", str(small_fasta), "--out", str(tmp_path / "ro" / "ds"), "--no-progress")
    assert code == 1 and "cannot write in" in err and "read-only" in err
    assert not (tmp_path / "ro").exists()


def test_prepare_overwrite_never_deletes_its_input(small_fasta, tmp_path):
    with pytest.raises(ValueError, match="holds an input file"):
        prep.prepare([small_fasta], tmp_path, overwrite=True)
    assert small_fasta.is_file()


# ------------------------------------------------------------------ 7. empty input


def test_headers_only_fasta_fails_prepare(tmp_path, capsys):
    fasta = tmp_path / "headers.fasta"
    fasta.write_text(">a\n>b\n>c\n")
    code, err = _cli(capsys, "prepare", str(fasta), "--out", str(tmp_path / "ds"), "--no-progress")
    assert code == 1 and f"no sequences in {fasta}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["headers.fasta"]


# ------------------------------------------------------------------ 8. leftovers


def test_partials_of_dead_processes_are_removed(small_fasta, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    left = tmp_path / f".ds.partial-{dead_pid}-0123abcd"
    (left / "train").mkdir(parents=True)
    (left / "train" / "tokens.u8").write_bytes(b"\0" * 1000)
    live = tmp_path / f".ds.partial-{__import__('os').getpid()}-89abcdef"  # this process: alive
    live.mkdir()
    _prepare(small_fasta, tmp_path / "ds")
    assert not left.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".ds.partial-" + live.name.split("-", 1)[1],
                                                                 "ds", "small.fasta"])


def test_non_ascii_letter_is_one_x_in_embed_score_and_similarity(tmp_path, ckpt, capsys, caplog, monkeypatch):
    fasta = tmp_path / "u.fasta"
    fasta.write_text(NON_ASCII + ">y\nACDEFGHIKLMNPQRSTVWY\n", encoding="utf-8")
    code, _ = _cli(capsys, "embed", "--checkpoint", str(ckpt), "--fasta", str(fasta), "--out",
                   str(tmp_path / "e.npz"), "--unknown", "x", "--device", "cpu")
    assert code == 0
    from protein_performer.embed import read_embeddings

    assert read_embeddings(tmp_path / "e.npz")["x"].sequence == "MKVXLA"
    assert cli.main(["score", "--checkpoint", str(ckpt), "--fasta", str(fasta), "--unknown", "x",
                     "--bootstrap", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["unknown_to_x"] == 1
    assert "1 characters that are not amino-acid codes were scored as X" in caplog.text
    from protein_performer.analysis import similarity

    seen = []
    original = similarity.analyse

    def spy(model, sequences, **kwargs):
        seen.extend(sequences := list(sequences))
        return original(model, sequences, **kwargs)

    monkeypatch.setattr(similarity, "analyse", spy)
    assert cli.main(["similarity", "--checkpoint", str(ckpt), "--fasta", str(fasta), "--out",
                     str(tmp_path / "sim"), "--unknown", "x", "--device", "cpu"]) == 0
    assert seen == ["MKVXLA", "ACDEFGHIKLMNPQRSTVWY"]


# ------------------------------------------------------------------ 6-8. embed and similarity outputs


def test_embed_and_similarity_check_out_before_the_work(tmp_path, ckpt, capsys):
    fasta = write_fasta(tmp_path / "in.fasta", [("a", "MKVLA")])
    before = fasta.read_bytes()
    code, err = _cli(capsys, "embed", "--checkpoint", str(ckpt), "--fasta", str(fasta), "--out", str(fasta))
    assert code == 1 and "is the input file" in err and fasta.read_bytes() == before
    other = tmp_path / "notes.txt"
    other.write_text("keep")
    code, err = _cli(capsys, "embed", "--checkpoint", str(ckpt), "--fasta", str(fasta), "--out", str(other))
    assert code == 1 and "not an HDF5 file" in err and other.read_text() == "keep"
    code, err = _cli(capsys, "similarity", "--checkpoint", str(ckpt), "--fasta", str(fasta), "--out", str(other))
    assert code == 1 and "is a file" in err and "Traceback" not in err


@pytest.mark.parametrize("suffix", [".h5", ".npz", "_pt"])
def test_embed_of_headers_only_fails_and_leaves_nothing(tmp_path, ckpt, capsys, suffix):
    fasta = tmp_path / "headers.fasta"
    fasta.write_text(">a\n>b\n")
    out = tmp_path / f"e{suffix}"
    fmt = ["--format", "pt"] if suffix == "_pt" else []
    code, err = _cli(capsys, "embed", "--checkpoint", str(ckpt), "--fasta", str(fasta), "--out", str(out), *fmt)
    assert code == 1 and f"no sequences in {fasta}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["headers.fasta"]


def test_failed_embed_leaves_no_empty_h5(tmp_path, ckpt, capsys):
    fasta = tmp_path / "bad.fasta"
    fasta.write_text(">a\nMKJLA\n")
    code, err = _cli(capsys, "embed", "--checkpoint", str(ckpt), "--fasta", str(fasta), "--out",
                     str(tmp_path / "e.h5"))
    assert code == 1 and "'J'" in err and "--unknown=x" in err
    assert not (tmp_path / "e.h5").exists()


# ------------------------------------------------------------------ 1 (score) and 10. checkpoints, messages


@pytest.fixture
def nan_ckpt(ckpt, tmp_path) -> Path:
    import torch

    state = torch.load(ckpt, weights_only=True)
    name = next(k for k, v in state["state_dict"].items() if k.startswith("model.") and v.is_floating_point())
    state["state_dict"][name] = torch.full_like(state["state_dict"][name], float("nan"))
    torch.save(state, tmp_path / "nan.ckpt")
    return tmp_path / "nan.ckpt"


def test_score_on_a_nan_model_fails(nan_ckpt, tmp_path, capsys):
    fasta = write_fasta(tmp_path / "in.fasta", [("a", "MKVLAGAGALLA")])
    code = cli.main(["score", "--checkpoint", str(nan_ckpt), "--fasta", str(fasta), "--bootstrap", "0"])
    out, err = capsys.readouterr()
    assert code == 1 and "NaN" not in out and "are NaN or infinite" in err and "lower --model.lr" in err


def test_checkpoint_errors_never_advise_unsafe_loading(tmp_path, capsys):
    import argparse

    import torch

    torch.save({"state_dict": {}, "x": argparse.Namespace(a=1)}, tmp_path / "pickled.ckpt")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    fasta = write_fasta(tmp_path / "in.fasta", [("a", "MKVLA")])
    for name, expected in (("pickled.ckpt", "other than tensors"), ("empty.ckpt", "empty file (0 bytes)")):
        code, err = _cli(capsys, "score", "--checkpoint", str(tmp_path / name), "--fasta", str(fasta))
        assert code == 1 and name in err and expected in err
        assert "weights_only=False" not in err and "weights_only` set to `False" not in err


def test_unknown_and_device_have_one_default_everywhere():
    import argparse
    import importlib

    defaults = {}
    for name in ("prepare", "embed", "score", "similarity", "attention"):
        parser = argparse.ArgumentParser()
        importlib.import_module(cli.COMMANDS[name][0]).add_arguments(parser)
        options = {a.dest: a.default for a in parser._actions}
        defaults[name] = (options.get("unknown", "n/a"), options.get("device", "n/a"))
    assert {d[0] for n, d in defaults.items() if n != "attention"} == {"error"}, defaults
    assert {d[1] for n, d in defaults.items() if n != "prepare"} == {None}, defaults


def test_plot_embeddings_does_not_advise_a_missing_flag(tmp_path, capsys):
    bogus = tmp_path / "emb.h5"
    bogus.write_text("not embeddings")
    code, err = _cli(capsys, "plot-embeddings", "--embeddings", str(bogus), "--out", str(tmp_path / "v.png"))
    assert code == 1 and "emb.h5" in err and "--format" not in err
