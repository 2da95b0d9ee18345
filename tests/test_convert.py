"""ESM-2 -> Performer conversion, checked against the source libraries on small random models.

Nothing is downloaded: the sources are ``transformers.EsmForMaskedLM(EsmConfig(...))`` and fair-esm
``ESM2(...)`` with random weights (every parameter perturbed, LayerNorms included). With exact
attention the converted model must reproduce the source: logits over the shared tokens and every
layer's hidden states, in batches with padding and ``<mask>`` tokens (token dropout on).

Tolerances: float32, ``<= 1e-5 * max(1, max|reference|)``. float64, ``<= 1e-10`` against fair-esm
with its one float32 cast (softmax with ``dtype=torch.float32``) removed; Hugging Face computes
rotary tables, the rotation and the token-dropout ratio in float32 even in float64 models, so
against it float64 agreement is float32-limited (checked at 1e-6).
"""

from __future__ import annotations

import argparse
import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from model_utils import random_sequences, write_fasta
from protein_performer.alphabet import ALPHABET
from protein_performer.checkpoint import load_checkpoint
from protein_performer.cli import main as cli_main
from protein_performer.model import PerformerConfig

transformers = pytest.importorskip("transformers")
esm = pytest.importorskip("esm")

from protein_performer.convert.esm import (  # noqa: E402  (after the optional imports)
    DROPPED_TOKENS,
    ESM2_TOKENS,
    convert,
    read_fair_esm,
    read_transformers,
    save,
)

DIM, HEADS, LAYERS = 40, 4, 3  # head dim 10: odd half (5 frequencies), like no real model, on purpose


def _perturb(model: torch.nn.Module, seed: int, scale: float = 0.1) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def hf_model(dtype: torch.dtype = torch.float32, token_dropout: bool = True):
    torch.manual_seed(0)
    config = transformers.EsmConfig(
        vocab_size=33, hidden_size=DIM, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=4 * DIM, position_embedding_type="rotary", token_dropout=token_dropout,
        layer_norm_eps=1e-5, pad_token_id=1, mask_token_id=32, emb_layer_norm_before=False,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=1026)
    return _perturb(transformers.EsmForMaskedLM(config), seed=1).to(dtype)


def fair_model(dtype: torch.dtype = torch.float32):
    from esm.model.esm2 import ESM2

    torch.manual_seed(0)
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    model = ESM2(num_layers=LAYERS, embed_dim=DIM, attention_heads=HEADS, alphabet=alphabet, token_dropout=True)
    return _perturb(model, seed=2).to(dtype), alphabet


@pytest.fixture
def fair_softmax_in_model_dtype(monkeypatch):
    """fair-esm's attention softmax runs in float32 even for float64 models; compute it in the
    model's dtype so a float64 comparison measures the mathematics, not that cast."""
    import esm.multihead_attention as mha

    monkeypatch.setattr(mha, "utils_softmax", lambda x, dim, onnx_trace=False: torch.softmax(x, dim=dim))


def esm_batch() -> torch.Tensor:
    """(3, L) ESM token ids: plain, with <mask> tokens and every extended code, and padded."""
    rows = [["<cls>", *"MKTAYIAKQRQISFVKSHFSRQ", "<eos>"],
            ["<cls>", *"MKV", "<mask>", *"XBUZO", "<mask>", *"LLW", "<eos>"],
            ["<cls>", *"GAVL", "<mask>", "<eos>"]]
    ids = torch.full((len(rows), max(map(len, rows))), ESM2_TOKENS.index("<pad>"))
    for b, row in enumerate(rows):
        ids[b, : len(row)] = torch.tensor([ESM2_TOKENS.index(t) for t in row])
    return ids


def to_ours(esm_ids: torch.Tensor, rows: list[int]) -> torch.Tensor:
    lut = {e: i for i, e in enumerate(rows)}
    return esm_ids.apply_(lambda t: lut[t])


