"""Stepwise decoding equals the full causal forward; sampling is reproducible and well-formed."""

from __future__ import annotations

import re

import pytest
import torch

from protein_performer.alphabet import ALPHABET
from protein_performer.cli import main
from protein_performer.generate import SamplingConfig, generate, sample_next
from protein_performer.model import PerformerConfig, PerformerLM

TINY = dict(dim=16, depth=2, heads=2, nb_features=8, dropout=0.0, causal=True)

# Every attention option of PerformerConfig, one model each (and some together).
OPTIONS = {
    "softmax": {},
    "relu": dict(attention="relu"),
    "exact": dict(attention="exact"),
    "local_softmax": dict(local_heads=1, local_window=5),
    "local_relu": dict(attention="relu", local_heads=1, local_window=7),
    "local_exact": dict(attention="exact", local_heads=1, local_window=3),
    "conv": dict(conv_width=3),
    "conv_relu": dict(attention="relu", conv_width=2),
    "favorpp": dict(feature_map="favor++"),
    "segments": dict(segment_attention=True),
    "segments_relu_local_conv": dict(attention="relu", segment_attention=True, local_heads=1, conv_width=3),
    "segments_exact": dict(attention="exact", segment_attention=True),
    "learned_positions": dict(position="learned", max_position=4096),
    "esm_options": dict(lm_head="esm", token_dropout=True, norm_eps=1e-6, rotary_frequencies="float32"),
    "sqrt_d_small_chunks": dict(feature_scaling="sqrt_d", chunk_size=32),
}


def random_model(seed: int = 0, std: float = 0.2, **config) -> PerformerLM:
    """A causal model whose weights are large enough that attention shapes the logits."""
    torch.manual_seed(seed)
    model = PerformerLM(PerformerConfig(**{**TINY, **config})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0.0, std)
        for block in model.blocks:
            if block.attn.options.feature_map == "favor++":
                block.attn.favorpp_rho.fill_(0.7)  # A != 0: FAVOR++ proper
    return model


def random_tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(ALPHABET.standard_indices[0], ALPHABET.standard_indices[-1] + 1, (batch, length), generator=g)
    ids[:, 0] = ALPHABET.cls_idx
    ids[0, 700] = ids[1, 37] = ids[1, 900] = ALPHABET.eos_idx  # proteins end (segment_attention restarts)
    return ids


@pytest.mark.parametrize("name", list(OPTIONS))
def test_stepwise_logits_equal_the_causal_forward_at_every_position(name):
    # 1,100 positions: 18 causal chunks of 64, exact caches that double at 256, 512 and 1,024, proteins that end
    # at 37, 700 and 900; tests/test_kernels.py checks each kernel alone the same way at 300
    L = 1100
    model = random_model(**OPTIONS[name])
    ids = random_tokens(2, L)
    with torch.no_grad():
        full = model(ids).logits  # (B, L, V)
        state = model.init_state(2)
        steps = torch.stack([model.step(ids[:, t], state) for t in range(L)], dim=1)  # (B, L, V)
    assert full.std(dim=1).mean() > 0.1  # the logits move with the context: the check is not vacuous
    torch.testing.assert_close(steps, full, rtol=0, atol=1e-5)


def test_the_favor_state_stays_the_same_size_and_the_exact_cache_grows():
    sizes = {}
    for kind in ("softmax", "exact"):
        model = random_model(attention=kind, local_heads=1)
        state = model.init_state(1)
        with torch.no_grad():
            for t in range(600):
                model.step(torch.tensor([ALPHABET.standard_indices[t % 20]]), state)
                if t in (10, 599):
                    sizes[kind, t] = state.nbytes()
    assert sizes["softmax", 10] == sizes["softmax", 599]
    assert sizes["exact", 599] > sizes["exact", 10]


def test_a_masked_model_cannot_step():
    model = PerformerLM(PerformerConfig(**{**TINY, "causal": False}))
    with pytest.raises(ValueError, match="masked .non-causal. model.*causal"):
        model.init_state(1)


