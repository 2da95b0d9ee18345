"""The learning options of FavorAttention: hybrid local + global heads, the q/k/v convolution,
FAVOR++, and the per-feature stabiliser at large norms. Float64 equivalence, exact causality,
padding, gradients."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from protein_performer.attention import (
    AttentionOptions,
    FavorAttention,
    exact_attention,
    favor_attention,
    gaussian_orthogonal_matrix,
)
from protein_performer.attention.features import favorpp_coefficient, softmax_log_terms
from protein_performer.attention.local import local_attention, local_attention_weights
from protein_performer.model import PerformerConfig, PerformerLM


def _qkv(B=2, H=3, L=37, D=8, dtype=torch.float64, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, L, D, generator=g, dtype=dtype) * scale for _ in range(3)]


def _banded_reference(q, k, v, window, causal, mask):
    """softmax over |t - s| <= window (s <= t when causal) with the L x L matrix formed."""
    L = q.shape[-2]
    pos = torch.arange(L)
    rel = pos[None, :] - pos[:, None]  # (L, L): s - t
    allowed = (rel.abs() <= window) & mask[:, None, None, :]
    if causal:
        allowed &= rel <= 0
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    return scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v


# --------------------------------------------------------------------------- local attention


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [1, 4, 5, 36, 100])
def test_local_attention_equals_banded_softmax_in_float64(causal, window):
    q, k, v = _qkv()
    mask = torch.ones(2, 37, dtype=torch.bool)
    mask[1, 30:] = False  # the second sequence is padded
    got = local_attention(q, k, v, window, causal=causal, key_padding_mask=mask)
    want = _banded_reference(q, k, v, window, causal, mask)
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[1, :, :30], want[1, :, :30], rtol=1e-12, atol=1e-12)
    weights = local_attention_weights(q, k, window, causal=causal, key_padding_mask=mask)
    torch.testing.assert_close((weights @ v)[1, :, :30], got[1, :, :30], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1], dtype=weights.dtype))


def test_local_attention_with_a_window_over_the_length_is_exact_attention():
    q, k, v = _qkv(L=20)
    for causal in (False, True):
        torch.testing.assert_close(local_attention(q, k, v, 64, causal=causal),
                                   exact_attention(q, k, v, causal=causal), rtol=1e-12, atol=1e-12)


def test_local_attention_gradcheck():
    q, k, v = (t.requires_grad_() for t in _qkv(B=1, H=1, L=11, D=4))
    for causal in (False, True):
        assert torch.autograd.gradcheck(lambda a, b, c: local_attention(a, b, c, 3, causal=causal), (q, k, v))


# --------------------------------------------------------------------------- the layer options


def _layer(**kw) -> FavorAttention:
    torch.manual_seed(0)
    options = AttentionOptions(nb_features=32, **kw)
    return FavorAttention(16, 4, options, generator=torch.Generator().manual_seed(0)).double()


def test_hybrid_heads_are_local_exact_then_favor():
    layer = _layer(local_heads=2, local_window=3)
    x = torch.randn(2, 25, 16, dtype=torch.float64)
    B, L = x.shape[:2]
    q, k, v = layer.qkv(x).view(B, L, 3, 4, 4).permute(2, 0, 3, 1, 4)
    rot = None
    want = torch.cat([local_attention(q[:, :2], k[:, :2], v[:, :2], 3),
                      favor_attention(q[:, 2:], k[:, 2:], v[:, 2:], layer.projection)], dim=1)
    want = layer.out(want.transpose(1, 2).reshape(B, L, 16))
    got, weights = layer(x, rotary=rot, need_weights=True)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert weights.shape == (2, 4, 25, 25)
    assert torch.all(weights[:, :2].triu(4) == 0) and torch.all(weights[:, :2].tril(-4) == 0)  # the window
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 25, dtype=torch.float64))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("width", [3, 4])
def test_qkv_convolution_is_a_depthwise_conv1d(causal, width):
    layer = _layer(conv_width=width, causal=causal)
    with torch.no_grad():
        layer.conv_weight.normal_()
    qkv = torch.randn(2, 13, 48, dtype=torch.float64)
    left = width - 1 if causal else (width - 1) // 2
    want = F.conv1d(F.pad(qkv.transpose(1, 2), (left, width - 1 - left)), layer.conv_weight.unsqueeze(1),
                    groups=48).transpose(1, 2)
    torch.testing.assert_close(layer._convolve(qkv, None), want, rtol=1e-12, atol=1e-12)


def test_convolution_starts_as_the_identity():
    plain, conv = _layer(), _layer(conv_width=3)
    conv.load_state_dict({**plain.state_dict(), "conv_weight": conv.conv_weight}, strict=True)
    x = torch.randn(1, 20, 16, dtype=torch.float64)
    torch.testing.assert_close(conv(x)[0], plain(x)[0], rtol=0, atol=0)


OPTIONS = [dict(local_heads=1, local_window=5), dict(conv_width=4), dict(feature_map="favor++"),
           dict(segment_attention=True),
           dict(local_heads=1, local_window=3, conv_width=3, feature_map="favor++", segment_attention=True)]


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("attention", ["softmax", "relu", "exact"])
def test_causal_model_with_options_ignores_the_future_bit_for_bit(options, attention):
    if attention != "softmax" and "feature_map" in options:
        pytest.skip("FAVOR++ is a softmax feature map")
    torch.manual_seed(0)
    model = PerformerLM(PerformerConfig(dim=16, depth=2, heads=2, nb_features=8, dropout=0.0, causal=True,
                                        chunk_size=8, attention=attention, **options))
    if "feature_map" in options:  # a measured rho, so that A != 0
        model.train()
        model(torch.randint(5, 25, (2, 30)))
        model.commit_feature_statistics()
    model.eval()
    ids = torch.randint(5, 25, (2, 40), generator=torch.Generator().manual_seed(0))
    base = model(ids).logits
    for t in (0, 7, 8, 25):
        ids2 = ids.clone()
        ids2[:, t + 1:] = torch.randint(5, 25, ids2[:, t + 1:].shape)
        assert torch.equal(model(ids2).logits[:, : t + 1], base[:, : t + 1]), (options, t)


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("causal", [False, True])
def test_padding_leaves_real_positions_unchanged_with_options(options, causal):
    torch.manual_seed(0)
    model = PerformerLM(PerformerConfig(dim=16, depth=2, heads=2, nb_features=8, dropout=0.0, causal=causal,
                                        **options)).double().eval()
    ids = torch.randint(5, 25, (1, 30), generator=torch.Generator().manual_seed(1))
    padded = torch.cat([ids, torch.zeros(1, 10, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(padded, padded != 0).logits[:, :30], model(ids).logits,
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("options", OPTIONS)
def test_gradients_reach_every_parameter(options):
    torch.manual_seed(0)
    model = PerformerLM(PerformerConfig(dim=16, depth=1, heads=2, nb_features=8, dropout=0.0, **options))
    model(torch.randint(5, 25, (2, 24))).logits.logsumexp(-1).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_layer_gradcheck_with_options():
    layer = _layer(local_heads=2, local_window=2, conv_width=3, causal=True)
    with torch.no_grad():
        layer.conv_weight.normal_()
    x = torch.randn(1, 9, 16, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: layer(t)[0], (x,))


def test_option_validation():
    for bad, match in ((dict(local_heads=3), "local_heads"), (dict(conv_width=1), "conv_width"),
                       (dict(local_window=0), "local_window"), (dict(feature_map="favor#"), "feature_map"),
                       (dict(feature_map="favor++", attention="relu"), "softmax")):
        with pytest.raises(ValueError, match=match):
            PerformerConfig(dim=16, depth=1, heads=2, **bad)


# --------------------------------------------------------------------------- FAVOR++


def _estimates(x, y, a, draws, m=1, seed=0):
    """Single-feature-sample estimates of exp(x . y / sqrt(d)) (float64): (draws, n) for n pairs."""
    d = x.shape[-1]
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(draws * m, d, generator=g, dtype=torch.float64)
    at = None if a is None else torch.tensor(a, dtype=torch.float64)
    px, hx = softmax_log_terms(x, w, at)  # (n, draws * m), (n,)
    py, hy = softmax_log_terms(y, w, at)
    return torch.exp(px - hx[:, None] + py - hy[:, None]).t().reshape(draws, m, -1).mean(1)


@pytest.mark.parametrize("a", [None, 0.05, -0.3])  # finite variance needs A < 1/8
def test_favorpp_is_unbiased_for_any_a_below_a_quarter(a):
    g = torch.Generator().manual_seed(3)
    d = 4
    x = torch.randn(6, d, generator=g, dtype=torch.float64) * 0.5
    y = torch.randn(6, d, generator=g, dtype=torch.float64) * 0.5
    target = torch.exp((x * y).sum(-1) / math.sqrt(d))
    est = _estimates(x, y, a, 400_000).mean(0)
    torch.testing.assert_close(est, target, rtol=0.02, atol=0)


def test_favorpp_optimal_a_has_lower_variance_than_favor_plus():
    g = torch.Generator().manual_seed(4)
    d = 8
    x = torch.randn(1, d, generator=g, dtype=torch.float64) * 1.5
    y = x + 0.3 * torch.randn(1, d, generator=g, dtype=torch.float64)  # a strong pair, where it matters
    rho = ((x + y) / d**0.25).pow(2).sum() / d
    a_star = float(favorpp_coefficient(rho))
    assert a_star < 0
    var = {a: _estimates(x, y, a, 200_000, seed=5).var(0).item() for a in (0.0, a_star, a_star / 2, 2 * a_star)}
    assert var[a_star] < var[0.0] * 0.8
    assert var[a_star] <= min(var[a_star / 2], var[2 * a_star]) * 1.05  # the optimum (up to MC noise)


def test_favorpp_statistic_updates_only_when_training_and_committed():
    torch.manual_seed(0)
    model = PerformerLM(PerformerConfig(dim=16, depth=1, heads=2, nb_features=8, dropout=0.0,
                                        feature_map="favor++"))
    rho = model.blocks[0].attn.favorpp_rho
    assert torch.all(rho == -1)
    ids = torch.randint(5, 25, (2, 24))
    model.eval()
    model(ids)
    model.commit_feature_statistics()
    assert torch.all(rho == -1)  # inference never changes it
    model.train()
    before = model(ids).logits
    assert torch.all(rho == -1)  # measured, not yet committed: a recomputed forward matches
    torch.testing.assert_close(model(ids).logits, before, rtol=0, atol=0)
    model.commit_feature_statistics()
    assert torch.all(rho > 0)
    assert "blocks.0.attn.favorpp_rho" in model.state_dict()


# --------------------------------------------------------------------------- large norms


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bidirectional_rows_stay_finite_and_nonzero_at_large_norms(dtype):
    q, k, v = _qkv(B=1, H=2, L=2048, D=64, dtype=dtype, scale=100.0)
    w = gaussian_orthogonal_matrix(256, 64, generator=torch.Generator().manual_seed(0), dtype=dtype)
    out = favor_attention(q, k, v, w)
    assert torch.isfinite(out).all()
    assert not (out == 0).all(-1).any()
    # Every output is a convex combination of the values.
    assert torch.all(out <= v.amax(-2, keepdim=True) + 1e-4) and torch.all(out >= v.amin(-2, keepdim=True) - 1e-4)


# --------------------------------------------------------------------------- per-protein attention


@pytest.mark.parametrize("options", [dict(), dict(attention="exact"), dict(attention="relu"),
                                     dict(local_heads=1, local_window=4), dict(conv_width=3)])
@pytest.mark.parametrize("causal", [False, True])
def test_segment_attention_equals_each_protein_alone(options, causal):
    """In a concatenated window, each protein's hidden states equal those of the protein served
    alone (float64): nothing crosses an <eos>, and positions restart at every protein."""
    from protein_performer.alphabet import ALPHABET

    torch.manual_seed(0)
    config = PerformerConfig(dim=16, depth=2, heads=2, nb_features=8, dropout=0.0, causal=causal,
                             segment_attention=True, chunk_size=4, **options)
    model = PerformerLM(config).double().eval()
    g = torch.Generator().manual_seed(2)
    proteins = [torch.randint(5, 25, (n,), generator=g) for n in (7, 12, 5)]
    eos = torch.tensor([ALPHABET.eos_idx])
    window = torch.cat([torch.cat([p, eos]) for p in proteins])[None]  # (1, 27)
    out = model(window, return_layers=[-1]).hidden_states[2][0]
    start = 0
    for p in proteins:
        alone = model(torch.cat([p, eos])[None], return_layers=[-1]).hidden_states[2][0]
        torch.testing.assert_close(out[start : start + len(p) + 1], alone, rtol=1e-10, atol=1e-10)
        start += len(p) + 1
    weights = model(window, return_attention=[1]).attentions[1][0]  # (H, L, L)
    assert torch.all(weights[:, :8, 8:] == 0) and torch.all(weights[:, 8:21, :8] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 27, dtype=torch.float64))


@pytest.mark.parametrize("options", [dict(), dict(attention="exact"), dict(local_heads=1, local_window=4, conv_width=3)])
@pytest.mark.parametrize("causal", [False, True])
def test_segment_attention_in_padded_batches_equals_each_protein_alone_with_gradients(options, causal):
    """Two padded rows of proteins of very different lengths (several padded groups of segments):
    outputs equal each protein served alone, and so do the gradients (float64)."""
    from protein_performer.alphabet import ALPHABET
    from protein_performer.attention.layer import segment_groups

    torch.manual_seed(0)
    config = PerformerConfig(dim=16, depth=2, heads=2, nb_features=8, dropout=0.0, causal=causal,
                             segment_attention=True, chunk_size=4, **options)
    model = PerformerLM(config).double()
    g = torch.Generator().manual_seed(3)
    rows = [[torch.randint(5, 25, (n,), generator=g) for n in r] for r in ((30, 3, 11, 12), (2, 19, 40))]
    eos = torch.tensor([ALPHABET.eos_idx])
    framed = [[torch.cat([p, eos]) for p in r] for r in rows]
    width = max(sum(len(p) for p in r) for r in framed)
    ids = torch.full((2, width), ALPHABET.pad_idx)
    for b, r in enumerate(framed):
        ids[b, : sum(len(p) for p in r)] = torch.cat(r)
    from protein_performer.attention import protein_segments

    assert len(segment_groups(protein_segments(ids, ALPHABET.eos_idx))) >= 3
    out = model(ids, attention_mask=ids != ALPHABET.pad_idx, return_layers=[-1]).hidden_states[2]
    weight = torch.randn(out.shape, generator=g, dtype=torch.float64)
    real = (ids != ALPHABET.pad_idx)[..., None]
    (out * weight * real).sum().backward()
    batched = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    total = 0
    for b, r in enumerate(framed):
        start = 0
        for p in r:
            alone = model(p[None], return_layers=[-1]).hidden_states[2][0]
            torch.testing.assert_close(out[b, start : start + len(p)], alone, rtol=1e-10, atol=1e-10)
            total = total + (alone * weight[b, start : start + len(p)]).sum()
            start += len(p)
    total.backward()
    for got, want in zip(batched, (p.grad for p in model.parameters())):
        assert (got is None) == (want is None)
        if got is not None:
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_protein_segments_split_after_each_eos():
    from protein_performer.attention import protein_segments

    ids = torch.tensor([[5, 6, 3, 7, 3, 8, 9], [3, 5, 5, 5, 5, 5, 3]])
    assert protein_segments(ids, 3) == [[(0, 3), (3, 5), (5, 7)], [(0, 1), (1, 7)]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_causal_rows_stay_finite_and_nonzero_at_large_norms(dtype):
    """×100 norms used to zero 95% of causal rows (every term underflowed); lost rows are now
    recomputed with per-feature running references. Position 0 attends to itself only: v[0]."""
    q, k, v = _qkv(B=1, H=2, L=1024, D=64, dtype=dtype, scale=100.0)
    w = gaussian_orthogonal_matrix(256, 64, generator=torch.Generator().manual_seed(0), dtype=dtype)
    out = favor_attention(q, k, v, w, causal=True, chunk_size=128)
    assert torch.isfinite(out).all()
    assert not (out == 0).all(-1).any()
    torch.testing.assert_close(out[:, :, 0], v[:, :, 0], rtol=1e-6, atol=1e-6)
    # Every causal output is a convex combination of the values so far.
    running_max = torch.cummax(v, dim=-2).values
    running_min = -torch.cummax(-v, dim=-2).values
    assert torch.all(out <= running_max + 1e-4) and torch.all(out >= running_min - 1e-4)
    if dtype == torch.float32:  # the same rows in float64: the recomputation is accurate, not just nonzero
        ref = favor_attention(q.double(), k.double(), v.double(), w.double(), causal=True, chunk_size=128)
        # Logits here are ~1e3, so fp32 rounding (~1e-4 in log space) may flip near-ties between
        # keys; all other rows must agree.
        close = ((out.double() - ref).abs() <= 1e-3).all(-1)  # (B, H, L)
        assert close.float().mean() > 0.99, close.float().mean()


def test_per_feature_path_equals_the_fast_path_in_float64():
    """At ordinary norms both causal paths are the same sum: float64 agreement on every row,
    with padding, odd lengths and FAVOR++ coefficients."""
    from protein_performer.attention.features import softmax_log_terms
    from protein_performer.attention.linear import _causal_per_feature

    q, k, v = _qkv(B=2, H=3, L=77, D=8, scale=1.5)
    w = gaussian_orthogonal_matrix(24, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mask = torch.ones(2, 77, dtype=torch.bool)
    mask[1, 60:] = False
    for a in (None, torch.tensor([0.0, -0.1, -0.3], dtype=torch.float64)):
        fast = favor_attention(q, k, v, w, causal=True, key_padding_mask=mask, chunk_size=16, feature_a=a)
        a3 = None if a is None else a.view(-1, 1, 1)
        logq, _ = softmax_log_terms(q, w, a3)
        kp, k_sq = softmax_log_terms(k, w, a3)
        logk = (kp - k_sq.unsqueeze(-1)).masked_fill(~mask[:, None, :, None], float("-inf"))
        v1 = torch.nn.functional.pad(v, (0, 1), value=1.0).masked_fill(~mask[:, None, :, None], 0.0)
        out = _causal_per_feature(logq, logk, v1, torch.ones(2, 3, 77, dtype=torch.bool), chunk_size=5)
        slow = out[..., :-1] / out[..., -1:]
        torch.testing.assert_close(slow[0], fast[0], rtol=1e-11, atol=1e-11)
        torch.testing.assert_close(slow[1, :, :60], fast[1, :, :60], rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_causal_rows_at_large_norms_ignore_the_future_bit_for_bit(dtype):
    q, k, v = _qkv(B=1, H=2, L=300, D=16, dtype=dtype, scale=100.0)
    w = gaussian_orthogonal_matrix(32, 16, generator=torch.Generator().manual_seed(3), dtype=dtype)
    base = favor_attention(q, k, v, w, causal=True, chunk_size=64)
    assert not (base == 0).all(-1).any()
    for t in (0, 40, 63, 64, 150, 298):
        q2, k2, v2 = (x.clone() for x in (q, k, v))
        k2[:, :, t + 1:] = torch.randn_like(k2[:, :, t + 1:]) * 300
        q2[:, :, t + 1:] = 0.01
        v2[:, :, t + 1:] = 1e6
        out = favor_attention(q2, k2, v2, w, causal=True, chunk_size=64)
        assert torch.equal(out[:, :, : t + 1], base[:, :, : t + 1]), f"position <= {t} changed"


# --------------------------------------------------------------------------- inference fast path


def _training_path(q, k, v, w, **kw):
    """favor_attention through the autograd path (a query that requires grad), detached."""
    return favor_attention(q.clone().requires_grad_(), k, v, w, **kw).detach()


@pytest.mark.parametrize("scale", [1.0, 30.0])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("favorpp", [False, True])
@pytest.mark.parametrize("block_rows", [None, 40, 300])  # None: the default blocking (one block here)
def test_inference_path_equals_training_path(scale, padded, favorpp, block_rows, monkeypatch):
    """No-gradient bidirectional softmax attention (blocked, in place) is the function of the
    autograd path: float64 agreement to 1e-12 relative at every real position, at x1 and x30
    norms, with padding and with FAVOR++'s A; blocks over sequences (300) and over heads (40)."""
    from protein_performer.attention import linear

    if block_rows is not None:
        monkeypatch.setattr(linear, "INFERENCE_BLOCK_ROWS", block_rows)
    q, k, v = _qkv(B=3, H=4, L=37, D=16, scale=scale, seed=3)
    w = gaussian_orthogonal_matrix(32, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mask = None
    if padded:
        mask = torch.ones(3, 37, dtype=torch.bool)
        mask[0, 30:] = False
        mask[2, 5:] = False
        k[0, :, 33] = float("nan")  # a padded key's garbage must not leak (as in the autograd path)
        v[2, :, 20] = float("inf")
    a = torch.tensor([-0.1, -0.3, 0.0, -0.02], dtype=torch.float64) if favorpp else None
    want = _training_path(q, k, v, w, key_padding_mask=mask, feature_a=a)
    with torch.inference_mode():
        got = favor_attention(q, k, v, w, key_padding_mask=mask, feature_a=a)
    real = torch.ones(3, 37, dtype=torch.bool) if mask is None else mask
    real = real[:, None, :].expand(3, 4, 37)  # (B, H, L)
    assert torch.isfinite(got[real]).all()
    err = (got[real] - want[real]).abs().max() / want[real].abs().max()
    assert err <= 1e-12


@pytest.mark.parametrize("context", ["inference_mode", "no_grad", "plain_inputs", "training"])
def test_inference_path_is_taken_without_gradients_only(context, monkeypatch):
    """The fast path serves inference_mode, no_grad and inputs that need no gradient; with a
    gradient to compute, the autograd path runs and gradients reach q, k and v."""
    from protein_performer.attention import linear

    calls = []
    fast = linear._softmax_bidirectional_inference
    monkeypatch.setattr(linear, "_softmax_bidirectional_inference", lambda *a: calls.append(1) or fast(*a))
    q, k, v = _qkv(B=2, H=2, L=11, D=8)
    w = gaussian_orthogonal_matrix(16, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mask = torch.ones(2, 11, dtype=torch.bool)
    mask[1, 7:] = False
    if context == "training":
        q, k, v = (t.requires_grad_() for t in (q, k, v))
        out = favor_attention(q, k, v, w, key_padding_mask=mask)
        out[mask[:, None, :].expand(2, 2, 11)].square().sum().backward()
        assert not calls
        assert all(t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0 for t in (q, k, v))
        return
    ctx = {"inference_mode": torch.inference_mode, "no_grad": torch.no_grad}.get(context)
    if ctx is None:
        favor_attention(q, k, v, w, key_padding_mask=mask)
    else:
        with ctx():
            favor_attention(q.requires_grad_(), k, v, w, key_padding_mask=mask)
    assert calls == [1]
    for kw in (dict(causal=True), dict(kernel="relu")):  # only the bidirectional softmax kernel
        with torch.inference_mode():
            favor_attention(q.detach(), k, v, w, **kw)
    assert calls == [1]


def test_inference_path_serves_a_model_in_eval():
    """A Performer's embeddings under inference_mode equal those computed with gradients on
    (float64, padded batch): the model-level view of the equivalence above."""
    torch.manual_seed(0)
    config = PerformerConfig(dim=32, depth=2, heads=4, nb_features=16, dropout=0.0)
    model = PerformerLM(config).double().eval()
    ids = torch.randint(5, 25, (3, 19))
    mask = torch.ones(3, 19, dtype=torch.bool)
    mask[1, 12:] = False
    want = model(ids, mask).logits  # parameters require grad: the autograd path
    with torch.inference_mode():
        got = model(ids, mask).logits
    torch.testing.assert_close(got[mask], want.detach()[mask], rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- column heads


def _aligned_window(seed: int = 0, members: int = 4, width: int = 9):
    """(1, L) ids and (1, L) aligned positions of ``members`` framed members with gaps (jumps) and
    an insertion (a repeated position)."""
    from protein_performer.alphabet import ALPHABET
    from protein_performer.datasets import framed_positions

    g = torch.Generator().manual_seed(seed)
    ids, pos = [], []
    for m in range(members):
        cols = [c for c in range(width) if (c + m) % 4 != 3]  # each member skips some columns
        cols = sorted(cols + cols[2:3])  # and inserts after one
        standard = torch.tensor(ALPHABET.standard_indices)
        residues = standard[torch.randint(0, 20, (len(cols),), generator=g)]
        ids += [ALPHABET.cls_idx, *residues.tolist(), ALPHABET.eos_idx]
        pos += framed_positions(torch.tensor(cols).numpy()).tolist()
    return torch.tensor([ids]), torch.tensor([pos])


def test_column_heads_equal_local_heads_over_the_window_sorted_by_position():
    """All local heads in column order = the same layer without column heads applied to the
    window sorted by position (stably), then put back: FAVOR+ heads are order-free, rotary
    travels with each token. Float64, values and weights."""
    from protein_performer.model import column_permutation

    torch.manual_seed(0)
    options = AttentionOptions(nb_features=8, local_heads=2, local_window=2)
    plain = FavorAttention(16, 4, options).double()
    column = FavorAttention(16, 4, replace(options, column_heads=2)).double()
    column.load_state_dict(plain.state_dict())
    _, positions = _aligned_window()
    L = positions.shape[1]
    x = torch.randn(1, L, 16, dtype=torch.float64)
    from protein_performer.attention.rotary import RotaryEmbedding

    cos, sin = RotaryEmbedding(4)(int(positions.max()) + 1, device=x.device, dtype=x.dtype)
    rotary = (cos[positions].unsqueeze(1), sin[positions].unsqueeze(1))  # (1, 1, L, hd)
    order, inverse = column_permutation(positions)
    assert torch.equal(positions[0, order[0]], positions[0].sort(stable=True).values)
    y, w = column(x, rotary=rotary, column_order=(order, inverse), need_weights=True)
    sorted_rotary = tuple(t[:, :, order[0]] for t in rotary)
    ys, ws = plain(x[:, order[0]], rotary=sorted_rotary, need_weights=True)
    torch.testing.assert_close(y, ys[:, inverse[0]], rtol=0, atol=1e-12)
    torch.testing.assert_close(w, ws[:, :, inverse[0]][:, :, :, inverse[0]], rtol=0, atol=1e-12)
    rows = torch.tensor([3, 17, L - 1])
    _, wr = column(x, rotary=rotary, column_order=(order, inverse), need_weights=True, weight_rows=rows)
    torch.testing.assert_close(wr, w[:, :, rows], rtol=0, atol=0)
    # a column head reads the same column of the other members: its keys sit at positions p-1..p+1
    p = positions[0]
    for i in range(L):
        keys = torch.nonzero(w[0, 1, i] > 0).flatten()
        assert (p[keys] - p[i]).abs().max() <= 1 and len(set(keys.tolist()) - set(range(i - 2, i + 3)))


def test_column_heads_of_a_lone_protein_are_its_local_heads():
    torch.manual_seed(0)
    common = dict(dim=16, depth=2, heads=4, nb_features=8, local_heads=2, restart_positions=True, dropout=0.0)
    plain = PerformerLM(PerformerConfig(**common)).double().eval()
    column = PerformerLM(PerformerConfig(**common, column_heads=1)).double().eval()
    column.load_state_dict(plain.state_dict())
    ids, _ = _aligned_window(members=1)
    torch.testing.assert_close(column(ids).logits, plain(ids).logits, rtol=0, atol=1e-12)
    ids, _ = _aligned_window(members=3)  # several members: the column head reads across them
    assert not torch.allclose(column(ids).logits, plain(ids).logits)
    padded = torch.cat([ids, torch.full((1, 5), 1)], 1)  # right padding changes no real position
    mask = torch.cat([torch.ones_like(ids, dtype=torch.bool), torch.zeros(1, 5, dtype=torch.bool)], 1)
    torch.testing.assert_close(column(padded, mask).logits[:, : ids.shape[1]], column(ids).logits,
                               rtol=0, atol=1e-10)


def test_column_heads_validation():
    with pytest.raises(ValueError, match="column_heads must be in"):
        PerformerConfig(dim=16, heads=4, local_heads=1, column_heads=2, restart_positions=True)
    for bad in (dict(causal=True, restart_positions=True), dict(segment_attention=True, restart_positions=True),
                dict()):
        with pytest.raises(ValueError, match="column_heads need a masked model"):
            PerformerConfig(dim=16, heads=4, local_heads=2, column_heads=1, **bad)
