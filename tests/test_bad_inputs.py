"""Bad input and faults, fed to every command (issues 13 and 24): each test failed before its fix.

Issue 13 items: 1 diverged training, 2 damaged prepared data, 4 non-ASCII letters, 5 Lightning
errors, 6 output paths, 7 empty input, 8 leftovers, 9 fetch limits, 10 messages. Item 3 (FAVOR+
at large norms, bidirectional and causal) is tested in test_attention_options.py.

Issue 24 items (the last sections): 1 side files and --overwrite, 6 corrupted tokens, 7 empty
prompts, 8 one-line errors and interrupts, 9 full disks, 10 outputs checked first, 11 messages
that point somewhere. Its convert items (2, 4, 8, 10) are tested in test_convert.py, items 12
(progress bars) and 13 (flag names) in test_flags.py.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model_utils import random_sequences, write_fasta
from protein_performer import cli
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


def read_manifest_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


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



def test_flipped_byte_fails_the_checksum_in_prepare(small_fasta, tmp_path):
    out = tmp_path / "ds"
    _prepare(small_fasta, out)
    tokens = out / "train" / "tokens.u8"
    data = bytearray(tokens.read_bytes())
    data[5] = (data[5] + 1) % 20 + 4
    tokens.write_bytes(bytes(data))
    with pytest.raises(DamagedDataset, match=r"train/tokens.u8: .*sha256"):  # sizes agree; the checksum does not
        open_split(out, "train")
    with pytest.raises(DamagedDataset, match=r"train/tokens.u8: .*sha256"):
        _prepare(small_fasta, out)


def test_truncated_train_split_stops_fit_setup_with_one_line(small_fasta, tmp_path, capsys):
    out = tmp_path / "ds"
    _prepare(small_fasta, out)
    with open(out / "train" / "offsets.i64", "r+b") as fh:
        fh.truncate(20)
    from protein_performer.datamodule import ProteinDataModule

    with pytest.raises(DamagedDataset, match="offsets.i64"):
        ProteinDataModule(str(out), window_tokens=32).setup("fit")


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
    code, err = _cli(capsys, "prepare", str(small_fasta), "--out", str(blocker / "sub"), "--quiet")
    assert code == 1 and "is a file, not a folder" in err and "Traceback" not in err
    monkeypatch.chdir(tmp_path)
    code, err = _cli(capsys, "prepare", str(small_fasta), "--out", ".", "--overwrite", "--quiet")
    assert code == 1 and "current directory" in err
    assert small_fasta.is_file()
    # A read-only location (os.access says no; root ignores chmod, so ask the check directly).
    monkeypatch.setattr(prep.os, "access", lambda path, mode: False)
    code, err = _cli(capsys, "prepare", str(small_fasta), "--out", str(tmp_path / "ro" / "ds"), "--quiet")
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
    code, err = _cli(capsys, "prepare", str(fasta), "--out", str(tmp_path / "ds"), "--quiet")
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
    live = tmp_path / f".ds.partial-{os.getpid()}-89abcdef"  # this process: alive
    live.mkdir()
    _prepare(small_fasta, tmp_path / "ds")
    assert not left.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "ds", "small.fasta"])


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
    from protein_performer.analysis import similarity_inputs

    calls = []
    original = similarity_inputs.protein_windows

    def spy(sequences):
        calls.append(sequences := list(sequences))
        return original(sequences)

    monkeypatch.setattr(similarity_inputs, "protein_windows", spy)
    assert cli.main(["similarity", "--checkpoint", str(ckpt), "--fasta", str(fasta), "--out",
                     str(tmp_path / "sim"), "--unknown", "x", "--device", "cpu", "--bootstrap", "0"]) == 0
    seen = calls[0]  # the proteins as read (the second call is the shuffled control's)
    assert sorted(calls[1][0]) == sorted("MKVXLA")
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
    for name in ("prepare", "embed", "score", "similarity", "attention", "generate"):
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


# ------------------------------------------------------------------ 1, 5, 8. fit / validate / test

REPO = Path(__file__).resolve().parents[1]
TINY_FIT = ["--model.config.dim", "16", "--model.config.depth", "1", "--model.config.heads", "2",
            "--model.config.local_heads", "1",  # the demo is a hybrid: 1 of the 2 tiny heads local
            "--model.config.column_heads", "0",  # (multi_family_mlm's column heads: tests/test_training.py)
            "--model.config.nb_features", "8", "--data.window_tokens", "64", "--data.batch_size", "2",
            "--trainer.enable_progress_bar", "false", "--trainer.max_time", "null", "--trainer.limit_val_batches", "1"]


def _fit_subprocess(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "protein_performer.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_diverged_fit_stops_with_a_clear_error_and_writes_no_nan_checkpoint(small_fasta, tmp_path):
    from protein_performer.checkpoint import load_checkpoint

    data = tmp_path / "ds"
    _prepare(small_fasta, data)
    root = tmp_path / "elsewhere"
    proc = _fit_subprocess(tmp_path, "fit", "--config", str(REPO / "configs" / "demo.yaml"), "--data.data_dir",
                           str(data), *TINY_FIT, "--model.lr", "1000", "--model.warmup_steps", "0",
                           "--trainer.max_steps", "30", "--trainer.val_check_interval", "2",
                           "--trainer.check_val_every_n_epoch", "null", "--trainer.default_root_dir", str(root))
    assert proc.returncode == 1, proc.stderr[-3000:]
    error = [line for line in proc.stderr.splitlines() if "protein-performer fit: error" in line]
    assert len(error) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "training diverged at step" in error[0] and "lower --model.lr" in error[0]
    step = int(error[0].split("at step ")[1].split(":")[0])
    for ckpt in (root / "checkpoints").glob("*.ckpt"):  # earlier checkpoints are finite and load
        assert load_checkpoint(ckpt).model is not None
        assert torch.load(ckpt, weights_only=True)["global_step"] <= step
    # The loggers followed --trainer.default_root_dir: nothing under the working directory's runs/.
    assert (root / "csv").is_dir() and (root / "wandb").is_dir() and not (tmp_path / "runs").exists()


def test_guard_stops_before_a_nan_validation_loss_is_checkpointed():
    import types

    from protein_performer.callbacks import NonFiniteGuard, TrainingDiverged

    trainer = types.SimpleNamespace(sanity_checking=False, global_step=10, optimizers=[],
                                    callback_metrics={"val/loss": torch.tensor(float("nan"))},
                                    strategy=types.SimpleNamespace(reduce_boolean_decision=lambda d, all: d))
    guard = NonFiniteGuard()
    with pytest.raises(TrainingDiverged, match="step 10: val/loss is not finite"):
        guard.on_validation_end(trainer, None)
    with pytest.raises(TrainingDiverged, match="checkpoint"):
        guard.on_save_checkpoint(trainer, None, {"state_dict": {"w": torch.tensor([1.0, float("inf")])}})
    trainer.callback_metrics = {"val/loss": torch.tensor(2.5)}
    guard.on_validation_end(trainer, None)


def test_every_config_lists_the_guard(tmp_path, monkeypatch):
    from protein_performer.callbacks import NonFiniteGuard
    from protein_performer.cli import run_lightning_cli

    monkeypatch.chdir(tmp_path)
    for config in sorted((REPO / "configs").glob("*.yaml")):  # as the CLI reads them (configs/base.yaml first)
        cli = run_lightning_cli(["--config", str(config), *TINY_FIT, "--trainer.logger", "false"], run=False)
        assert any(isinstance(c, NonFiniteGuard) for c in cli.trainer.callbacks), config


def test_lightning_errors_are_one_line(small_fasta, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "ds"
    _prepare(small_fasta, data)
    (tmp_path / "zero.ckpt").write_bytes(b"")
    (tmp_path / "junk.ckpt").write_bytes(b"junk" * 100)
    base = ["--config", str(REPO / "configs" / "demo.yaml"), *TINY_FIT, "--trainer.max_steps", "1"]
    cases = [
        (["fit", *base, "--data.data_dir", str(tmp_path / "missing")], "no prepared dataset there"),
        (["fit", *base, "--data.data_dir", str(small_fasta.parent)], "no prepared dataset there"),
        (["validate", *base, "--data.data_dir", str(data), "--ckpt_path", "zero.ckpt"], "zero.ckpt: empty file"),
        (["test", *base, "--data.data_dir", str(data), "--ckpt_path", "junk.ckpt"], "junk.ckpt: not a PyTorch"),
    ]
    for argv, expected in cases:
        code, err = _cli(capsys, *argv)
        lines = [line for line in err.splitlines() if "error:" in line]
        assert code == 1 and len(lines) == 1 and expected in lines[0] and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "runs").exists()  # nothing written before the checks


def test_fit_failing_in_setup_leaves_no_run_folders(small_fasta, tmp_path):
    data = tmp_path / "ds"
    _prepare(small_fasta, data)
    manifest = read_manifest_of(data)
    del manifest["splits"]["train"]["token_counts"]  # found only inside trainer.fit, after loggers start
    (data / "manifest.json").write_text(json.dumps(manifest))
    proc = _fit_subprocess(tmp_path, "fit", "--config", str(REPO / "configs" / "demo.yaml"), "--data.data_dir",
                           str(data), *TINY_FIT, "--trainer.max_steps", "2")
    assert proc.returncode == 1 and "no token_counts for split 'train'" in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ issue 24, 1. side files never collide


def test_attention_and_plot_embeddings_never_replace_an_unrelated_csv(tmp_path, ckpt, capsys, caplog):
    fasta = write_fasta(tmp_path / "in.fasta", [(f"p{i}", s) for i, s in enumerate(random_sequences(5, 20, 40))])
    csv = tmp_path / "v.csv"
    csv.write_text("the user's table\n")
    png = tmp_path / "v.png"
    attention = ["attention", "--checkpoint", str(ckpt), "--fasta", str(fasta), "--id", "p0", "--device", "cpu"]
    code, err = _cli(capsys, *attention, "--out", str(png))
    assert code == 1 and f"{csv} already exists" in err and "--overwrite" in err, err
    assert csv.read_text() == "the user's table\n" and not png.exists()
    code, err = _cli(capsys, *attention, "--out", str(csv), "--overwrite")  # not an image; its CSV would be --out
    assert code == 1 and ".csv is not an image format" in err and csv.read_text() == "the user's table\n"
    emb = tmp_path / "e.npz"
    assert cli.main(["embed", "--checkpoint", str(ckpt), "--fasta", str(fasta), "--out", str(emb)]) == 0
    views = ["plot-embeddings", "--embeddings", str(emb), "--neighbours", "p0", "-k", "2"]
    code, err = _cli(capsys, *views, "--out", str(png))
    assert code == 1 and f"{csv} already exists" in err and csv.read_text() == "the user's table\n"
    code, err = _cli(capsys, *views, "--out", str(tmp_path / "e.png"))  # e.csv, e.neighbours.csv: new
    assert code == 0, err
    code, err = _cli(capsys, *views, "--out", str(tmp_path / "e.png"))  # now all three exist
    assert code == 1 and "e.png already exists" in err and "--overwrite" in err
    caplog.clear()
    with caplog.at_level("INFO"):
        assert cli.main([*attention, "--out", str(png), "--overwrite"]) == 0  # asked for: replaced, announced
    assert csv.read_text().startswith(",0:<cls>") and png.stat().st_size > 1000
    assert f"wrote {png} and {csv}" in caplog.text


# ------------------------------------------------------------------ issue 24, 6. corrupted token bytes


def test_corrupted_token_bytes_are_refused_when_a_split_opens(small_fasta, tmp_path):
    out = tmp_path / "ds"
    _prepare(small_fasta, out)
    tokens = out / "train" / "tokens.u8"
    data = bytearray(tokens.read_bytes())
    data[100] = 200  # same size, so the manifest's sizes and the offsets still agree
    tokens.write_bytes(bytes(data))
    with pytest.raises(DamagedDataset, match=r"train/tokens.u8: damaged prepared dataset \(byte 100 .* holds 200, "
                                             r"not a residue id.*prepare INPUT\.\.\. --out .* --overwrite"):
        open_split(out, "train")
    from protein_performer.datamodule import ProteinDataModule

    with pytest.raises(DamagedDataset, match="train/tokens.u8"):  # fit stops in setup, not in the embedding
        ProteinDataModule(str(out), window_tokens=32).setup("fit")


# ------------------------------------------------------------------ issue 24, 7 and 11. generate's prompts


@pytest.fixture
def clm_ckpt(tmp_path) -> Path:
    from test_generate import random_model, save_checkpoint

    return save_checkpoint(random_model(std=0.1), tmp_path / "clm.ckpt", "clm")


def test_generate_refuses_an_empty_prompt_record(clm_ckpt, tmp_path, capsys):
    prompts = tmp_path / "prompts.fasta"
    prompts.write_text(">a\nMKV\n>b empty\n>c\nMA\n")
    out = tmp_path / "gen.fasta"
    code, err = _cli(capsys, "generate", "--checkpoint", str(clm_ckpt), "--prompts", str(prompts), "--out", str(out),
                     "--stop-at-residues", "10", "--device", "cpu")
    assert code == 1 and "record 2 ('b') has no residues" in err and "--prompt ''" in err
    assert not out.exists()


def test_generate_offers_the_unknown_flag_its_message_names(clm_ckpt, tmp_path, capsys):
    prompts = tmp_path / "prompts.fasta"
    prompts.write_text(">a\nMKJV\n")
    out = tmp_path / "gen.fasta"
    argv = ["generate", "--checkpoint", str(clm_ckpt), "--prompts", str(prompts), "--out", str(out),
            "--stop-at-residues", "10", "--device", "cpu"]
    code, err = _cli(capsys, *argv)
    assert code == 1 and "character 'J'" in err and "--unknown=x" in err
    assert cli.main([*argv, "--unknown", "x"]) == 0
    assert out.read_text().splitlines()[1].startswith("MKXV")


# ------------------------------------------------------------------ issue 24, 8. one line, not a traceback


def test_fit_config_mistakes_are_one_line(small_fasta, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "ds"
    _prepare(small_fasta, data)
    base = ["fit", "--config", str(REPO / "configs" / "demo.yaml"), *TINY_FIT, "--data.data_dir", str(data)]
    cases = [
        ([*base, "--model.config.dimm", "16", "--trainer.max_steps", "1"],
         "model.config: unknown setting 'dimm' (did you mean 'dim'?)"),
        ([*base, "--trainer.max_steps", "-5"], "`max_steps` must be a non-negative integer or -1"),
    ]
    for argv, expected in cases:
        code, err = _cli(capsys, *argv)
        lines = [line for line in err.splitlines() if "error:" in line]
        assert code == 1 and len(lines) == 1 and expected in lines[0] and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "runs").exists()


def test_interrupted_generate_says_so_in_one_line(clm_ckpt, tmp_path, capsys, monkeypatch):
    from protein_performer import generate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(generate, "generate", interrupted)  # Ctrl-C while sampling
    out = tmp_path / "gen.fasta"
    code, err = _cli(capsys, "generate", "--checkpoint", str(clm_ckpt), "--out", str(out), "--device", "cpu")
    assert code == 130 and err.strip() == "protein-performer generate: interrupted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clm.ckpt"]


def test_sigterm_interrupts_a_command_like_ctrl_c(clm_ckpt, tmp_path, capsys, monkeypatch):
    import signal

    from protein_performer import generate

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler raises here
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(generate, "generate", terminated)
    before = signal.getsignal(signal.SIGTERM)
    code, err = _cli(capsys, "generate", "--checkpoint", str(clm_ckpt), "--out", str(tmp_path / "g.fasta"))
    assert code == 143 and err.strip() == "protein-performer generate: interrupted"
    assert signal.getsignal(signal.SIGTERM) == before


# ------------------------------------------------------------------ issue 24, 9 and 10. outputs, full disks


def test_generate_creates_its_out_folder_and_leaves_nothing_on_a_full_disk(clm_ckpt, tmp_path, capsys, monkeypatch):
    out = tmp_path / "new" / "folder" / "gen.fasta"
    argv = ["generate", "--checkpoint", str(clm_ckpt), "--out", str(out), "--stop-at-residues", "10", "--device", "cpu"]
    assert cli.main(argv) == 0 and out.read_text().startswith(">generated_0")
    code, err = _cli(capsys, *argv)
    assert code == 1 and "already exists; use --overwrite" in err

    def full(self, *args, **kwargs):
        with open(self, "w") as fh:
            fh.write(">partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    code, err = _cli(capsys, *argv, "--overwrite")
    assert code == 1 and f"no space left on {out.parent}" in err and "Traceback" not in err
    assert sorted(p.name for p in out.parent.iterdir()) == ["gen.fasta"]  # the old output, no partial file
    assert out.read_text().startswith(">generated_0")


def _fill_disk_at(monkeypatch, owner, name: str, call: int) -> None:
    """Make ``owner.name`` (a low-level write of an embed writer) find the disk full at its ``call``-th
    call: it writes part of its data first, as a real write does, then raises ENOSPC."""
    real, calls = getattr(owner, name), []

    def write(*args, **kwargs):
        calls.append(1)
        result = real(*args, **kwargs)  # (the bytes reach the file; the error comes at the end)
        if len(calls) == call:
            raise OSError(errno.ENOSPC, "No space left on device")
        return result

    monkeypatch.setattr(owner, name, write)


@pytest.mark.parametrize("fmt", ["h5", "npz", "pt"])
def test_embed_on_a_full_disk_says_so_and_resumes(tmp_path, ckpt, capsys, monkeypatch, fmt):
    import h5py

    from protein_performer.embed import read_embeddings

    fasta = write_fasta(tmp_path / "in.fasta", [(f"p{i}", s) for i, s in enumerate(random_sequences(4, 40, 50))])
    out = tmp_path / ("e" if fmt == "pt" else f"e.{fmt}")
    argv = ["embed", "--checkpoint", str(ckpt), "--fasta", str(fasta), "--out", str(out), "--format", fmt,
            "--token-budget", "64", "--device", "cpu"]  # one protein per batch
    write = {"h5": (h5py.Group, "create_dataset"), "npz": (np, "savez"), "pt": (Path, "write_bytes")}[fmt]
    with monkeypatch.context() as patch:
        _fill_disk_at(patch, *write, call=1)
        code, err = _cli(capsys, *argv)
    assert code == 1 and f"no space left on {tmp_path} while writing {out.name}; nothing was left there" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.fasta"]
    with monkeypatch.context() as patch:
        _fill_disk_at(patch, *write, call=3)
        code, err = _cli(capsys, *argv)
    assert code == 1 and "no space left on" in err and "Traceback" not in err
    assert f"the 2 proteins embedded before are kept in {out} and a rerun resumes from them" in err
    assert not [p.name for p in tmp_path.rglob(".*")]  # no temporary files
    assert cli.main(argv) == 0
    assert sorted(read_embeddings(out)) == ["p0", "p1", "p2", "p3"]


# ------------------------------------------------------------------ issue 24, 11. messages that point somewhere


def test_embed_reads_standard_input(tmp_path, ckpt, monkeypatch):
    import io

    from protein_performer.embed import read_embeddings

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b">a\nMKVLA\n>b\nGAGAL\n")))
    assert cli.main(["embed", "--checkpoint", str(ckpt), "--fasta", "-", "--out", str(tmp_path / "e.npz")]) == 0
    assert set(read_embeddings(tmp_path / "e.npz")) == {"a", "b"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.npz"]


def test_embed_reads_dev_stdin_and_other_commands_say_pipes_are_not_files(tmp_path, ckpt):
    out = tmp_path / "e.npz"
    proc = subprocess.run([sys.executable, "-m", "protein_performer.cli", "embed", "--checkpoint", str(ckpt),
                           "--fasta", "/dev/stdin", "--out", str(out)], input=b">a\nMKVLA\n", capture_output=True,
                          cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    from protein_performer.embed import read_embeddings

    assert set(read_embeddings(out)) == {"a"}
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(ValueError, match="not a regular file .* save the sequences to a file"):
        read_records(pipe)


def test_step_based_fit_shows_steps_not_epoch_minus_two(small_fasta, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "ds"
    _prepare(small_fasta, data)
    off = TINY_FIT.index("--trainer.enable_progress_bar")
    bar_on = TINY_FIT[:off] + TINY_FIT[off + 2 :]
    assert cli.main(["fit", "--config", str(REPO / "configs" / "demo.yaml"), *bar_on, "--data.data_dir", str(data),
                     "--trainer.logger", "false", "--trainer.max_steps", "3", "--trainer.val_check_interval", "null",
                     "--trainer.limit_val_batches", "0"]) == 0
    shown = capsys.readouterr().out
    assert "Step 3/3" in shown and "Epoch" not in shown, shown[-2000:]


# ------------------------------------------------------------------ issue 24, 5. resumed mid-epoch, bit for bit


def test_fit_resumed_mid_epoch_ends_with_the_weights_of_an_uninterrupted_run(small_fasta, tmp_path, monkeypatch):
    """A run dies after step 7 (last.ckpt is step 6's, in the middle of epoch 1); resumed from
    last.ckpt it ends with exactly the weights of a run that was never stopped."""
    from protein_performer.lit import ProteinLM

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "ds"
    _prepare(small_fasta, data)
    argv = ["fit", "--config", str(REPO / "configs" / "demo.yaml"), *TINY_FIT, "--data.data_dir", str(data),
            "--model.config.dropout", "0.2", "--trainer.logger", "false", "--trainer.max_steps", "9",
            "--trainer.val_check_interval", "3", "--trainer.check_val_every_n_epoch", "null"]

    def final_weights(root: Path) -> dict[str, torch.Tensor]:
        ckpt = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["global_step"] == 9
        return ckpt["state_dict"]

    assert cli.main([*argv, "--trainer.default_root_dir", str(tmp_path / "whole")]) == 0
    steps = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=True)["loops"]["fit_loop"]
    assert steps["epoch_progress"]["current"]["completed"] >= 1  # step 6 lies past the first epoch
    original_step = ProteinLM.training_step

    def dies_at_step_7(self, batch, batch_idx):
        if self.global_step == 7:
            raise RuntimeError("killed")
        return original_step(self, batch, batch_idx)

    with monkeypatch.context() as patch:
        patch.setattr(ProteinLM, "training_step", dies_at_step_7)
        assert cli.main([*argv, "--trainer.default_root_dir", str(tmp_path / "parts")]) == 1
    last = tmp_path / "parts" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 6
    assert 0 < saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"]  # mid-epoch
    assert cli.main([*argv, "--trainer.default_root_dir", str(tmp_path / "parts"), "--ckpt_path", str(last)]) == 0
    whole, resumed = final_weights(tmp_path / "whole"), final_weights(tmp_path / "parts")
    differ = {k: float((whole[k].float() - resumed[k].float()).abs().max()) for k in whole
              if not torch.equal(whole[k], resumed[k])}
    assert not differ, differ


def test_samplers_resume_an_epoch_after_the_batches_it_served():
    from protein_performer.datasets import EpochSampler, TokenBudgetBatchSampler

    dataset = list(range(23))
    sampler = EpochSampler(dataset, seed=3)
    sampler.set_epoch(2)
    whole = list(sampler)
    sampler = EpochSampler(dataset, seed=3)
    sampler.resume(2, 8)
    assert list(sampler) == whole[8:] and list(sampler) == whole  # once, then whole epochs again
    lengths = np.random.default_rng(0).integers(5, 60, size=40)
    batches = TokenBudgetBatchSampler(EpochSampler(lengths, seed=3), lengths, 128, seed=3)
    batches.sampler.set_epoch(1)
    whole = list(batches)
    batches = TokenBudgetBatchSampler(EpochSampler(lengths, seed=3), lengths, 128, seed=3)
    batches.resume(1, 5)
    assert list(batches) == whole[5:] and list(batches) == whole
