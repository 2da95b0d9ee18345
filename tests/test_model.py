"""PerformerLM: shapes, exact causality end to end, padding, layer selection, checkpointing, config."""

from __future__ import annotations

import pytest
import torch

from protein_performer.model import PerformerConfig, PerformerLM

TINY = dict(dim=16, depth=2, heads=2, nb_features=8, dropout=0.0)


def _model(**kw) -> PerformerLM:
    torch.manual_seed(0)
    return PerformerLM(PerformerConfig(**{**TINY, **kw})).eval()


def _ids(B=2, L=40, seed=0):
    return torch.randint(5, 25, (B, L), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("attention", ["softmax", "relu", "exact"])
def test_causal_model_ignores_the_future_bit_for_bit(attention):
    model = _model(attention=attention, causal=True, chunk_size=8)
    ids = _ids()
    base = model(ids).logits
    for t in (0, 7, 8, 25):
        ids2 = ids.clone()
        ids2[:, t + 1 :] = torch.randint(5, 25, ids2[:, t + 1 :].shape)
        out = model(ids2).logits
        assert torch.equal(out[:, : t + 1], base[:, : t + 1]), (attention, t)


@pytest.mark.parametrize("attention", ["softmax", "relu", "exact"])
def test_padding_leaves_real_positions_unchanged(attention):
    model = _model(attention=attention).double()
    ids = _ids(B=1, L=30)
    ref = model(ids).logits
    padded = torch.cat([ids, torch.zeros(1, 10, dtype=torch.long)], dim=1)
    mask = padded != 0
    out = model(padded, mask).logits
    torch.testing.assert_close(out[:, :30], ref, rtol=1e-10, atol=1e-10)


def test_bidirectional_model_sees_the_future():
    model = _model()
    ids = _ids()
    ids2 = ids.clone()
    ids2[:, -1] = 5 if ids[0, -1] != 5 else 6
    assert not torch.equal(model(ids).logits[:, 0], model(ids2).logits[:, 0])


def test_hidden_states_and_attention_on_request():
    model = _model(depth=3)
    out = model(_ids(), return_layers=[0, 2, -1], return_attention=[1, 3], attention_rows=torch.tensor([0, 5]))
    assert out.logits.shape == (2, 40, model.config.vocab_size)
    assert sorted(out.hidden_states) == [0, 2, 3]
    assert out.hidden_states[3].shape == (2, 40, 16)
    assert sorted(out.attentions) == [1, 3] and out.attentions[1].shape == (2, 2, 2, 40)
    torch.testing.assert_close(out.attentions[1].sum(-1), torch.ones(2, 2, 2))
    plain = model(_ids())
    assert plain.hidden_states == {} and plain.attentions == {}
    with pytest.raises(ValueError, match="out of range"):
        model(_ids(), return_layers=[4])


def test_activation_checkpointing_gives_the_same_gradients():
    ids = _ids()
    grads = []
    for ckpt in (False, True):
        model = _model(checkpointing=ckpt).train()
        model(ids).logits.square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_learned_positions_and_length_limit():
    model = _model(position="learned", max_position=32)
    assert model(_ids(L=32)).logits.shape[1] == 32
    with pytest.raises(ValueError, match="max_position"):
        model(_ids(L=33))


def test_redraw_changes_every_projection():
    model = _model(depth=2)
    before = [b.attn.projection.clone() for b in model.blocks]
    model.redraw_features(torch.Generator().manual_seed(5))
    assert all(not torch.equal(b.attn.projection, p) for b, p in zip(model.blocks, before))


def test_exact_weights_load_into_a_performer_of_the_same_shape():
    exact = _model(attention="exact")
    perf = _model(attention="softmax")
    perf.load_state_dict(exact.state_dict())
    ids = _ids()
    # Same weights, different attention: outputs close but not equal (random-feature approximation).
    assert not torch.equal(exact(ids).logits, perf(ids).logits)


@pytest.mark.parametrize("bad, match", [
    (dict(dim=10, heads=3), "divisible"),
    (dict(attention="linear"), "attention"),
    (dict(position="alibi"), "position"),
    (dict(dropout=1.5), "dropout"),
    (dict(depth=0), "depth"),
])
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        PerformerConfig(**{**TINY, **bad})


def test_rotary_scores_depend_only_on_relative_position():
    """q_i . k_j after rotary is a function of j - i (float64), and rotation keeps norms."""
    from protein_performer.attention.rotary import RotaryEmbedding, apply_rotary

    D, L = 16, 40
    rot = RotaryEmbedding(D)
    cos, sin = rot(L, device=torch.device("cpu"), dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(D, dtype=torch.float64, generator=g), torch.randn(D, dtype=torch.float64, generator=g)
    qs = apply_rotary(q.expand(1, 1, L, D), cos, sin)[0, 0]  # the same query at every position
    ks = apply_rotary(k.expand(1, 1, L, D), cos, sin)[0, 0]
    scores = qs @ ks.T  # (L, L)
    for offset in (-7, -1, 0, 1, 5):
        diagonal = torch.diagonal(scores, offset)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-12), offset
    assert not torch.allclose(torch.diagonal(scores, 1)[0], torch.diagonal(scores, 2)[0])
    assert torch.allclose(qs.norm(dim=-1), q.norm().expand(L), atol=1e-12)


def test_tied_embeddings_share_one_matrix_and_count_once():
    tied, untied = _model(), _model(tie_embeddings=False)
    assert tied.lm_head.weight is tied.embed.weight
    assert untied.lm_head.weight is not untied.embed.weight
    vocab, dim = tied.embed.weight.shape
    assert untied.num_parameters() - tied.num_parameters() == vocab * dim
    with torch.no_grad():  # training the output layer of a tied model moves the input embeddings
        tied.lm_head.weight[5].add_(1.0)
    assert torch.equal(tied.embed.weight[5], tied.lm_head.weight[5])


@pytest.mark.parametrize("options", [dict(attention="softmax"), dict(attention="relu"),
                                     dict(attention="softmax", causal=True), dict(attention="exact"),
                                     dict(attention="softmax", local_heads=1, local_window=4)])
def test_forward_under_bf16_autocast_matches_float32(options):
    """Under autocast the projections give bf16 while rotary brings q and k back to fp32: FAVOR+
    must take the mix (it failed with 'expected m1 and m2 to have the same dtype'). The same
    path runs on CUDA with bf16-mixed; here it runs on the CPU."""
    torch.manual_seed(0)
    model = PerformerLM(PerformerConfig(dim=32, depth=2, heads=2, nb_features=16, dropout=0.0, **options)).eval()
    ids = torch.randint(5, 25, (2, 40))
    ref = model(ids).logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids).logits
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)