def max_error(ours: torch.Tensor, ref: torch.Tensor, real: torch.Tensor) -> tuple[float, float]:
    """Largest |ours - ref| over real positions, and the reference's largest magnitude there."""
    keep = real[..., None]
    return float(((ours - ref).abs() * keep).max()), float((ref.abs() * keep).max())


def test_esm2_vocabulary_and_mapping():
    assert ESM2_TOKENS == tuple(esm.data.Alphabet.from_architecture("ESM-1b").all_toks)
    converted = convert(read_transformers(hf_model(), "random"), "exact")
    rows = converted.token_rows
    assert [ESM2_TOKENS[r] for r in rows] == list(ALPHABET.tokens)  # <cls> -> our <cls> (bos), ... X B Z U O
    assert converted.meta["dropped_tokens"] == list(DROPPED_TOKENS)
    assert converted.config.vocab_size == len(ALPHABET) == 33 - len(DROPPED_TOKENS)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_transformers_exact(dtype):
    source = hf_model()
    converted = convert(read_transformers(source, "random"), "exact")
    model, source = converted.model.to(dtype), source.to(dtype)
    ids = esm_batch()
    real = ids != ESM2_TOKENS.index("<pad>")
    with torch.no_grad():
        ref = source(ids, attention_mask=real.long(), output_hidden_states=True)
        last = source.esm(ids, attention_mask=real.long()).last_hidden_state
        out = model(to_ours(ids.clone(), converted.token_rows), real, return_layers=range(LAYERS + 1))
    refs = [*ref.hidden_states[:LAYERS], last]  # ours: 0 = embeddings, LAYERS = final (normed)
    for i, r in enumerate(refs):
        err, scale = max_error(out.hidden_states[i], r, real)
        assert err <= (1e-5 * max(1.0, scale) if dtype == torch.float32 else 1e-6), (i, err, scale)
    err, scale = max_error(out.logits, ref.logits[..., converted.token_rows], real)
    assert err <= (1e-5 * max(1.0, scale) if dtype == torch.float32 else 1e-6), (err, scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_fair_esm_exact(dtype, fair_softmax_in_model_dtype):
    source, alphabet = fair_model()
    converted = convert(read_fair_esm(source, alphabet, "random"), "exact")
    model, source = converted.model.to(dtype), source.to(dtype)  # a fresh source: fair-esm caches rotary tables
    ids = esm_batch()
    real = ids != alphabet.padding_idx
    with torch.no_grad():
        ref = source(ids, repr_layers=range(LAYERS + 1))
        out = model(to_ours(ids.clone(), converted.token_rows), real, return_layers=range(LAYERS + 1))
    tol = (lambda s: 1e-5 * max(1.0, s)) if dtype == torch.float32 else (lambda s: 1e-10)
    for i in range(LAYERS + 1):
        err, scale = max_error(out.hidden_states[i], ref["representations"][i], real)
        assert err <= tol(scale), (i, err, scale)
    err, scale = max_error(out.logits, ref["logits"][..., converted.token_rows], real)
    assert err <= tol(scale), (err, scale)


def test_favor_conversion_is_an_approximation_of_the_same_weights():
    source = hf_model()
    exact = convert(read_transformers(source, "random"), "exact")
    favor = convert(read_transformers(source, "random"), "softmax", nb_features=64)
    shared = {k: v for k, v in favor.model.state_dict().items() if not k.endswith("attn.projection")}
    for k, v in shared.items():
        torch.testing.assert_close(v, exact.model.state_dict()[k], rtol=0, atol=0)
    ids = to_ours(esm_batch(), exact.token_rows)
    real = ids != ALPHABET.pad_idx
    with torch.no_grad():
        a, b = exact.model(ids, real).logits, favor.model(ids, real).logits
    assert torch.isfinite(b).all() and 0 < float((a - b).abs().max()) < float(a.abs().max())


def test_checkpoint_loads_safely_and_records_the_conversion(tmp_path):
    converted = convert(read_transformers(hf_model(), "random-hf"), "softmax", nb_features=32)
    path = save(converted, tmp_path / "esm.ckpt")
    raw = torch.load(path, weights_only=True)
    assert raw["converted_from"]["source"] == "random-hf" and raw["converted_from"]["library"] == "transformers"
    assert raw["converted_from"]["token_mapping"]["<cls>"] == "<cls>"
    loaded = load_checkpoint(path)
    assert loaded.config == converted.config and loaded.objective == "mlm"
    assert loaded.config.lm_head == "esm" and loaded.config.token_dropout and loaded.config.rotary_frequencies == "float32"
    for k, v in converted.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[k], v, rtol=0, atol=0)
    fit_yaml = yaml.safe_load(path.with_suffix(".yaml").read_text())
    assert fit_yaml["model"]["init_from"] == str(path)
    assert PerformerConfig(**fit_yaml["model"]["config"]) == converted.config