def test_sampling_respects_top_k_top_p_and_draws_only_residues_and_eos():
    logits = torch.randn(512, len(ALPHABET))
    logits[:, ALPHABET.mask_idx] = 100.0  # never drawable, however likely
    g = torch.Generator().manual_seed(0)
    drawn = sample_next(logits, SamplingConfig(), g)
    assert set(drawn.tolist()) <= {*ALPHABET.standard_indices, ALPHABET.eos_idx}
    top1 = sample_next(logits, SamplingConfig(top_k=1), g)
    allowed = torch.tensor([*ALPHABET.standard_indices, ALPHABET.eos_idx])
    assert torch.equal(top1, allowed[logits[:, allowed].argmax(-1)])
    assert torch.equal(sample_next(logits, SamplingConfig(top_p=1e-6), g), top1)


def _full_mean_log_likelihood(model: PerformerLM, sequence: str, ended: bool) -> float:
    tokens = torch.tensor(ALPHABET.frame(sequence), dtype=torch.long)
    if not ended:
        tokens = tokens[:-1]
    with torch.no_grad():
        lp = model(tokens[None]).logits[0, :-1].double().log_softmax(-1)  # predicts tokens[1:]
    return float(lp.gather(-1, tokens[1:, None]).mean())


def test_generation_is_reproducible_and_reports_its_mean_log_likelihood():
    model = random_model(std=0.1)
    with torch.no_grad():  # make <eos> likely enough that some sequences end before max_residues
        model.lm_head.bias[ALPHABET.eos_idx] = -0.5
    sampling = SamplingConfig(max_residues=40, temperature=1.0)
    first = generate(model, "MK", 6, sampling, torch.Generator().manual_seed(7))
    again = generate(model, "MK", 6, sampling, torch.Generator().manual_seed(7))
    other = generate(model, "MK", 6, sampling, torch.Generator().manual_seed(8))
    assert first == again and first != other
    assert any(g.ended for g in first) and any(not g.ended for g in first)
    for g in first:
        assert g.sequence.startswith("MK") and len(g.sequence) <= 40
        assert g.ended or len(g.sequence) == 40
        assert g.mean_log_likelihood == pytest.approx(_full_mean_log_likelihood(model, g.sequence, g.ended), abs=1e-5)


def save_checkpoint(model: PerformerLM, path, objective: str):
    """The fields of a ProteinLM checkpoint that load_checkpoint reads (plain tensors and types)."""
    from protein_performer.alphabet import ALPHABET_VERSION

    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "performer_config": model.config.to_dict(), "objective": objective,
                "alphabet_version": ALPHABET_VERSION}, path)
    return path


def test_generate_command_writes_fasta_and_refuses_masked_models(tmp_path, capsys):
    from model_utils import tiny_checkpoint

    causal = save_checkpoint(random_model(std=0.1), tmp_path / "clm.ckpt", "clm")
    out = tmp_path / "gen.fasta"
    argv = ["generate", "--checkpoint", str(causal), "--prompt", "MA", "--num", "3", "--stop-at-residues", "30",
            "--seed", "3", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    text = out.read_text()
    headers = [line for line in text.splitlines() if line.startswith(">")]
    assert len(headers) == 3
    assert all(re.match(r">generated_\d mean_log_likelihood=-?\d+\.\d{4} length=\d+ prompt_length=2 stop=(eos|max_length)$", h)
               for h in headers)
    assert main(argv) == 1 and "already exists; use --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0 and out.read_text() == text  # same seed, same file

    masked = tiny_checkpoint(tmp_path / "mlm.ckpt")
    assert main(["generate", "--checkpoint", str(masked), "--out", str(tmp_path / "x.fasta"), "--device", "cpu"]) == 1
    assert "masked (non-causal) model cannot generate" in capsys.readouterr().err
