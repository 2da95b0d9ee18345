"""FAVOR+ mathematics: exact equivalences in float64, causality bit for bit, unbiasedness, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from protein_performer.attention import (
    AttentionOptions,
    FavorAttention,
    exact_attention,
    favor_attention,
    favor_attention_weights,
    gaussian_orthogonal_matrix,
    iid_gaussian_matrix,
    relu_features,
    softmax_features,
)
from protein_performer.attention.features import softmax_log_terms

KERNELS = ("softmax", "relu")


def _phi(x, w, kernel, is_query):
    return softmax_features(x, w, is_query=is_query) if kernel == "softmax" else relu_features(x, w)


def _explicit(q, k, v, w, kernel, causal, mask=None):
    """Normalised phi(Q) phi(K)^T V with the L x L matrix formed explicitly."""
    a = _phi(q, w, kernel, True) @ _phi(k, w, kernel, False).transpose(-2, -1)  # (B, H, L, L)
    L = q.shape[-2]
    if causal:
        a = a * torch.ones(L, L, dtype=a.dtype).tril()
    if mask is not None:
        a = a * mask[:, None, None, :]
    return (a @ v) / a.sum(-1, keepdim=True)


def _qkv(B=2, H=3, L=37, D=8, dtype=torch.float64, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, L, D, generator=g, dtype=dtype) * scale for _ in range(3)]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk", [1, 5, 16, 64])
def test_favor_equals_explicit_normalised_product(kernel, causal, chunk):
    q, k, v = _qkv(scale=1.5)
    w = gaussian_orthogonal_matrix(24, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = favor_attention(q, k, v, w, kernel=kernel, causal=causal, chunk_size=chunk)
    want = _explicit(q, k, v, w, kernel, causal)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
def test_weights_match_attention(kernel):
    q, k, v = _qkv(L=20)
    w = gaussian_orthogonal_matrix(16, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for causal in (False, True):
        a = favor_attention_weights(q, k, w, kernel=kernel, causal=causal, block_size=7)
        torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:-1], dtype=a.dtype), rtol=0, atol=1e-12)
        torch.testing.assert_close(a @ v, favor_attention(q, k, v, w, kernel=kernel, causal=causal),
                                   rtol=1e-12, atol=1e-12)
        rows = torch.tensor([0, 5, 19])
        sub = favor_attention_weights(q, k, w, kernel=kernel, causal=causal, rows=rows)
        torch.testing.assert_close(sub, a[:, :, rows], rtol=1e-12, atol=1e-14)
        if causal:
            assert torch.all(a.triu(1) == 0)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_causal_outputs_ignore_the_future_bit_for_bit(kernel, dtype):
    q, k, v = _qkv(B=1, H=2, L=300, D=16, dtype=dtype, scale=2.0)
    w = gaussian_orthogonal_matrix(32, 16, generator=torch.Generator().manual_seed(3), dtype=dtype)
    base = favor_attention(q, k, v, w, kernel=kernel, causal=True, chunk_size=64)
    for t in (0, 63, 64, 150, 298):
        q2, k2, v2 = (x.clone() for x in (q, k, v))
        # Future keys with huge norms would dominate any global stabiliser.
        k2[:, :, t + 1:] = torch.randn_like(k2[:, :, t + 1:]) * 40
        q2[:, :, t + 1:] = -q2[:, :, t + 1:] * 7
        v2[:, :, t + 1:] = 1e6
        out = favor_attention(q2, k2, v2, w, kernel=kernel, causal=True, chunk_size=64)
        assert torch.equal(out[:, :, : t + 1], base[:, :, : t + 1]), f"position <= {t} changed"
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("causal", [False, True])
def test_padding_does_not_change_real_positions(kernel, causal):
    q, k, v = _qkv(B=2, L=30)
    w = gaussian_orthogonal_matrix(16, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    real = 21
    ref = favor_attention(q[:, :, :real], k[:, :, :real], v[:, :, :real], w, kernel=kernel, causal=causal, chunk_size=8)
    mask = torch.zeros(2, 30, dtype=torch.bool)
    mask[:, :real] = True
    q2, k2, v2 = (x.clone() for x in (q, k, v))
    k2[:, :, real:] = 1e3  # garbage in the padding must not leak (no inf * 0)
    v2[:, :, real:] = float("nan")
    out = favor_attention(q2, k2, v2, w, kernel=kernel, causal=causal, key_padding_mask=mask, chunk_size=8)
    torch.testing.assert_close(out[:, :, :real], ref, rtol=1e-12, atol=1e-12)
    if not causal:  # padded keys also drop out of the explicit form
        torch.testing.assert_close(out[:, :, :real], _explicit(q, k, v, w, kernel, False, mask.double())[:, :, :real],
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scaling", ["gaussian", "sqrt_d"])
def test_orthogonal_blocks(scaling):
    d, m = 16, 40
    w = gaussian_orthogonal_matrix(m, d, scaling=scaling, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert w.shape == (m, d)
    for start in range(0, m, d):
        block = w[start : start + d]
        gram = block @ block.t()
        off = gram - torch.diag(torch.diagonal(gram))
        assert off.abs().max() < 1e-10
    norms = w.norm(dim=1)
    if scaling == "sqrt_d":
        torch.testing.assert_close(norms, torch.full((m,), math.sqrt(d), dtype=torch.float64))
    else:
        assert not torch.allclose(norms, norms[0].expand(m))  # chi-distributed, not constant


def test_generator_reproducible():
    a = gaussian_orthogonal_matrix(64, 16, generator=torch.Generator().manual_seed(7))
    b = gaussian_orthogonal_matrix(64, 16, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_chi_norms_give_gaussian_second_moment():
    # Rows marginally N(0, I): E[w w^T] = I.
    w = torch.cat([gaussian_orthogonal_matrix(8, 8, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
                   for s in range(2000)])
    cov = w.t() @ w / w.shape[0]
    torch.testing.assert_close(cov, torch.eye(8, dtype=torch.float64), rtol=0, atol=0.08)


def test_softmax_feature_estimate_is_unbiased():
    g = torch.Generator().manual_seed(8)
    d = 4
    x = torch.randn(5, d, generator=g, dtype=torch.float64) * 0.6
    y = torch.randn(5, d, generator=g, dtype=torch.float64) * 0.6
    target = torch.exp((x * y).sum(-1) / math.sqrt(d))  # exp(x.y / sqrt(d)) = SM(x', y')
    est = torch.zeros(5, dtype=torch.float64)
    trials = 3000
    for _ in range(trials):
        w = iid_gaussian_matrix(16, d, generator=g, dtype=torch.float64)
        fx = softmax_features(x[:, None], w, is_query=False)[:, 0]  # single position: no shift
        fy = softmax_features(y[:, None], w, is_query=False)[:, 0]
        # Undo the per-position stabiliser to get the raw unbiased estimate.
        lx = (x / d ** 0.25) @ w.t() - 0.5 * (x / d ** 0.25).pow(2).sum(-1, keepdim=True)
        ly = (y / d ** 0.25) @ w.t() - 0.5 * (y / d ** 0.25).pow(2).sum(-1, keepdim=True)
        fx = fx * torch.exp(lx.amax(-1, keepdim=True))
        fy = fy * torch.exp(ly.amax(-1, keepdim=True))
        est += (fx * fy).sum(-1)
    est /= trials
    torch.testing.assert_close(est, target, rtol=0.03, atol=0)


def test_approaches_exact_softmax_as_features_grow():
    q, k, v = _qkv(B=1, H=2, L=64, D=16, scale=0.5)
    exact = exact_attention(q, k, v)
    errs = []
    for m in (16, 256, 4096):
        err = 0.0
        for s in range(8):
            w = gaussian_orthogonal_matrix(m, 16, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
            err += (favor_attention(q, k, v, w) - exact).pow(2).mean().item()
        errs.append(err / 8)
    # MSE ~ 1/m: 16x more features should cut it well below half each time.
    assert errs[1] < errs[0] / 4 and errs[2] < errs[1] / 4, errs


def test_orthogonal_features_beat_iid_on_average():
    q, k, v = _qkv(B=1, H=4, L=64, D=16, scale=0.8)
    exact = exact_attention(q, k, v)
    ort, iid = 0.0, 0.0
    for s in range(40):
        g = torch.Generator().manual_seed(100 + s)
        ort += (favor_attention(q, k, v, gaussian_orthogonal_matrix(32, 16, generator=g, dtype=torch.float64)) - exact).pow(2).mean().item()
        iid += (favor_attention(q, k, v, iid_gaussian_matrix(32, 16, generator=g, dtype=torch.float64)) - exact).pow(2).mean().item()
    assert ort < iid, (ort, iid)


def test_exact_attention_matches_softmax_formula():
    q, k, v = _qkv(L=12)
    for causal in (False, True):
        s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if causal:
            s = s.masked_fill(torch.ones(12, 12, dtype=torch.bool).triu(1), float("-inf"))
        torch.testing.assert_close(exact_attention(q, k, v, causal=causal), s.softmax(-1) @ v)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck(kernel, causal):
    q, k, v = (x.requires_grad_() for x in _qkv(B=1, H=1, L=9, D=4))
    w = gaussian_orthogonal_matrix(6, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    fn = lambda q, k, v: favor_attention(q, k, v, w, kernel=kernel, causal=causal, chunk_size=4)
    assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernel", KERNELS)
def test_causal_gradients_equal_the_explicit_formula(kernel):
    """The chunked causal kernel's hand-written backward pass against autograd through the explicit
    L x L formula, in float64: several chunks, a ragged last chunk, padding, random upstream grads."""
    q, k, v = (x.requires_grad_() for x in _qkv(B=2, H=2, L=45, D=8, scale=1.5))
    w = gaussian_orthogonal_matrix(24, 8, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    mask = torch.ones(2, 45, dtype=torch.bool)
    mask[1, 38:] = False
    grad_out = torch.randn(2, 2, 45, 8, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    grad_out[1, :, 38:] = 0.0  # padded rows are unspecified
    got = favor_attention(q, k, v, w, kernel=kernel, causal=True, key_padding_mask=mask, chunk_size=8)
    want = _explicit(q, k, v, w, kernel, True, mask.double())
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[1, :, :38], want[1, :, :38], rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(got, (q, k, v), grad_out), torch.autograd.grad(want, (q, k, v), grad_out)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
def test_causal_graph_differentiated_twice(kernel):
    """The first backward pass frees the chunk products as it goes; a second one (retain_graph)
    recomputes them and must give the same gradients."""
    q, k, v = (x.requires_grad_() for x in _qkv(B=1, H=2, L=50, D=8))
    w = gaussian_orthogonal_matrix(16, 8, generator=torch.Generator().manual_seed(14), dtype=torch.float64)
    out = favor_attention(q, k, v, w, kernel=kernel, causal=True, chunk_size=16)
    first = torch.autograd.grad(out.sum(), (q, k, v), retain_graph=True)
    second = torch.autograd.grad(out.sum(), (q, k, v))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_causal_rows_whose_key_scale_rises_inside_a_chunk(dtype):
    """Key scales that rise by more than half the float range inside a chunk (a first key of huge
    norm, then ordinary ones) cannot be split into one factor per key and one per row; those rows
    are recomputed. Outputs match float64, gradients are finite, and causality stays exact."""
    q, k, v = _qkv(B=1, H=2, L=96, D=8, dtype=dtype, scale=1.0)
    k = k.clone()
    k[:, :, 0] *= 60.0  # log-scale ~ -|k|^2 / (2 sqrt(D)): far below the keys after it
    k[:, :, 40] *= 60.0  # and one in the middle of a chunk
    w = gaussian_orthogonal_matrix(32, 8, generator=torch.Generator().manual_seed(13), dtype=dtype)
    out = favor_attention(q, k, v, w, causal=True, chunk_size=32)
    # Reference: the causal FAVOR+ weights formed in the log domain, (L, L, m) terms, float64.
    logq, _ = softmax_log_terms(q.double(), w.double())
    kp, k_sq = softmax_log_terms(k.double(), w.double())
    terms = logq.unsqueeze(-2) + (kp - k_sq.unsqueeze(-1)).unsqueeze(-3)  # (B, H, L, L, m)
    logits = terms.logsumexp(-1).masked_fill(torch.ones(96, 96, dtype=torch.bool).triu(1), float("-inf"))
    want = logits.softmax(-1) @ v.double()
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(out.double(), want, rtol=tol, atol=tol)
    qg, kg, vg = (x.clone().requires_grad_() for x in (q, k, v))
    favor_attention(qg, kg, vg, w, causal=True, chunk_size=32).sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in (qg, kg, vg))
    for t in (5, 33, 70):
        k2, v2 = k.clone(), v.clone()
        k2[:, :, t + 1:] *= 80.0
        v2[:, :, t + 1:] = 1e6
        moved = favor_attention(q, k2, v2, w, causal=True, chunk_size=32)
        assert torch.equal(moved[:, :, : t + 1], out[:, :, : t + 1]), f"position <= {t} changed"


def test_layer_projection_is_a_buffer_redrawn_only_on_request():
    layer = FavorAttention(32, 4, AttentionOptions(nb_features=16), generator=torch.Generator().manual_seed(0))
    assert "projection" in layer.state_dict()
    before = layer.projection.clone()
    x = torch.randn(2, 10, 32)
    layer.eval()
    y1, _ = layer(x)
    y2, _ = layer(x)
    assert torch.equal(y1, y2) and torch.equal(layer.projection, before)
    layer.redraw_features(torch.Generator().manual_seed(1))
    assert not torch.equal(layer.projection, before)
    layer.redraw_features(torch.Generator().manual_seed(0))
    assert torch.equal(layer.projection, before)


@pytest.mark.parametrize("kind", ["softmax", "relu", "exact"])
def test_layer_weights_reproduce_outputs(kind):
    torch.manual_seed(0)
    layer = FavorAttention(16, 2, AttentionOptions(kind, nb_features=32, causal=True)).double()
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    y, a = layer(x, need_weights=True)
    assert a.shape == (1, 2, 12, 12)
    q, k, v = layer.qkv(x).view(1, 12, 3, 2, 8).permute(2, 0, 3, 1, 4)
    torch.testing.assert_close(layer.out((a @ v).transpose(1, 2).reshape(1, 12, 16)), y)


def test_exact_checkpoint_loads_into_performer():
    torch.manual_seed(0)
    exact = FavorAttention(16, 2, AttentionOptions("exact", nb_features=1024)).double()
    perf = FavorAttention(16, 2, AttentionOptions("softmax", nb_features=1024)).double()
    perf.load_state_dict(exact.state_dict())  # same keys, strict
    for name, weight in exact.named_parameters():
        assert torch.equal(dict(perf.named_parameters())[name], weight), name
    # The loaded Performer approximates the exact layer it came from (FAVOR+ with many features).
    x = torch.randn(1, 24, 16, dtype=torch.float64)
    with torch.no_grad():
        ref, out = exact(x)[0], perf(x)[0]
        other = FavorAttention(16, 2, AttentionOptions("softmax", nb_features=1024)).double()(x)[0]
    err = float((out - ref).abs().max())
    assert err < 0.25 * float((other - ref).abs().max())  # ~0.08 vs ~0.7 for unrelated weights


def test_half_precision_inputs_stay_finite():
    q, k, v = _qkv(B=1, H=2, L=64, D=16, dtype=torch.float32, scale=4.0)
    w = gaussian_orthogonal_matrix(32, 16, generator=torch.Generator().manual_seed(0))
    q, k, v = (x.bfloat16() for x in (q, k, v))
    ref = favor_attention(q.float(), k.float(), v.float(), w, causal=True)  # same inputs, fp32
    out = favor_attention(q, k, v, w, causal=True)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    # Only the final rounding to bf16 differs: the maths ran in fp32.
    torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("grad", [True, False], ids=["train", "inference"])
def test_favor_under_cpu_bf16_autocast_runs_in_float32(causal, grad, monkeypatch):
    """Lightning's bf16-mixed on CPU is ``torch.autocast("cpu", bfloat16)``. Inside it FAVOR+ must
    form its feature exponents, normaliser and prefix sums in float32 (bf16 keeps 8 bits: a sum
    over thousands of keys would lose most of its terms). Inputs as the model hands them over: the
    q/k/v projection gives bf16, rotary brings q and k back to float32. Then the output and the
    gradients are the float32 results on the same inputs, each rounded once to bf16, bit for bit."""
    import protein_performer.attention.linear as linear

    seen: dict[str, set] = {}

    def spy(name, fn, pick):
        def wrapped(*args, **kwargs):
            result = fn(*args, **kwargs)
            seen.setdefault(name, set()).add(pick(args, result).dtype)
            return result
        monkeypatch.setattr(linear, name, wrapped)

    spy("softmax_log_terms", linear.softmax_log_terms, lambda a, r: r[0])  # the exponents' argument
    spy("softmax_feature_logits", linear.softmax_feature_logits, lambda a, r: r[0])
    spy("causal_chunked", linear.causal_chunked, lambda a, r: r)  # prefix sums, normaliser channel last
    spy("_ratio", linear._ratio, lambda a, r: a[0])  # numerator and normaliser before the division
    q, k, v = _qkv(B=1, H=2, L=96, D=16, dtype=torch.float32, scale=2.0)
    q, k, v = q.bfloat16().float(), k.bfloat16().float(), v.bfloat16()  # what the model hands over
    w = gaussian_orthogonal_matrix(32, 16, generator=torch.Generator().manual_seed(0))
    up = torch.randn(q.shape, generator=torch.Generator().manual_seed(1)).bfloat16()  # d loss / d out

    def run(q, k, v, autocast):
        q, k, v = (t.clone().requires_grad_(grad) for t in (q, k, v))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), torch.set_grad_enabled(grad):
            out = favor_attention(q, k, v, w, causal=causal, chunk_size=16)
        if grad:
            (out.float() * up.float()).sum().backward()
        return out, [t.grad for t in (q, k, v)]

    out, grads = run(q, k, v, autocast=True)
    assert seen and all(dtypes == {torch.float32} for dtypes in seen.values()), seen
    ref, ref_grads = run(q, k, v.float(), autocast=False)  # the same inputs in float32, no autocast
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref.bfloat16(), rtol=0, atol=0)
    for got, want in zip(grads, ref_grads):
        if grad:
            torch.testing.assert_close(got.float(), want.to(got.dtype).float(), rtol=0, atol=0)