def test_defaults_leave_todays_models_unchanged():
    config = PerformerConfig()
    assert (config.norm_eps, config.lm_head, config.token_dropout, config.rotary_frequencies) == \
        (1e-5, "linear", False, "float64")
    from protein_performer.model import PerformerLM

    model = PerformerLM(PerformerConfig(dim=16, depth=1, heads=2, nb_features=8))
    assert model.head_transform is None and not any("head_transform" in k for k in model.state_dict())


# ------------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "esm2_random"
    hf_model().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def exact_ckpt(hf_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "exact.ckpt"
    assert cli_main(["convert", "--esm", str(hf_dir), "--out", str(out), "--attention", "exact"]) == 0
    return out


@pytest.fixture(scope="module")
def proteins(tmp_path_factory):
    """Three proteins, one longer than ESM's 1,022-residue limit."""
    seqs = random_sequences(2, 30, 80, seed=3) + random_sequences(1, 1500, 1500, seed=4)
    records = [(f"p{i} protein {i}", s) for i, s in enumerate(seqs)]
    return write_fasta(tmp_path_factory.mktemp("fasta") / "p.fasta", records), seqs


def _hf_final(model, seq: str) -> np.ndarray:
    ids = torch.tensor([[ESM2_TOKENS.index(t) for t in ["<cls>", *seq, "<eos>"]]])
    with torch.no_grad():
        return model.esm(ids).last_hidden_state[0, 1:-1].numpy()  # (L, dim): residues only


@pytest.mark.parametrize("fmt", ["h5", "npz", "pt"])
def test_embed_per_residue_reproduces_esm(exact_ckpt, hf_dir, proteins, tmp_path, fmt, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fasta, seqs = proteins
    out = tmp_path / ("emb" if fmt == "pt" else f"emb.{fmt}")
    assert cli_main(["embed", "--checkpoint", str(exact_ckpt), "--fasta", str(fasta), "--out", str(out),
                     "--format", fmt, "--per-residue"]) == 0
    from protein_performer.embed import read_embeddings

    result = read_embeddings(out, per_residue=True)
    source = transformers.EsmForMaskedLM.from_pretrained(hf_dir).eval()
    for i, seq in enumerate(seqs):
        ref = _hf_final(source, seq)
        got = result[f"p{i}"]
        assert not got.windowed and got.per_residue[LAYERS].shape == ref.shape  # 1,500 residues, one window
        np.testing.assert_allclose(got.per_residue[LAYERS], ref, rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))
        np.testing.assert_allclose(got.mean[LAYERS], ref.mean(0), rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))


