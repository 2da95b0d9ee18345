"""``protein_performer.embed``: API, mean pooling, windows, output formats, safe keys, resume, CLI."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from model_utils import random_sequences, write_fasta
from protein_performer.alphabet import ALPHABET
from protein_performer.cli import main as cli_main
from protein_performer.datasets import token_budget_batches
from protein_performer.embed import (
    Embedder,
    ProteinInput,
    embed_to_file,
    open_writer,
    read_embeddings,
    safe_key,
    window_starts,
)

UNSAFE_IDS = ["sp|P1/2|X", "../evil", "id with spaces", "..", "a/b/c", "P12345"]


@pytest.fixture(scope="module")
def unseen_fasta(tmp_path_factory) -> Path:
    """A FASTA the model never saw: random proteins, UniProt-style headers and unsafe ids."""
    seqs = random_sequences(8, 5, 90, seed=7)
    headers = [f"sp|Q{i:05d}|TEST{i}_ECOLI Test protein {i} OS=Testus OX=1 GN=abc{i} PE={1 + i % 3} SV=1"
               for i in range(6)] + UNSAFE_IDS[:2]
    return write_fasta(tmp_path_factory.mktemp("fasta") / "unseen.fasta", zip(headers, seqs))


def test_batches_respect_token_budget():
    lengths = [5, 50, 7, 30, 30, 200, 1]
    batches = token_budget_batches(lengths, 64, order="longest_first", oversize="alone")
    assert sorted(itertools.chain(*batches)) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 64


def test_window_starts_cover_with_overlap():
    assert window_starts(10, 20, 5) == [0]
    starts = window_starts(100, 30, 10)
    assert starts[0] == 0 and starts[-1] == 70
    assert all(b - a <= 20 for a, b in zip(starts, starts[1:]))  # each step shares >= 10 residues


def test_mean_excludes_special_tokens(model):
    seq = "MKTAYIAKQRQISFVKSHFSRQ"
    emb = Embedder(model, layers=(0, -1), per_residue=True).embed([("p", seq)])["p"]
    ids = torch.tensor([[ALPHABET.cls_idx, *ALPHABET.encode(seq).tolist(), ALPHABET.eos_idx]])
    with torch.no_grad():
        out = model(ids, torch.ones_like(ids, dtype=torch.bool), return_layers=(0, 2))
    for layer in (0, 2):
        manual = out.hidden_states[layer][0, 1:-1].numpy()
        np.testing.assert_allclose(emb.per_residue[layer], manual, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(emb.mean[layer], manual.mean(0), rtol=1e-5, atol=1e-6)
    assert not emb.windowed


def test_padding_and_batching_do_not_change_embeddings(model):
    seqs = random_sequences(6, 3, 60, seed=3)
    alone = Embedder(model, token_budget=64).embed(seqs).means()
    packed = Embedder(model, token_budget=4096).embed(seqs).means()
    for key in alone:
        np.testing.assert_allclose(alone[key], packed[key], rtol=1e-4, atol=1e-5)


def test_api_inputs(ckpt, unseen_fasta):
    embedder = Embedder.from_checkpoint(ckpt)
    by_path = embedder.embed(unseen_fasta)
    assert list(by_path)[:2] == ["Q00000", "Q00001"] and len(by_path) == 8
    assert by_path.matrix().shape == (8, 16) and np.isfinite(by_path.matrix()).all()
    plain = embedder.embed([by_path["Q00000"].sequence])
    np.testing.assert_allclose(plain.means()["seq1"], by_path.means()["Q00000"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="'bad'.*use --unknown x"):
        embedder.embed([("bad", "MKJ")])


def test_windows_are_stitched_and_marked(model):
    """With attention switched off, a residue's state depends on its token and position only
    through rotary (unused without attention), so windows must reproduce the whole protein
    exactly; with attention on, they stay finite and close."""
    seq = random_sequences(1, 300, 300, seed=5)[0]
    whole = Embedder(model, per_residue=True).embed([("p", seq)])["p"]
    windows = Embedder(model, per_residue=True, window_residues=64, window_overlap=16).embed([("p", seq)])["p"]
    assert windows.windowed and not whole.windowed
    assert windows.per_residue[2].shape == (300, 16) and np.isfinite(windows.per_residue[2]).all()
    cos = whole.mean[2] @ windows.mean[2] / np.linalg.norm(whole.mean[2]) / np.linalg.norm(windows.mean[2])
    assert cos > 0.95

    local = type(model)(model.config)
    local.load_state_dict(model.state_dict())
    with torch.no_grad():
        for block in local.blocks:
            block.attn.out.weight.zero_()
            block.attn.out.bias.zero_()
    exact = Embedder(local, per_residue=True).embed([("p", seq)])["p"]
    stitched = Embedder(local, per_residue=True, window_residues=64, window_overlap=16).embed([("p", seq)])["p"]
    np.testing.assert_allclose(stitched.per_residue[2], exact.per_residue[2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", ["h5", "npz", "pt"])
def test_formats_round_trip_with_unsafe_ids(model, tmp_path, fmt):
    seqs = random_sequences(len(UNSAFE_IDS), 4, 40, seed=11)
    inputs = [ProteinInput(pid, s, f"{pid} some description") for pid, s in zip(UNSAFE_IDS, seqs)]
    embedder = Embedder(model, layers=(1, -1), per_residue=True, token_budget=64)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / {"h5": "emb.h5", "npz": "emb.npz", "pt": "emb_pt"}[fmt]
    stats = embed_to_file(embedder, inputs, open_writer(target, fmt, {"layers": [1, 2], "per_residue": True}),
                          progress=False)
    assert stats.proteins == len(inputs)
    expected = embedder.embed(inputs)
    back = read_embeddings(target, per_residue=True)
    assert list(sorted(back)) == sorted(UNSAFE_IDS) and back.layers == (1, 2)
    for pid in UNSAFE_IDS:
        np.testing.assert_allclose(back[pid].mean[2], expected[pid].mean[2], rtol=1e-6)
        np.testing.assert_allclose(back[pid].per_residue[1], expected[pid].per_residue[1], rtol=1e-6)
        assert back[pid].header == f"{pid} some description" and back[pid].sequence == expected[pid].sequence
    # Nothing escaped the output: the only entries are the output itself (no nested paths, no ../evil).
    assert [p.name for p in out_dir.iterdir()] == [target.name]
    assert not (tmp_path / "evil").exists() and not (tmp_path / "evil.pt").exists()
    if fmt == "h5":
        with h5py.File(target, "r") as f:
            assert set(f.keys()) == {safe_key(i) for i in UNSAFE_IDS}
            for key, g in f.items():
                assert "/" not in key and isinstance(g, h5py.Group) and set(g.keys()) == {"mean", "per_residue"}
                assert g["mean"].shape == (2, 16) and g["per_residue"].shape == (2, g.attrs["length"], 16)
                assert g.attrs["windowed"] == False  # noqa: E712 (numpy bool)
            assert f[safe_key("sp|P1/2|X")].attrs["id"] == "sp|P1/2|X"
    if fmt == "pt":
        item = torch.load(target / f"{safe_key('P12345')}.pt", weights_only=True)
        assert item["label"] == "P12345" and set(item["mean_representations"]) == {1, 2}
        assert item["representations"][2].shape == (len(expected["P12345"].sequence), 16)
        assert {p.suffix for p in target.iterdir()} == {".pt", ".json"}


def test_safe_keys_are_distinct_and_plain():
    keys = [safe_key(i) for i in UNSAFE_IDS + ["a_b", "a/b", "a b"]]
    assert len(set(keys)) == len(keys)
    assert safe_key("P12345") == "P12345"
    for key in keys:
        assert "/" not in key and " " not in key and not key.startswith(".")


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("fmt", ["h5", "npz"])
def test_resume_after_interruption(model, tmp_path, fmt):
    seqs = random_sequences(12, 5, 30, seed=2)
    inputs = [ProteinInput(f"P{i}", s, f"P{i}") for i, s in enumerate(seqs)]
    embedder = Embedder(model, token_budget=64)
    target = tmp_path / f"emb.{fmt}"
    meta = {"layers": [2], "per_residue": False}
    writer = open_writer(target, None, meta)
    real_write, calls = writer.write, []

    def failing_write(batch):
        if len(calls) == 2:
            raise _Boom("killed")
        calls.append(len(batch))
        real_write(batch)

    writer.write = failing_write
    with pytest.raises(_Boom):
        embed_to_file(embedder, inputs, writer, progress=False)
    partial = read_embeddings(target)  # readable after the interruption
    assert len(partial) == sum(calls) < len(inputs)
    stats = embed_to_file(embedder, inputs, open_writer(target, None, meta), progress=False)
    assert stats.proteins == len(inputs) - sum(calls) and stats.skipped_existing == sum(calls)
    again = embed_to_file(embedder, inputs, open_writer(target, None, meta), progress=False)
    assert again.proteins == 0 and again.skipped_existing == len(inputs)
    full = read_embeddings(target)
    assert sorted(full) == sorted(p.id for p in inputs)
    np.testing.assert_allclose(full.matrix()[np.argsort(list(full))],
                               embedder.embed(inputs).matrix()[np.argsort([p.id for p in inputs])], rtol=1e-5)
    if fmt == "npz":
        assert not target.with_name(target.name + ".parts").exists()
    with pytest.raises(ValueError, match="layers"):
        open_writer(target, None, {"layers": [0], "per_residue": False})


def test_cli_embed_real_proteins_and_resume(ckpt, ecoli_fasta, tmp_path, capsys):
    with gzip.open(ecoli_fasta, "rt") as fh:
        text = fh.read(40_000)
    small = tmp_path / "ecoli_head.fasta"
    small.write_text(text[: text.rfind("\n>") + 1])
    n = small.read_text().count(">")
    out = tmp_path / "ecoli.h5"
    args = ["embed", "--checkpoint", str(ckpt), "--fasta", str(small), "--out", str(out), "--layers", "0", "-1",
            "--token-budget", "2048", "--window-residues", "300"]
    assert cli_main(args) == 0
    assert cli_main(args) == 0  # resume: nothing new
    with h5py.File(out, "r") as f:
        assert len(f) == n
        g = next(iter(f.values()))
        assert g.attrs["header"].startswith("sp|") and list(g.attrs["layers"]) == [0, 2]
        windowed = [bool(g.attrs["windowed"]) for g in f.values()]
        lengths = [int(g.attrs["length"]) for g in f.values()]
        assert windowed == [n_res > 300 for n_res in lengths] and any(windowed)
    assert cli_main(["embed", "--checkpoint", str(tmp_path / "missing.ckpt"), "--fasta", str(small),
                     "--out", str(out)]) == 1
    assert "checkpoint not found" in capsys.readouterr().err


def test_cli_embed_refuses_to_resume_with_other_weights(ckpt, ecoli_fasta, tmp_path, capsys):
    """Resuming an output with another model would mix two models' embeddings in one file: the same
    weights under another path resume, other weights are refused and the file is left as it was."""
    with gzip.open(ecoli_fasta, "rt") as fh:
        text = fh.read(6_000)
    small = tmp_path / "ecoli_head.fasta"
    small.write_text(text[: text.rfind("\n>") + 1])
    out = tmp_path / "ecoli.h5"
    args = ["embed", "--fasta", str(small), "--out", str(out), "--window-residues", "300"]
    assert cli_main([*args, "--checkpoint", str(ckpt)]) == 0
    before = out.read_bytes()
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    torch.save(state, tmp_path / "same.ckpt")
    assert cli_main([*args, "--checkpoint", str(tmp_path / "same.ckpt")]) == 0  # same weights: resumes
    name = next(k for k in state["state_dict"] if k.endswith("ff.fc.weight"))
    state["state_dict"][name] = state["state_dict"][name] + 1e-3
    torch.save(state, tmp_path / "other.ckpt")
    capsys.readouterr()
    assert cli_main([*args, "--checkpoint", str(tmp_path / "other.ckpt")]) == 1
    err = capsys.readouterr().err
    assert "other weights" in err and str(out) in err and "new --out" in err
    assert out.read_bytes() == before
