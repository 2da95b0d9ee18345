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