def test_convert_fair_esm_file_and_embed_matches_its_representations(tmp_path, proteins):
    """A fair-esm .pt file in fair-esm's own layout (model + config + contact-regression file)."""
    source, alphabet = fair_model()
    state = source.state_dict()
    regression = {k: v for k, v in state.items() if k.startswith("contact_head.")}
    cfg = argparse.Namespace(encoder_layers=LAYERS, encoder_embed_dim=DIM, encoder_attention_heads=HEADS,
                             token_dropout=True)
    pt = tmp_path / "esm2_t3_random.pt"
    torch.save({"model": {f"encoder.{k}": v for k, v in state.items() if k not in regression},
                "cfg": {"model": cfg}}, pt)
    torch.save({"model": regression}, tmp_path / "esm2_t3_random-contact-regression.pt")
    out = tmp_path / "fair.ckpt"
    assert cli_main(["convert", "--esm", str(pt), "--out", str(out), "--attention", "exact"]) == 0
    assert load_checkpoint(out).config.depth == LAYERS
    fasta, seqs = proteins
    emb = tmp_path / "fair.h5"
    assert cli_main(["embed", "--checkpoint", str(out), "--fasta", str(fasta), "--out", str(emb), "--per-residue"]) == 0
    with h5py.File(emb) as h5:
        for i, seq in enumerate(seqs[:2]):
            ids = torch.tensor([[alphabet.get_idx(t) for t in ["<cls>", *seq, "<eos>"]]])
            with torch.no_grad():
                ref = source(ids, repr_layers=[LAYERS])["representations"][LAYERS][0, 1:-1].numpy()
            got = h5[f"p{i}"]["per_residue"][0]
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))


def test_convert_errors_name_the_source(tmp_path, capsys):
    bad = tmp_path / "weights.bin"
    bad.write_bytes(b"x")
    assert cli_main(["convert", "--esm", str(bad), "--out", str(tmp_path / "o.ckpt")]) == 1
    assert "weights.bin" in capsys.readouterr().err
    assert cli_main(["convert", "--esm", str(tmp_path / "missing"), "--out", str(tmp_path / "o.ckpt")]) == 1
    assert "missing" in capsys.readouterr().err
    config = hf_model().config
    config.position_embedding_type = "absolute"
    with pytest.raises(ValueError, match="rotary"):
        read_transformers(transformers.EsmForMaskedLM(config), "esm1b-like")


