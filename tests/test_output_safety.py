"""One output rule for every command (issue 36): an output is never an input, an existing one is
replaced only with ``--overwrite`` and ``--overwrite`` replaces only what the command wrote; one
process at a time writes an output; a full disk says ``no space left on <folder>`` and leaves
nothing partial; everything that can be checked is checked before the work. Each test failed
before its fix; the item numbers are the issue's."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_utils import random_sequences, write_fasta
from protein_performer import cli, outputs
from protein_performer.corpus import paralogs
from protein_performer.corpus import prepare as prep

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def _cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.fixture
def fasta(tmp_path) -> Path:
    return write_fasta(tmp_path / "in.fasta", [(f"p{i}", s) for i, s in enumerate(random_sequences(6, 20, 40))])


@pytest.fixture
def big_fasta(tmp_path) -> Path:
    """40 proteins (p0..p39): three non-empty splits at 30% / 30%."""
    return write_fasta(tmp_path / "big.fasta", [(f"p{i}", s) for i, s in enumerate(random_sequences(40, 20, 60, 1))])


def _mutants(base: str, n: int, rate: float, rng: np.random.Generator) -> list[str]:
    letters = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    out = []
    for _ in range(n):
        seq = np.array(list(base))
        hit = rng.random(len(seq)) < rate
        seq[hit] = rng.choice(letters, size=int(hit.sum()))
        out.append("".join(seq))
    return out


@pytest.fixture
def paralog_db(tmp_path) -> Path:
    """Two families of 6 members (~75% identity to their first member) with ids F0_0.. and F1_0.."""
    pytest.importorskip("pyhmmer")
    rng = np.random.default_rng(0)
    records = []
    for f, base in enumerate(random_sequences(2, 120, 120, seed=5)):
        records += [(f"F{f}_{i}", s) for i, s in enumerate([base, *_mutants(base, 5, 0.25, rng)])]
    return write_fasta(tmp_path / "db.fasta", records)


def _paralogs(db: Path, out: Path, *extra: str) -> list[str]:
    return ["paralogs", "--db", str(db), "--out-dir", str(out), "--quiet", "--min-members", "3", *extra]


# ------------------------------------------------------------------ 1. an output is never an input


def test_score_out_is_never_an_input_and_never_replaced_without_overwrite(tmp_path, ckpt, fasta, capsys):
    ckpt_bytes, fasta_bytes = ckpt.read_bytes(), fasta.read_bytes()
    base = ["score", "--checkpoint", ckpt, "--fasta", fasta, "--device", "cpu", "--bootstrap", "0", "--quiet"]
    for target in (fasta, ckpt):
        code, err = _cli(capsys, *base, "--out", target, "--overwrite")
        assert code == 1 and "is the input file" in err and "Traceback" not in err, err
    assert ckpt.read_bytes() == ckpt_bytes and fasta.read_bytes() == fasta_bytes
    out = tmp_path / "s.json"
    out.write_text("mine\n")
    code, err = _cli(capsys, *base, "--out", out)
    assert code == 1 and "already exists; use --overwrite" in err and out.read_text() == "mine\n"
    assert _cli(capsys, *base, "--out", out, "--overwrite")[0] == 0
    assert '"accuracy"' in out.read_text()


def test_similarity_replaces_its_files_only_with_overwrite_and_keeps_others(tmp_path, ckpt, fasta, capsys):
    out = tmp_path / "sim"
    out.mkdir()
    (out / "similarity.csv").write_text("mine\n")
    (out / "notes.txt").write_text("keep me\n")
    base = ["similarity", "--checkpoint", ckpt, "--fasta", fasta, "--out", out, "--device", "cpu", "--quiet"]
    code, err = _cli(capsys, *base)
    assert code == 1 and "similarity.csv already exists; use --overwrite" in err
    assert (out / "similarity.csv").read_text() == "mine\n"
    assert _cli(capsys, *base, "--overwrite")[0] == 0
    assert (out / "similarity.csv").read_text() != "mine\n" and (out / "notes.txt").read_text() == "keep me\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------ 2. embed resumes only its own files


def test_embed_never_changes_an_hdf5_or_npz_file_it_did_not_write(tmp_path, ckpt, fasta, capsys):
    import h5py

    user = tmp_path / "user.h5"
    with h5py.File(user, "w") as f:
        f.create_dataset("a", data=np.arange(3))
        f.create_group("b").create_dataset("x", data=np.ones(2))
    before = user.read_bytes()
    code, err = _cli(capsys, "embed", "--checkpoint", ckpt, "--fasta", fasta, "--out", user, "--device", "cpu")
    assert code == 1 and "did not write" in err and "choose another --out" in err and "Traceback" not in err, err
    assert user.read_bytes() == before
    foreign = tmp_path / "user.npz"
    np.savez(foreign, a=np.arange(3))
    before = foreign.read_bytes()
    code, err = _cli(capsys, "embed", "--checkpoint", ckpt, "--fasta", fasta, "--out", foreign, "--device", "cpu")
    assert code == 1 and "did not write" in err and "Traceback" not in err, err
    assert foreign.read_bytes() == before and not (tmp_path / "user.npz.parts").exists()


# ------------------------------------------------------------------ 3. a full disk never damages embed's HDF5


def test_embed_h5_on_a_full_disk_keeps_its_promise_that_a_rerun_resumes(tmp_path, ckpt, capsys, monkeypatch):
    """The disk fills while the third protein is written: whatever HDF5 file was being written then
    is damaged (as the HDF5 library leaves it); the output must not be that file."""
    import h5py

    from protein_performer.embed import read_embeddings

    fasta = write_fasta(tmp_path / "in.fasta", [(f"p{i}", s) for i, s in enumerate(random_sequences(4, 40, 50))])
    out = tmp_path / "e.h5"
    argv = ["embed", "--checkpoint", ckpt, "--fasta", fasta, "--out", out, "--token-budget", "64", "--device", "cpu"]
    real, calls, damaged = h5py.Group.create_dataset, [], []

    def create_dataset(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            damaged.append(Path(self.file.filename))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(h5py.Group, "create_dataset", create_dataset)
        code, err = _cli(capsys, *argv)
    assert code == 1 and "no space left on" in err and "a rerun resumes" in err, err
    for path in damaged:
        if path.exists():
            with open(path, "r+b") as fh:
                fh.truncate(path.stat().st_size // 2)
    assert _cli(capsys, *argv)[0] == 0
    assert sorted(read_embeddings(out)) == ["p0", "p1", "p2", "p3"]
    assert _listing(tmp_path) == ["e.h5", "in.fasta"]


# ------------------------------------------------------------------ 4. --overwrite replaces only what the command wrote


def test_prepare_overwrite_never_deletes_a_file_it_did_not_write(tmp_path, big_fasta, capsys):
    out = tmp_path / "ds"
    prep.prepare([big_fasta], out, valid_fraction=0.3, test_fraction=0.3)
    (out / "thesis.tex").write_text("four years\n")
    code, err = _cli(capsys, "prepare", big_fasta, "--out", out, "--overwrite", "--split-salt", "x",
                     "--valid-fraction", "0.3", "--test-fraction", "0.3")
    assert code == 1 and "thesis.tex" in err and "did not write" in err, err
    assert (out / "thesis.tex").read_text() == "four years\n"
    (out / "thesis.tex").unlink()  # a dataset alone is replaced
    assert _cli(capsys, "prepare", big_fasta, "--out", out, "--overwrite", "--split-salt", "x",
                "--valid-fraction", "0.3", "--test-fraction", "0.3")[0] == 0


def test_paralogs_overwrite_replaces_only_its_own_families(tmp_path, paralog_db, capsys):
    out = tmp_path / "fam"
    assert _cli(capsys, *_paralogs(paralog_db, out))[0] == 0
    first = paralogs.read_index(out)
    assert len(first) == 2 and all(p.is_file() for p in first)
    (out / "curated.a3m").write_text(">mine\nMKV\n")
    held = out / "held.a3m"  # the --exclude file, inside --out-dir
    held.write_text(">held\n" + paralog_db.read_text().split("\n")[1] + "\n")
    code, err = _cli(capsys, *_paralogs(paralog_db, out, "--overwrite", "--exclude", str(held)))
    assert code == 0, err
    assert (out / "curated.a3m").read_text() == ">mine\nMKV\n" and held.is_file()
    second = paralogs.read_index(out)
    assert len(second) == 1 and all(p.is_file() for p in second)
    assert {p.name for p in out.iterdir()} == {"curated.a3m", "held.a3m", "families.tsv", *(p.name for p in second)}


# ------------------------------------------------------------------ 10. paralogs file names


def test_paralogs_file_names_are_unique_visible_and_bounded():
    assert paralogs.file_name("P0A7Z4") == "P0A7Z4.a3m"
    assert paralogs.file_name("A/B") != paralogs.file_name("A_B")
    assert not paralogs.file_name(".hidden").startswith(".")
    assert not paralogs.file_name("..").startswith(".")
    long = paralogs.file_name("x" * 300)
    assert len(long.encode()) <= 120 and long != paralogs.file_name("x" * 299)
    taken = {paralogs.file_name("dup")}
    assert paralogs.file_name("dup", taken) not in taken
    assert paralogs.file_name("families.tsv") != "families.tsv"


# ------------------------------------------------------------------ 11. an unfinished paralogs set


def test_interrupted_paralogs_keeps_the_old_set(tmp_path, paralog_db, capsys, monkeypatch):
    out = tmp_path / "fam"
    assert _cli(capsys, *_paralogs(paralog_db, out))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real, calls = paralogs.write_a3m, []

    def killed_after_one(path, search):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, search)

    monkeypatch.setattr(paralogs, "write_a3m", killed_after_one)
    code, err = _cli(capsys, *_paralogs(paralog_db, out, "--overwrite", "--min-members", "4"))
    assert code == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _listing(tmp_path) == sorted(["db.fasta", "fam", *(f"fam/{name}" for name in before)])


def test_paralogs_stopped_while_replacing_beside_other_files_is_refused_then_finished(tmp_path, paralog_db, capsys,
                                                                                      monkeypatch):
    """Beside a user's file the set is replaced file by file: stopped halfway, the folder is marked
    unfinished (prepare refuses it) and a rerun knows the files it left as its own."""
    import os

    out = tmp_path / "fam"
    assert _cli(capsys, *_paralogs(paralog_db, out))[0] == 0
    (out / "curated.a3m").write_text(">mine\nMKV\n")
    real = os.replace

    def stopped(src, dst):
        if Path(dst).parent == out:
            raise KeyboardInterrupt
        real(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", stopped)
        assert _cli(capsys, *_paralogs(paralog_db, out, "--overwrite", "--min-members", "4"))[0] == 130
    assert (out / paralogs.INCOMPLETE).is_file() and not (out / "families.tsv").exists()
    code, err = _cli(capsys, "prepare", "--family", *sorted(out.glob("*.a3m")), "--out", tmp_path / "ds")
    assert code == 1 and "unfinished paralogs set" in err and not (tmp_path / "ds").exists(), err
    assert _cli(capsys, *_paralogs(paralog_db, out, "--overwrite"))[0] == 0
    listed = paralogs.read_index(out)
    assert {p.name for p in out.iterdir()} == {"curated.a3m", "families.tsv", *(p.name for p in listed)}
    assert (out / "curated.a3m").read_text() == ">mine\nMKV\n"


def test_prepare_refuses_a_families_folder_without_its_index_or_with_missing_files(tmp_path, capsys):
    fam = tmp_path / "fam"
    fam.mkdir()
    write_fasta(fam / "A.a3m", [(f"a{i}", s) for i, s in enumerate(random_sequences(6, 30, 30, seed=3))])
    code, err = _cli(capsys, "prepare", "--family", fam, "--out", tmp_path / "ds")
    assert code == 1 and "families.tsv" in err and "no family index" in err, err
    (fam / "families.tsv").write_text("file\tquery\tmembers\tneff\tquery_length\nA.a3m\ta0\t6\t6\t30\n"
                                      "B.a3m\tb0\t6\t6\t30\n")
    code, err = _cli(capsys, "prepare", "--family", fam / "families.tsv", "--out", tmp_path / "ds")
    assert code == 1 and "lists 1 missing family file(s) (B.a3m)" in err, err
    assert not (tmp_path / "ds").exists()


# ------------------------------------------------------------------ 13. one writer per output


def test_a_second_writer_of_an_output_is_refused(tmp_path, ckpt, fasta, paralog_db, capsys):
    cases = {
        "prepare": (tmp_path / "ds", ["prepare", fasta, "--out", tmp_path / "ds"]),
        "paralogs": (tmp_path / "fam", _paralogs(paralog_db, tmp_path / "fam")),
        "score": (tmp_path / "s.json", ["score", "--checkpoint", ckpt, "--fasta", fasta, "--out", tmp_path / "s.json"]),
        "embed": (tmp_path / "e.h5", ["embed", "--checkpoint", ckpt, "--fasta", fasta, "--out", tmp_path / "e.h5"]),
        "similarity": (tmp_path / "sim", ["similarity", "--checkpoint", ckpt, "--fasta", fasta, "--out",
                                          tmp_path / "sim"]),
        "attention": (tmp_path / "map.png", ["attention", "--checkpoint", ckpt, "--fasta", fasta, "--id", "p0",
                                             "--out", tmp_path / "map.png"]),
    }
    for name, (out, argv) in cases.items():
        with outputs.locked(out):
            code, err = _cli(capsys, *argv)
        assert code == 1 and "is being written by another protein-performer process" in err, (name, err)
        assert not out.exists(), name
    with outputs.locked(tmp_path / "ds"):  # another process, not only another call
        proc = subprocess.run([sys.executable, "-m", "protein_performer.cli", "prepare", str(fasta), "--out",
                               str(tmp_path / "ds")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "being written by another" in proc.stderr, proc.stderr
    assert cli.main(["prepare", str(fasta), "--out", str(tmp_path / "ds"), "--quiet"]) == 0  # lock released


def test_a_second_fit_into_one_run_folder_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs" / "one"
    with outputs.locked(root):
        code, err = _cli(capsys, "fit", "--config", "demo", "--trainer.default_root_dir", root,
                         "--data.data_dir", tmp_path / "missing")
    assert code == 1 and "--trainer.default_root_dir" in err and "being written by another" in err, err


# ------------------------------------------------------------------ 15. a full disk: one message, nothing partial


def _partial_then_full(path, *args, **kwargs):
    """A write that puts part of its bytes on disk, then finds no space left."""
    with open(path, "w") as fh:
        fh.write("partial")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_prepare_on_a_full_disk_says_so_and_leaves_nothing(tmp_path, big_fasta, capsys, monkeypatch):
    def full(self, name, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prep.SplitWriter, "_write", full)
    code, err = _cli(capsys, "prepare", big_fasta, "--out", tmp_path / "out" / "ds", "--quiet")
    assert code == 1 and f"no space left on {tmp_path / 'out'}" in err and "Errno" not in err, err
    assert _listing(tmp_path) == ["big.fasta", "out"]


def test_paralogs_on_a_full_disk_says_so_and_leaves_nothing(tmp_path, paralog_db, capsys, monkeypatch):
    real, calls = paralogs.write_a3m, []

    def full_at_second(path, search):
        calls.append(1)
        if len(calls) == 2:
            _partial_then_full(path)
        real(path, search)

    monkeypatch.setattr(paralogs, "write_a3m", full_at_second)
    code, err = _cli(capsys, *_paralogs(paralog_db, tmp_path / "fam"))
    assert code == 1 and f"no space left on {tmp_path}" in err and "Errno" not in err, err
    assert _listing(tmp_path) == ["db.fasta"]


def test_similarity_score_and_attention_on_a_full_disk_leave_nothing(tmp_path, ckpt, fasta, capsys, monkeypatch):
    import matplotlib.figure
    import pandas as pd

    out = tmp_path / "out"
    out.mkdir()
    with monkeypatch.context() as patch:
        real, calls = pd.DataFrame.to_csv, []

        def to_csv(self, path, *args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                _partial_then_full(path)
            return real(self, path, *args, **kwargs)

        patch.setattr(pd.DataFrame, "to_csv", to_csv)
        code, err = _cli(capsys, "similarity", "--checkpoint", ckpt, "--fasta", fasta, "--out", out / "sim",
                         "--device", "cpu", "--quiet")
    assert code == 1 and f"no space left on {out / 'sim'}" in err and "Errno" not in err, err
    assert _listing(out) == []
    with monkeypatch.context() as patch:
        patch.setattr(Path, "write_text", _partial_then_full)
        code, err = _cli(capsys, "score", "--checkpoint", ckpt, "--fasta", fasta, "--out", out / "s.json",
                         "--device", "cpu", "--bootstrap", "0", "--quiet")
    assert code == 1 and f"no space left on {out}" in err and "Errno" not in err, err
    assert _listing(out) == []
    with monkeypatch.context() as patch:
        patch.setattr(matplotlib.figure.Figure, "savefig", lambda self, path, **kw: _partial_then_full(path))
        code, err = _cli(capsys, "attention", "--checkpoint", ckpt, "--fasta", fasta, "--id", "p0", "--out",
                         out / "map.png", "--device", "cpu")
    assert code == 1 and f"no space left on {out}" in err and "Errno" not in err, err
    assert _listing(out) == []


def test_a_bare_full_disk_error_is_one_line_naming_the_folder(tmp_path, capsys, monkeypatch):
    from protein_performer.corpus import fetch  # any command: the top-level handler says it

    def boom(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.gz"))

    monkeypatch.setattr(fetch, "run", boom)
    code, err = _cli(capsys, "fetch", "--proteome", "UP000000625", "--out", tmp_path / "x.gz")
    assert code == 1 and err.strip().endswith(f"no space left on {tmp_path}; free some space or choose another "
                                              "output folder, then run again"), err


# ------------------------------------------------------------------ 16. checks before the work


def test_outputs_and_numbers_are_checked_before_any_work(tmp_path, ckpt, fasta, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("x")
    missing = tmp_path / "missing.ckpt"  # loading it would fail: each check must come first
    cases = [
        (["score", "--checkpoint", missing, "--fasta", fasta, "--out", afile / "s.json"], "afile is a file"),
        (["score", "--checkpoint", missing, "--fasta", fasta, "--batch-size", "0"], "--batch-size 0: must be at least 1"),
        (["score", "--checkpoint", missing, "--fasta", fasta, "--passes", "0"], "--passes 0: must be at least 1"),
        (["embed", "--checkpoint", missing, "--fasta", fasta, "--out", tmp_path / "e.h5", "--token-budget", "0"],
         "--token-budget 0: must be at least 3"),
        (["similarity", "--checkpoint", missing, "--fasta", fasta, "--out", tmp_path / "sim", "--top", "0"],
         "--top 0: must be at least 1"),
        (["attention", "--checkpoint", missing, "--fasta", fasta, "--id", "p0", "--out", tmp_path / "a.txt"],
         ".txt is not an image format"),
        (["attention", "--checkpoint", missing, "--fasta", fasta, "--id", "p0", "--out", tmp_path / "m.png",
          "--row-block", "0"], "--row-block 0: must be at least 1"),
        (["generate", "--checkpoint", missing, "--out", tmp_path / "g.fasta", "--num", "0"], "--num 0: must be at least 1"),
        (["fit", "--config", "demo", "--trainer.default_root_dir", afile / "run", "--data.data_dir",
          tmp_path / "missing"], "afile is a file"),
    ]
    for argv, expected in cases:
        code, err = _cli(capsys, *argv)
        assert code == 1 and expected in err and "Traceback" not in err, (argv, err)
    assert _listing(tmp_path) == ["afile", "in.fasta"]


# ------------------------------------------------------------------ 18. progress bars


def test_score_and_prepare_family_draw_progress(tmp_path, model, capsys):
    from protein_performer.corpus.fasta import CleaningPolicy
    from protein_performer.score import score_windows

    tokens = [prep.ALPHABET.encode(s) for s in random_sequences(4, 20, 30)]
    capsys.readouterr()
    score_windows(model, "mlm", tokens, window_tokens=16, passes=3, bootstrap=0, progress=True)
    assert "score" in capsys.readouterr().err
    score_windows(model, "mlm", tokens, window_tokens=16, passes=3, bootstrap=0, progress=False)
    assert capsys.readouterr().err == ""
    family = write_fasta(tmp_path / "fam.fasta", [(f"m{i}", s) for i, s in enumerate(random_sequences(6, 30, 30))])
    writers = {split: prep.SplitWriter(tmp_path / "ds" / split) for split in ("train", "valid", "test")}
    prep._tokenise_families([family], prep.FamilyOptions(), CleaningPolicy(), prep.SplitFractions(), writers,
                            progress=True)
    assert "prepare --family" in capsys.readouterr().err
    for writer in writers.values():
        writer.abort()
    parser = __import__("argparse").ArgumentParser()
    from protein_performer import score

    score.add_arguments(parser)
    assert parser.parse_args(["--checkpoint", "c", "--fasta", "f", "--quiet"]).quiet
