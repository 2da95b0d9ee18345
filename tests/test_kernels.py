"""The attention kernels' one interface (protein_performer/attention/kernels.py): for every kernel,
its recurrent steps equal its causal forward and its weights reproduce its forward (float64);
PerformerConfig accepts exactly the registered combinations; a kernel defined outside the package
plugs in through the registry alone."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from itertools import pairwise
from typing import get_args

import pytest
import torch

from protein_performer.alphabet import ALPHABET
from protein_performer.attention import (
    KERNELS,
    AttentionKernel,
    AttentionKind,
    AttentionOptions,
    FavorAttention,
    FeatureMap,
    RandomFeatures,
    gaussian_orthogonal_matrix,
    make_kernel,
)
from protein_performer.attention.kernels import ExactSoftmax, Hybrid, LocalSoftmax
from protein_performer.attention.recurrent import State
from protein_performer.model import PerformerConfig, PerformerLM

B, H, D, M = 2, 3, 8, 16
WINDOW, CHUNK = 5, 8


def _make(name: str, causal: bool) -> AttentionKernel:
    """``"attention/feature_map"``, optionally ``" with local"`` (the first head local), or ``"local"``."""
    options = AttentionOptions(causal=causal, chunk_size=CHUNK, local_window=WINDOW)
    if name == "local":  # every head local: a Hybrid whose global kernel serves no head
        return make_kernel(H, replace(options, local_heads=H))
    key, _, local = name.partition(" with ")
    attention, feature_map = key.split("/")
    options = replace(options, attention=attention, feature_map=feature_map, local_heads=1 if local else 0)
    return make_kernel(H, options)


NAMES = [f"{a}/{f}{suffix}" for a, f in KERNELS for suffix in ("", " with local")] + ["local"]


def _features(kernel: AttentionKernel) -> RandomFeatures:
    """A float64 projection and, for FAVOR++, rho = 0.7 per global head (A != 0)."""
    projection = gaussian_orthogonal_matrix(M, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rho = kernel.initial_statistic()
    return RandomFeatures(projection, None if rho is None else torch.full(rho.shape, 0.7, dtype=torch.float64))


def _qkv(L: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, L, D, generator=g, dtype=torch.float64) for _ in range(3)]


def _run_steps(kernel, q, k, v, features, starts=None) -> torch.Tensor:
    """Step every position as PerformerLM.step does: rows whose protein ended before position t
    (``starts[b]`` holds the positions where row b's proteins begin) reset, then mask older keys."""
    state = kernel.init_state(B, D, features=features, device=q.device, dtype=q.dtype)
    segment_start = None if starts is None else torch.zeros(B, dtype=torch.long)
    outs = []
    for t in range(q.shape[2]):
        if starts is not None:
            begins = torch.tensor([t in starts[b] for b in range(B)])
            state.reset_rows(begins)
            segment_start = torch.where(begins, t, segment_start)
        outs.append(kernel.step(state, q[:, :, t : t + 1], k[:, :, t : t + 1], v[:, :, t : t + 1],
                                features=features, step=t, segment_start=segment_start))
    return torch.cat(outs, dim=2)  # (B, H, L, D)


@pytest.mark.parametrize("name", NAMES)
def test_recurrent_steps_equal_the_causal_attend(name):
    L = 300  # past the exact cache's first capacity (256), many windows and chunks
    kernel = _make(name, causal=True)
    q, k, v = _qkv(L)
    features = _features(kernel)
    want = kernel.attend(q, k, v, features=features)
    got = _run_steps(kernel, q, k, v, features)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(want[:, :, 1:], v[:, :, 1:])  # attention mixes positions: not vacuous


@pytest.mark.parametrize("name", NAMES)
def test_recurrent_steps_restart_at_each_protein(name):
    L = 40
    starts = [{17}, {6, 25}]  # row b's proteins begin at 0 and at these positions
    kernel = _make(name, causal=True)
    q, k, v = _qkv(L, seed=2)
    features = _features(kernel)
    got = _run_steps(kernel, q, k, v, features, starts)
    for b in range(B):
        bounds = [0, *sorted(starts[b]), L]
        for a, e in pairwise(bounds):
            alone = kernel.attend(*(x[b : b + 1, :, a:e] for x in (q, k, v)), features=features)
            torch.testing.assert_close(got[b : b + 1, :, a:e], alone, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_a_repeated_state_continues_as_the_original_and_shares_no_memory(name):
    kernel = _make(name, causal=True)
    q, k, v = (x[:1] for x in _qkv(300, seed=4))  # one row
    features = _features(kernel)
    state = kernel.init_state(1, D, features=features, device=q.device, dtype=q.dtype)

    def run(st, rows: int, start: int, end: int) -> torch.Tensor:
        return torch.cat([kernel.step(st, *(x[:, :, t : t + 1].expand(rows, -1, -1, -1) for x in (q, k, v)),
                                      features=features, step=t) for t in range(start, end)], dim=2)

    run(state, 1, 0, 250)  # a shared prefix (homologs)
    copy = state.repeat(2)
    assert copy.nbytes() >= 2 * state.nbytes() - 8 * (WINDOW + 1)  # every per-row tensor doubled
    twice = run(copy, 2, 250, 300)  # stepped first: writing into shared memory would spoil the original
    once = run(state, 1, 250, 300)
    # rows of one batch may round differently on some CPUs (seen on an AMD EPYC): equal to float64 rounding
    torch.testing.assert_close(twice[0], twice[1], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(twice[0], once[0], rtol=1e-12, atol=1e-14)  # batch size changes rounding only


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_weights_reproduce_attend(name, causal):
    L = 23
    kernel = _make(name, causal=causal)
    q, k, v = _qkv(L, seed=3)
    features = _features(kernel)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, 15:] = False  # the second row is padded
    weights = kernel.weights(q, k, mask, features=features)  # (B, H, L, L)
    out = kernel.attend(q, k, v, mask, features=features)
    assert weights.shape == (B, H, L, L)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, L, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close((weights @ v)[0], out[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close((weights @ v)[1, :, :15], out[1, :, :15], rtol=1e-10, atol=1e-12)
    assert torch.all(weights[1, :, :15, 15:] == 0)  # padded keys get no weight
    if causal:
        assert torch.all(weights.triu(1) == 0)
    rows = torch.tensor([0, 7, 22])
    torch.testing.assert_close(kernel.weights(q, k, mask, features=features, rows=rows), weights[:, :, rows],
                               rtol=1e-12, atol=1e-14)


def test_the_exact_kernels_weights_are_softmax_of_the_scores():
    q, k, v = _qkv(12)
    kernel = ExactSoftmax(H, AttentionOptions(causal=True))
    features = _features(kernel)
    scores = (q @ k.transpose(-2, -1)) / D**0.5
    want = scores.masked_fill(torch.ones(12, 12, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
    torch.testing.assert_close(kernel.weights(q, k, features=features), want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(kernel.attend(q, k, v, features=features), want @ v, rtol=1e-12, atol=1e-12)


def test_make_kernel_chooses_the_registered_class_and_joins_local_heads_first():
    for (attention, feature_map), cls in KERNELS.items():
        options = AttentionOptions(attention, feature_map, causal=True, local_window=WINDOW)
        assert type(make_kernel(H, options)) is cls
        hybrid = make_kernel(H, replace(options, local_heads=1))
        assert isinstance(hybrid, Hybrid) and isinstance(hybrid.local, LocalSoftmax)
        assert (hybrid.local.heads, hybrid.global_.heads, hybrid.heads) == (1, H - 1, H)
        assert type(hybrid.global_) is cls and hybrid.local.local_window == WINDOW


def test_the_config_literals_name_exactly_the_registered_kernels():
    assert set(get_args(AttentionKind)) == {a for a, _ in KERNELS}
    assert set(get_args(FeatureMap)) == {f for _, f in KERNELS}


TINY = {"dim": 16, "depth": 1, "heads": 2, "nb_features": 8, "dropout": 0.0}


@pytest.mark.parametrize("key", list(KERNELS))
def test_every_registered_combination_is_a_valid_config_and_keeps_its_checkpoint_keys(key):
    for local_heads, conv_width in ((0, 0), (1, 3)):
        config = PerformerConfig(**TINY, attention=key[0], feature_map=key[1], local_heads=local_heads,
                                 conv_width=conv_width)
        attn = PerformerLM(config).blocks[0].attn
        kernel = attn.kernel.global_ if local_heads else attn.kernel
        assert type(kernel) is KERNELS[key]
        want = {"qkv.weight", "qkv.bias", "out.weight", "out.bias", "projection"}
        want |= {"conv_weight"} if conv_width else set()
        want |= {"favorpp_rho"} if key[1] == "favor++" else set()
        assert set(attn.state_dict()) == want  # the names checkpoints were saved with
        assert not attn.kernel.state_dict()  # the kernels here keep nothing of their own


def test_a_layer_receives_the_configs_attention_settings_whole():
    config = PerformerConfig(**TINY, attention="relu", causal=True, local_heads=1, local_window=7, conv_width=3,
                             chunk_size=4, feature_scaling="sqrt_d")
    options = PerformerLM(config).blocks[0].attn.options
    assert options == AttentionOptions.from_config(config)
    assert {f: getattr(options, f) for f in ("attention", "causal", "local_heads", "local_window", "conv_width",
                                             "chunk_size", "feature_scaling", "nb_features", "dropout")} == {
        "attention": "relu", "causal": True, "local_heads": 1, "local_window": 7, "conv_width": 3, "chunk_size": 4,
        "feature_scaling": "sqrt_d", "nb_features": 8, "dropout": 0.0}
    assert {f.name for f in fields(AttentionOptions)} <= {f.name for f in fields(PerformerConfig)}  # same names


@pytest.mark.parametrize("bad, match", [
    ({"attention": "linear"}, "attention must be one of"),
    ({"feature_map": "favor#"}, "feature_map must be one of"),
    ({"attention": "relu", "feature_map": "favor++"}, "feature_map 'favor\\+\\+' needs attention 'softmax'"),
    ({"attention": "exact", "feature_map": "favor++"}, "needs attention 'softmax', not 'exact'"),
    ({"local_heads": 3}, "local_heads"),
    ({"local_heads": -1}, "local_heads"),
    ({"local_window": 0}, "local_window"),
    ({"conv_width": 1}, "conv_width"),
    ({"chunk_size": 0}, "chunk_size"),
    ({"dim": 18, "heads": 4}, "divisible"),
])
def test_config_rejects_bad_combinations(bad, match):
    with pytest.raises(ValueError, match=match):
        PerformerConfig(**{**TINY, **bad})


# --------------------------------------------------------------------------- a kernel from outside


@dataclass
class _SumState(State):
    total: torch.Tensor
    """(B, H, 1, D): the sum of the values so far."""
    count: torch.Tensor
    """(B, H, 1, 1): how many."""

    def reset_rows(self, rows: torch.Tensor) -> None:
        self.total.masked_fill_(rows[:, None, None, None], 0.0)
        self.count.masked_fill_(rows[:, None, None, None], 0.0)


class _Average(AttentionKernel):
    """Uniform attention: the mean of the visible values (a kernel with a state of its own)."""

    def weights(self, q, k, key_padding_mask=None, *, features, rows=None):
        B, H, L, _ = q.shape
        allowed = torch.ones(B, 1, L, L, dtype=torch.bool)
        if self.causal:
            allowed = allowed.tril()
        if key_padding_mask is not None:
            allowed = allowed & key_padding_mask[:, None, None, :]
        w = allowed.to(q.dtype).expand(B, H, L, L)
        w = w / w.sum(-1, keepdim=True)
        return w if rows is None else w[:, :, rows]

    def attend(self, q, k, v, key_padding_mask=None, *, features):
        return self.weights(q, k, key_padding_mask, features=features) @ v

    def init_state(self, batch_size, head_dim, *, features, device, dtype):
        return _SumState(torch.zeros(batch_size, self.heads, 1, head_dim, device=device, dtype=dtype),
                         torch.zeros(batch_size, self.heads, 1, 1, device=device, dtype=dtype))

    def step(self, state, q, k, v, *, features, step, segment_start=None):
        state.total.add_(v)
        state.count.add_(1.0)
        return state.total / state.count


def test_a_kernel_registered_from_outside_serves_forward_and_step(monkeypatch):
    monkeypatch.setitem(KERNELS, ("average", "favor+"), _Average)
    config = PerformerConfig(dim=16, depth=2, heads=2, nb_features=8, dropout=0.0, causal=True,
                             attention="average", local_heads=1, segment_attention=True)
    torch.manual_seed(0)
    model = PerformerLM(config).double().eval()
    assert isinstance(model.blocks[0].attn.kernel.global_, _Average)
    ids = torch.randint(5, 25, (2, 30))
    ids[0, 11] = ALPHABET.eos_idx
    with torch.no_grad():
        full = model(ids).logits
        state = model.init_state(2)
        steps = torch.stack([model.step(ids[:, t], state) for t in range(30)], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-10, atol=1e-10)


def test_a_layer_without_global_heads_steps_through_its_local_kernel():
    torch.manual_seed(0)
    layer = FavorAttention(16, 2, AttentionOptions(nb_features=8, causal=True, local_heads=2, local_window=3)).double()
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    with torch.no_grad():
        full, _ = layer(x)
        state = layer.init_state(1, device=x.device, dtype=x.dtype)
        steps = torch.stack([layer.step(x[:, t], state, t) for t in range(12)], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-10, atol=1e-12)