def test_score_similarity_and_attention_take_a_converted_model(exact_ckpt, proteins, tmp_path, capsys):
    fasta, seqs = proteins
    assert cli_main(["score", "--checkpoint", str(exact_ckpt), "--fasta", str(fasta), "--window-tokens", "256"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["objective"] == "mlm" and np.isfinite(r["perplexity"]) and r["proteins"] == 3
    sim = tmp_path / "sim"
    assert cli_main(["similarity", "--checkpoint", str(exact_ckpt), "--fasta", str(fasta), "--out", str(sim)]) == 0
    profiles = pd.read_csv(sim / "attention_profiles.csv", index_col=0)
    assert len(profiles) == LAYERS * HEADS  # one profile dimension per head of every layer (120 for ESM-2 8M)
    png = tmp_path / "attn.png"
    assert cli_main(["attention", "--checkpoint", str(exact_ckpt), "--fasta", str(fasta), "--id", "p0",
                     "--block", "-1", "--out", str(png)]) == 0
    weights = pd.read_csv(png.with_suffix(".csv"), index_col=0).values
    assert weights.shape == (len(seqs[0]) + 2,) * 2
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-4)


@pytest.fixture(scope="module")
def small_prepared(tmp_path_factory):
    """120 random proteins prepared into three splits: enough windows for a few steps, no shared data."""
    from protein_performer.corpus.prepare import prepare

    root = tmp_path_factory.mktemp("small")
    fasta = write_fasta(root / "small.fasta", [(f"p{i}", s) for i, s in enumerate(random_sequences(120, 40, 200, 3))])
    prepare([fasta], root / "prepared", valid_fraction=0.2, test_fraction=0.2)
    return root / "prepared"


@pytest.mark.parametrize("objective", ["mlm", "clm"])
def test_fit_init_from_a_converted_model(hf_dir, small_prepared, tmp_path, objective, monkeypatch):
    from protein_performer.cli import CONFIG_DIR

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "favor.ckpt"
    assert cli_main(["convert", "--esm", str(hf_dir), "--out", str(out), "--nb-features", "16"]) == 0
    demo = CONFIG_DIR / "demo.yaml"
    extra = ["--model.objective", "clm", "--model.config.causal", "true"] if objective == "clm" else []
    args = ["fit", "--config", str(demo), "--config", str(out.with_suffix(".yaml")), *extra,
            "--data.data_dir", str(small_prepared), "--data.window_tokens", "64", "--data.batch_size", "2",
            "--data.num_workers", "0", "--trainer.max_steps", "3", "--trainer.limit_val_batches", "1",
            "--trainer.val_check_interval", "null", "--trainer.max_time", "null", "--data.limit_windows", "6",
            "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "run")]
    assert cli_main(args) == 0
    trained = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    start = load_checkpoint(out)
    assert trained.config.lm_head == "esm" and trained.config.causal == (objective == "clm")
    moved = [k for k, v in start.model.state_dict().items()
             if not torch.equal(v, trained.model.state_dict()[k])]
    assert any(k.startswith("blocks.") for k in moved)  # trained, from the converted weights


def test_core_package_never_imports_the_optional_libraries():
    """(Lightning itself imports transformers when it is installed, so lit.py is not in the list.)"""
    import subprocess
    import sys

    code = ("import sys, protein_performer.cli, protein_performer.embed, protein_performer.score, "
            "protein_performer.checkpoint, protein_performer.analysis.commands, protein_performer.convert.esm; "
            "bad = [m for m in ('transformers', 'esm') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_hub_folders_with_and_without_a_tokenizer(tmp_path):
    from protein_performer.convert.esm import load_esm

    folder = tmp_path / "hf"
    hf_model().save_pretrained(folder)
    assert load_esm(str(folder)).tokens == ESM2_TOKENS  # no tokenizer: ESM-2's vocabulary, checked
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(ESM2_TOKENS) + "\n")
    transformers.EsmTokenizer(str(vocab)).save_pretrained(folder)
    assert load_esm(str(folder)).tokens == ESM2_TOKENS  # from the tokenizer's vocabulary


def test_hybrid_conversion_local_heads_are_exact_within_their_window():
    """``--local-heads``: with every head local and a window longer than the proteins, the hybrid is
    the exact conversion; with a short window and one FAVOR+ head it is not."""
    source = hf_model()
    exact = convert(read_transformers(source, "random"), "exact")
    ids = to_ours(esm_batch(), exact.token_rows)
    real = ids != ALPHABET.pad_idx
    every = convert(read_transformers(source, "random"), "softmax", 64, local_heads=HEADS, local_window=ids.shape[1])
    hybrid = convert(read_transformers(source, "random"), "softmax", 64, local_heads=HEADS - 1, local_window=4)
    assert (hybrid.config.local_heads, hybrid.config.local_window) == (HEADS - 1, 4)
    with torch.no_grad():
        ref = exact.model(ids, real).logits
        err, scale = max_error(every.model(ids, real).logits, ref, real)  # real positions only
        assert err <= 1e-5 * max(1.0, scale), (err, scale)
        assert max_error(hybrid.model(ids, real).logits, ref, real)[0] > 1e-3
    with pytest.raises(ValueError, match="--attention exact"):
        convert(read_transformers(source, "random"), "exact", local_heads=1)


def test_convert_command_writes_a_hybrid(hf_dir, tmp_path):
    out = tmp_path / "hybrid.ckpt"
    assert cli_main(["convert", "--esm", str(hf_dir), "--out", str(out), "--nb-features", "32",
                     "--local-heads", "3", "--local-window", "8"]) == 0
    loaded = load_checkpoint(out)
    assert (loaded.config.attention, loaded.config.local_heads, loaded.config.local_window) == ("softmax", 3, 8)
    assert yaml.safe_load(out.with_suffix(".yaml").read_text())["model"]["config"]["local_heads"] == 3


# ------------------------------------------------------------------------------- issue 24: bad sources, outputs


def _damaged_copy(hf_dir, tmp_path, name: str, edit) -> str:
    """A copy of the Hugging Face folder whose model.safetensors went through ``edit(path)``."""
    import shutil

    folder = tmp_path / name
    shutil.copytree(hf_dir, folder)
    edit(folder / "model.safetensors")
    return str(folder)


def test_convert_never_replaces_outputs_without_overwrite(hf_dir, tmp_path, capsys):
    out, fit_yaml = tmp_path / "demo.ckpt", tmp_path / "demo.yaml"
    fit_yaml.write_text("trainer: {max_steps: 5}\n")  # the user's own fit YAML
    argv = ["convert", "--esm", str(hf_dir), "--out", str(out), "--nb-features", "8"]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert f"{fit_yaml} already exists" in err and "--overwrite" in err
    assert fit_yaml.read_text() == "trainer: {max_steps: 5}\n" and not out.exists()
    fit_yaml.unlink()
    assert cli_main(argv) == 0
    first = out.read_bytes()
    assert cli_main([*argv, "--attention", "exact"]) == 1  # an existing checkpoint, too
    assert "demo.ckpt already exists" in capsys.readouterr().err and out.read_bytes() == first
    assert cli_main([*argv, "--attention", "exact", "--overwrite"]) == 0
    assert load_checkpoint(out).config.attention == "exact"
    assert cli_main(["convert", "--esm", str(hf_dir), "--out", str(tmp_path / "m.yaml"), "--overwrite"]) == 1
    assert "would be --out itself" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.ckpt", "demo.yaml"]


def test_convert_refuses_missing_or_unexpected_weights(hf_dir, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    def drop_a_layer(path):
        state = {k: v for k, v in load_file(path).items() if ".layer.2." not in k}
        save_file({**state, "esm.extra.weight": torch.zeros(3)}, path, metadata={"format": "pt"})

    source = _damaged_copy(hf_dir, tmp_path, "no_layer_2", drop_a_layer)
    out = tmp_path / "o.ckpt"
    assert cli_main(["convert", "--esm", source, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "error:" in x)
    assert "weights missing (they would be random): esm.encoder.layer.2." in line and "(and 11 more)" in line
    assert "not part of ESM-2: esm.extra.weight" in line and "LOAD REPORT" not in err
    assert not out.exists() and not out.with_suffix(".yaml").exists()


def test_convert_unreadable_weight_files_are_one_line(hf_dir, tmp_path, capsys):
    def truncate(path):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    def malicious(path):
        path.unlink()
        torch.save({"esm.embeddings.word_embeddings.weight": Payload()}, path.with_name("pytorch_model.bin"))

    cases = {"truncated": (truncate, "model.safetensors is truncated or damaged"),
             "malicious": (malicious, "pytorch_model.bin holds Python objects that are not safe to load")}
    for name, (edit, expected) in cases.items():
        assert cli_main(["convert", "--esm", _damaged_copy(hf_dir, tmp_path, name, edit), "--out",
                         str(tmp_path / f"{name}.ckpt")]) == 1
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert "weights_only=False" not in err and "weights_only` set to `False" not in err
    assert not marker.exists() and not list(tmp_path.glob("*.ckpt"))


def test_convert_interrupted_while_writing_leaves_no_temporary_file(hf_dir, tmp_path, capsys, monkeypatch):
    import subprocess
    import sys

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    (tmp_path / f".o.ckpt.tmp-{dead}").write_bytes(b"\0" * 1000)  # left by a convert killed with -9
    real_save = torch.save

    def interrupted(obj, fh, *args, **kwargs):  # convert saves to a file object
        real_save(obj, fh, *args, **kwargs)
        fh.truncate(fh.tell() // 2)
        raise KeyboardInterrupt  # Ctrl-C (or SIGTERM) mid-write

    monkeypatch.setattr(torch, "save", interrupted)
    assert cli_main(["convert", "--esm", str(hf_dir), "--out", str(tmp_path / "o.ckpt"), "--nb-features", "8"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "protein-performer convert: interrupted"
    assert list(tmp_path.iterdir()) == []
