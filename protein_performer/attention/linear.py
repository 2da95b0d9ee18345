"""FAVOR+ attention algebra: bidirectional and causal linear attention, one decoding step, implicit weights.

With features phi (see :mod:`.features`), FAVOR+ replaces softmax(Q K^T / sqrt(d)) V by::

    out_t = phi(q_t) . sum_s phi(k_s) v_s^T  /  phi(q_t) . sum_s phi(k_s)

where s runs over all unpadded keys (bidirectional) or over s <= t (causal). Cost is
O(L m d) time and O(L m + m d) memory instead of O(L^2).

Causal attention is computed chunk by chunk (chunk-parallel prefix sums, :mod:`.causal`, with its
backward pass written out): inside a chunk of C positions the masked C x C product is formed;
across chunks a running state S = sum_s phi(k_s) [v_s, 1]^T of size (m, d + 1) is carried. Nothing
of size L x m x d is ever materialised.

Stabilisers (softmax kernel). Bidirectional attention references every feature to its own largest
key logit, c_i = max_s log phi_i(k_s), and every query to max_i (log phi_i(q_t) + c_i): the
feature that dominates a query's normaliser then contributes exactly its largest term, so no
normaliser underflows at any query/key norm. Causal keys carry a per-position log-scale (their
largest logit) and are reweighted by exp(log_scale_s - M) with M a *running* maximum over
positions <= t, never a maximum over the whole sequence, so an output at position t depends on
positions <= t only, bit for bit. That fast path loses a row when its query's and its keys'
largest features differ by more than the float range (large norms): every term then underflows.
It also returns zeros, deliberately, for a row whose running maximum rose by more than half the
float range inside its chunk (:mod:`.causal`).
Such a row is recognised by its own normaliser (below sqrt(tiny), which bounds what underflow can
have dropped to ~1e-11 of it) and recomputed with per-feature *running* references
(:func:`_causal_per_feature`), the causal form of the bidirectional stabiliser. Whether a row is
recomputed, and its value, depend on positions <= t only, so causality stays exact bit for bit.

Causal FAVOR+ is also an RNN: :func:`favor_step` adds one position to the (m, d + 1) state against
the running maximum, the chunked path's state with chunks of one position (generation).

Without gradients (inference), bidirectional softmax-kernel attention takes
:func:`_softmax_bidirectional_inference`: the same stabilisers and operations, done in place over
cache-sized blocks of sequences and heads (the feature tensors, not the products, dominated its
time at protein lengths). Float64 results equal the autograd path's to rounding (~1e-16).

Shapes: q is (B, H, Lq, D), k and v (B, H, Lk, D) (Lk = Lq when causal); projection is (m, D);
outputs are (B, H, Lq, D).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from protein_performer.attention.causal import causal_chunked
from protein_performer.attention.features import (
    relu_features,
    softmax_feature_logits,
    softmax_log_terms,
    softmax_query_logits,
)

Kernel = Literal["softmax", "relu"]
DEFAULT_CHUNK_SIZE = 64
"""Causal chunk length C: the C x C products cost L C (m + E), the carried states L / C m E of
memory traffic; 64 balances them on CPU at m = 256 (docs/benchmarks/attention.md)."""
INFERENCE_BLOCK_ROWS = 2048
"""On CPU, inference (no-gradient) bidirectional softmax attention runs over blocks of about this
many (sequence, head, position) rows, so its (rows, m) feature buffer stays in cache (2 MiB at
m = 256). Other devices take the whole batch as one block."""


def _head_coefficient(a: Tensor | None) -> Tensor | None:
    """FAVOR++'s A per head, (H,) -> (H, 1, 1), broadcast over (B, H, L, m)."""
    return None if a is None else a.view(-1, 1, 1)


def _features(x: Tensor, projection: Tensor, kernel: str, a: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """(B, H, L, D) -> features (B, H, L, m) and, for softmax, the per-position log-scale (B, H, L)."""
    if kernel == "softmax":
        return softmax_feature_logits(x, projection, _head_coefficient(a))
    if kernel == "relu":
        return relu_features(x, projection), None
    raise ValueError(f"kernel must be 'softmax' or 'relu', got {kernel!r}")


def _mask_keys(v1: Tensor, log_scale: Tensor | None, key_padding_mask: Tensor | None):
    """Padded keys (mask (B, L), True = real) get zero values *and* a zero normaliser channel, and
    a -inf log-scale, so they add exactly nothing; their (finite) features need no masking."""
    if key_padding_mask is None:
        return v1, log_scale
    keep = key_padding_mask[:, None, :]  # (B, 1, L)
    v1 = v1.masked_fill(~keep.unsqueeze(-1), 0.0)
    if log_scale is not None:
        log_scale = log_scale.masked_fill(~keep, float("-inf"))
    return v1, log_scale


def _ratio(out: Tensor, *, inplace: bool = False) -> Tensor:
    """Split (..., D + 1) into numerator / denominator; the last channel is the normaliser.
    ``inplace`` (no gradient): divide the numerator channels of ``out`` and return that view."""
    num, den = out[..., :-1], out[..., -1:]
    den = den.clamp_min(torch.finfo(den.dtype).tiny)  # (..., 1)
    return num.div_(den) if inplace else num / den


def _key_logits(
    k: Tensor, projection: Tensor, a: Tensor | None, key_padding_mask: Tensor | None, out: Tensor | None = None
) -> Tensor:
    """(B, H, L, D) -> (B, H, L, m): log phi(k) up to one constant, -inf at padded keys (mask
    (B, L), True = real). ``a``: FAVOR++'s A per head, already (H, 1, 1). ``out``: a (B, H, L, m)
    tensor to write into (no gradient)."""
    kp, k_sq = softmax_log_terms(k, projection, a, out=out)
    logk = kp.sub_(k_sq.unsqueeze(-1))
    if key_padding_mask is not None:  # in place: kp is this function's own tensor
        logk.masked_fill_(~key_padding_mask[:, None, :, None], float("-inf"))
    return logk


def _softmax_bidirectional_features(
    q: Tensor, k: Tensor, projection: Tensor, a: Tensor | None, key_padding_mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Softmax features of queries and keys (B, H, L, m), stabilised per feature (see the module
    docstring): every key feature is at most 1 and reaches 1 at its best key; every query's
    largest feature, weighted by that key reference, is exactly 1. Padded keys are exact zeros."""
    a = _head_coefficient(a)
    kf, ref = _stabilised_keys(_key_logits(k, projection, a, key_padding_mask))  # (B, H, L, m), (B, H, 1, m)
    qp, _ = softmax_log_terms(q, projection, a)  # |q'|^2 is one factor per row: it cancels
    return _stabilised_queries(qp, ref), kf


def _stabilised_keys(logk: Tensor) -> tuple[Tensor, Tensor]:
    """Key logits (..., L, m), -inf at padded keys -> (features, reference): each feature referenced
    to its largest key logit (..., 1, m) (a finite floor when every key is padded). In place."""
    ref = logk.detach().amax(dim=-2, keepdim=True).clamp_min(torch.finfo(logk.dtype).min)  # (..., 1, m)
    return logk.sub_(ref).exp_(), ref


def _stabilised_queries(logq: Tensor, ref: Tensor) -> Tensor:
    """Query logits (..., L, m), any per-row shift, and the keys' reference (..., 1, m) ->
    features whose largest, weighted by the key reference, is exactly 1 per row. In place."""
    logq = logq.add_(ref)  # (..., L, m)
    return logq.sub_(logq.detach().amax(dim=-1, keepdim=True)).exp_()


def _softmax_bidirectional_inference(
    q: Tensor, k: Tensor, v: Tensor, projection: Tensor, a: Tensor | None, key_padding_mask: Tensor | None
) -> Tensor:
    """Bidirectional softmax-kernel FAVOR+ when no gradient is needed: (B, H, L, D) -> (B, H, L, D).

    The same function as :func:`_softmax_bidirectional_features`, :func:`_bidirectional` and
    :func:`_ratio` (same stabilisers, same operations on the same values, per sequence and head),
    arranged for memory traffic: at protein lengths the element-wise passes over the (B, H, L, m)
    features, and allocating them (mostly page faults on CPU), cost as much as the matrix products.
    Sequences and heads are taken a block of about :data:`INFERENCE_BLOCK_ROWS` rows at a time,
    and one cache-sized buffer holds a block's key logits and then, once K^T [V, 1] is formed,
    its query logits. Masking, stabilisers, exp and the ratio are in place; the queries' |q'|^2
    (it cancels) is not computed. Every sequence and head is computed alone, so the blocking
    changes nothing beyond rounding.
    """
    B, H, Lq, D = q.shape
    Lk = k.shape[-2]  # keys may be fewer or more than queries (a trimmed batch, cross attention)
    L = max(Lq, Lk)
    m = projection.shape[0]
    a = _head_coefficient(a)  # (H, 1, 1) | None
    out = q.new_empty(B, H, Lq, D + 1)  # (B, H, Lq, D + 1): numerators and the normaliser
    rows = INFERENCE_BLOCK_ROWS if q.device.type == "cpu" else B * H * L  # accelerators: one block
    # A block is (nb sequences, all heads) or, for long sequences, (1 sequence, nh heads).
    nb, nh = (max(1, rows // max(1, H * L)), H) if H * L <= rows else (1, max(1, rows // L))
    nb, nh = min(nb, B), min(nh, H)
    buf = q.new_empty(nb * nh * L * m)  # reused by every block: key, then query logits
    v1_buf = q.new_empty(nb * nh * Lk * (D + 1))
    for b0 in range(0, B, nb):
        b1 = min(b0 + nb, B)
        keep = None if key_padding_mask is None else key_padding_mask[b0:b1]  # (b, Lk)
        for h0 in range(0, H, nh):
            h1 = min(h0 + nh, H)
            b, h = b1 - b0, h1 - h0
            qb, kb, vb = (t[b0:b1, h0:h1] for t in (q, k, v))  # (b, h, Lq | Lk, D)
            ab = None if a is None else a[h0:h1]  # (h, 1, 1)
            v1 = v1_buf[: b * h * Lk * (D + 1)].view(b, h, Lk, D + 1)  # contiguous
            v1[..., :D].copy_(vb)
            v1[..., D].fill_(1.0)  # (b, h, Lk, D + 1): last channel sums the normaliser
            logk = _key_logits(kb, projection, ab, None, out=buf[: b * h * Lk * m].view(b, h, Lk, m))
            if keep is not None and not bool(keep.all()):  # padded keys: -inf logits, zero values
                padded = _padded_rows(keep, h)  # (P,) rows of (b * h * Lk, .)
                logk.view(-1, m).index_fill_(0, padded, float("-inf"))
                v1.view(-1, D + 1).index_fill_(0, padded, 0.0)  # no 0 * nan from padded values
            kf, ref = _stabilised_keys(logk)  # (b, h, Lk, m), (b, h, 1, m)
            kv = kf.transpose(-2, -1) @ v1  # (b, h, m, D + 1); the buffer is free again
            logq = softmax_query_logits(qb, projection, ab, out=buf[: b * h * Lq * m].view(b, h, Lq, m))
            qf = _stabilised_queries(logq, ref)  # (b, h, Lq, m)
            torch.matmul(qf, kv, out=out[b0:b1, h0:h1])  # (b, h, Lq, D + 1)
    return _ratio(out, inplace=True)  # (B, H, Lq, D), a view of out


def _padded_rows(keep: Tensor, heads: int) -> Tensor:
    """keep (b, L) bool, True at real tokens -> (P,) indices of the padded rows of a contiguous
    (b, heads, L, .) tensor viewed as (b * heads * L, .). Filling those rows costs O(P), where a
    broadcast masked_fill_ walks the whole tensor."""
    b, L = keep.shape
    pb, pl = (~keep).nonzero(as_tuple=True)  # (P0,) each
    heads_ = torch.arange(heads, device=keep.device)
    return ((pb[:, None] * heads + heads_[None, :]) * L + pl[:, None]).reshape(-1)


def _needs_grad(*tensors: Tensor | None) -> bool:
    """Whether autograd would record an operation on these tensors."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _bidirectional(qf: Tensor, kf: Tensor, v1: Tensor) -> Tensor:
    """qf, kf: (B, H, L, m) features (already stabilised); v1: (B, H, L, D + 1) -> (B, H, L, D + 1)
    unnormalised."""
    kv = kf.transpose(-2, -1) @ v1  # (B, H, m, D + 1)
    return qf @ kv  # (B, H, L, D + 1)


def _causal_per_feature(
    logq: Tensor, logk: Tensor, v1: Tensor, rows: Tensor, chunk_size: int = 32
) -> Tensor:
    """Causal softmax-kernel attention with per-feature running references, for the rows selected.

    logq: (B, H, L, m) query logits (any per-row shift: it cancels); logk: (B, H, L, m) key logits
    ``log phi(k)`` up to one constant, -inf at padded keys; v1: (B, H, L, E); rows: (B, H, L) bool.
    Returns (B, H, L, E) unnormalised, valid at the selected rows (zeros elsewhere).

    The state S_j = sum_s exp(logk_sj - c_j) v1_s is kept per feature j against c_j, the largest
    key logit of feature j so far (the causal form of the bidirectional stabiliser). Within a chunk,
    row t's scale is sigma_t = max_j (logq_tj + R_tj), R_tj = max(c_j, max_{s<=t} logk_sj): every
    term exp(logq_tj + logk_sj - sigma_t) is at most 1 and the largest is exactly 1, so the
    normaliser of every row with a real key is at least 1, at any norm. Inside a chunk the terms are
    summed over features elementwise ((C, C, m) per chunk: O(L C m) work), which is why this path
    only serves the rows the fast path lost. Everything a row uses is at positions <= t.
    """
    B, H, L, m = logq.shape
    E = v1.shape[-1]
    lowest = torch.finfo(logk.dtype).min  # finite floor: no inf - inf
    c = logk.new_full((B, H, m), lowest)  # (B, H, m) per-feature references
    state = v1.new_zeros(B, H, m, E)  # (B, H, m, E) referenced to c
    out = v1.new_zeros(B, H, L, E)
    C = chunk_size
    causal_mask = torch.ones(C, C, dtype=torch.bool, device=logq.device).tril()  # (C, C) s <= t
    lq_all, lk_all = logq.detach(), logk.detach()
    for start in range(0, L, C):
        end = min(start + C, L)
        n = end - start
        lk = logk[:, :, start:end]  # (B, H, n, m)
        vv = v1[:, :, start:end]  # (B, H, n, E)
        if bool(rows[:, :, start:end].any()):
            lq = logq[:, :, start:end]  # (B, H, n, m)
            ref = torch.maximum(c.unsqueeze(2), torch.cummax(lk_all[:, :, start:end], dim=2).values)
            sigma = (lq_all[:, :, start:end] + ref).amax(dim=-1, keepdim=True)  # (B, H, n, 1)
            lqs = lq - sigma  # (B, H, n, m)
            inter = torch.exp(lqs + c.unsqueeze(2)) @ state  # (B, H, n, E)
            terms = lqs.unsqueeze(3) + lk.unsqueeze(2)  # (B, H, n_t, n_s, m)
            terms = terms.masked_fill(~causal_mask[:n, :n, None], float("-inf"))
            weights = torch.exp(terms).sum(dim=-1)  # (B, H, n_t, n_s)
            out[:, :, start:end] = inter + weights @ vv
        c_new = torch.maximum(c, lk_all[:, :, start:end].amax(dim=2))  # (B, H, m)
        decay = torch.exp(c - c_new)  # (B, H, m), in (0, 1]
        state = state * decay.unsqueeze(-1) + torch.exp(lk - c_new.unsqueeze(2)).transpose(-2, -1) @ vv
        c = c_new
    return out


def favor_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    projection: Tensor,
    *,
    kernel: Kernel = "softmax",
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    feature_a: Tensor | None = None,
) -> Tensor:
    """FAVOR+ attention: approximates softmax(Q K^T / sqrt(D)) V for ``kernel="softmax"``.

    Args:
        q: (B, H, Lq, D); k, v: (B, H, Lk, D), any Lk (fewer or more keys than queries: a trimmed
            padded batch, cross attention) except that causal attention needs Lk = Lq.
        projection: (m, D) random features (:func:`gaussian_orthogonal_matrix`).
        kernel: ``"softmax"`` (positive random features) or ``"relu"`` (generalised kernel).
        causal: position t attends to s <= t only (chunked prefix sums; exact causality).
        key_padding_mask: (B, Lk) bool, True at real keys. Padded keys contribute to neither
            numerator nor denominator; outputs at padded queries are unspecified.
        chunk_size: causal block length C (time O(L C (m + D)), state O(L/C m D)).
        feature_a: (H,) FAVOR++ parameter A per head (softmax only; None: FAVOR+, A = 0).

    Returns:
        (B, H, Lq, D) in the dtype of ``v``. Half-precision inputs are computed in float32
        (features, normaliser and prefix sums), autocast disabled, and cast back.
    """
    out_dtype = v.dtype
    if causal and q.shape[-2] != k.shape[-2]:
        raise ValueError(f"causal attention needs as many keys as queries, got {k.shape[-2]} keys for "
                         f"{q.shape[-2]} queries")
    if key_padding_mask is not None and bool(key_padding_mask.all()):
        key_padding_mask = None  # nothing padded: skip the masking passes
    with torch.autocast(device_type=q.device.type, enabled=False):
        if any(t.dtype in (torch.float16, torch.bfloat16) for t in (q, k, v)):
            q, k, v = q.float(), k.float(), v.float()  # autocast: rotary may leave q, k fp32, v bf16
        if feature_a is not None and kernel != "softmax":
            raise ValueError("feature_a (FAVOR++) applies to the softmax kernel only")
        if kernel == "softmax" and not causal and not _needs_grad(q, k, v, projection, feature_a):
            out = _softmax_bidirectional_inference(q, k, v, projection, feature_a, key_padding_mask)
            return out.to(out_dtype)
        v1 = F.pad(v, (0, 1), value=1.0)  # (B, H, L, D + 1): last channel sums the normaliser
        if kernel == "softmax" and not causal:  # per-feature stabilisers; padded keys are zeros
            qf, kf = _softmax_bidirectional_features(q, k, projection, feature_a, key_padding_mask)
            v1, _ = _mask_keys(v1, None, key_padding_mask)  # no 0 * nan from padded values
            return _ratio(_bidirectional(qf, kf, v1)).to(out_dtype)
        qf, _ = _features(q, projection, kernel, feature_a)  # query scale cancels in the ratio
        kf, log_scale = _features(k, projection, kernel, feature_a)  # (B, H, L, m), (B, H, L) | None
        v1, log_scale = _mask_keys(v1, log_scale, key_padding_mask)
        if causal:
            out = causal_chunked(qf, kf, v1, log_scale, chunk_size)
            if kernel == "softmax":
                out = _recompute_lost_rows(out, q, k, v1, projection, feature_a, key_padding_mask)
        else:
            out = _bidirectional(qf, kf, v1)  # relu: no log-scale
        return _ratio(out).to(out_dtype)


def _recompute_lost_rows(
    out: Tensor, q: Tensor, k: Tensor, v1: Tensor, projection: Tensor, a: Tensor | None,
    key_padding_mask: Tensor | None,
) -> Tensor:
    """Rows whose fast-path normaliser underflowed (large norms) are recomputed exactly; the test
    reads each row's own normaliser only, so it is as causal as the row. out, v1: (B, H, L, E)."""
    den = out[..., -1].detach()  # (B, H, L)
    lost = den < torch.finfo(den.dtype).tiny ** 0.5  # (B, H, L)
    if key_padding_mask is not None:
        lost &= key_padding_mask[:, None, :]  # padded queries are unspecified anyway
    if not bool(lost.any()):
        return out
    a = _head_coefficient(a)
    logq, _ = softmax_log_terms(q, projection, a)  # (B, H, L, m); |q'|^2 cancels per row
    exact = _causal_per_feature(logq, _key_logits(k, projection, a, key_padding_mask), v1, lost)
    return torch.where(lost.unsqueeze(-1), exact, out)


def favor_attention_weights(
    q: Tensor,
    k: Tensor,
    projection: Tensor,
    *,
    kernel: Kernel = "softmax",
    causal: bool = False,
    rows: Tensor | None = None,
    key_padding_mask: Tensor | None = None,
    block_size: int = 1024,
    feature_a: Tensor | None = None,
) -> Tensor:
    """The implicit, normalised FAVOR+ attention matrix for chosen query rows.

    ``A[t, s] = phi(q_t) . phi(k_s) / sum_s' phi(q_t) . phi(k_s')`` (s, s' <= t when causal), the
    matrix :func:`favor_attention` multiplies V by without forming it. Computed ``block_size``
    rows at a time, so memory is O(block_size L) and only R x L is returned.

    Args:
        q, k: (B, H, L, D); projection: (m, D).
        rows: (R,) query positions (default: all L).
        key_padding_mask: (B, L) bool, True at real tokens (padded keys get weight 0).

    Returns:
        (B, H, R, L), each row summing to 1 over its allowed keys.
    """
    L = q.shape[-2]
    rows = torch.arange(L, device=q.device) if rows is None else rows.to(q.device)
    with torch.autocast(device_type=q.device.type, enabled=False):
        q, k = q.float() if q.dtype != torch.float64 else q, k.float() if k.dtype != torch.float64 else k
        if kernel == "softmax" and not causal:  # the stabilisers of favor_attention
            qf_all, kf = _softmax_bidirectional_features(q, k, projection, feature_a, key_padding_mask)
            raw = qf_all[:, :, rows] @ kf.transpose(-2, -1)  # (B, H, R, L)
            return raw / raw.sum(dim=-1, keepdim=True)
        kf, log_scale = _features(k, projection, kernel, feature_a)  # (B, H, L, m)
        if key_padding_mask is not None:  # padded keys: weight exactly 0
            kf = kf.masked_fill(~key_padding_mask[:, None, :, None], 0.0)
            if log_scale is not None:
                log_scale = log_scale.masked_fill(~key_padding_mask[:, None, :], float("-inf"))
        positions = torch.arange(L, device=q.device)
        blocks = []
        for start in range(0, rows.numel(), block_size):
            r = rows[start : start + block_size]  # (R_b,)
            qf, _ = _features(q[:, :, r], projection, kernel, feature_a)  # (B, H, R_b, m)
            raw = qf @ kf.transpose(-2, -1)  # (B, H, R_b, L)
            allowed = positions[None, :] <= r[:, None] if causal else None  # (R_b, L)
            if log_scale is not None:
                expo = log_scale.unsqueeze(-2).expand(*raw.shape)  # (B, H, R_b, L)
                if allowed is not None:
                    expo = expo.masked_fill(~allowed, float("-inf"))
                ref = expo.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(expo.dtype).min)
                raw = raw * torch.exp(expo - ref)
            elif allowed is not None:
                raw = raw.masked_fill(~allowed, 0.0)
            blocks.append(raw / raw.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(raw.dtype).tiny))
        return torch.cat(blocks, dim=-2)


def favor_step(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    projection: Tensor,
    sums: Tensor,
    log_ref: Tensor | None,
    *,
    kernel: Kernel = "softmax",
    feature_a: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """One position of causal FAVOR+ as a recurrence (decoding): the chunked path with chunks of one.

    ``S_t = S_{t-1} exp(M_{t-1} - M_t) + phi(k_t) [v_t, 1]^T exp(ls_t - M_t)``, ``M_t`` the running
    maximum of the key log-scales (softmax; ReLU keys have none), ``out_t = phi(q_t) . S_t`` divided by
    its normaliser channel. q, k, v: (B, H, 1, D); ``sums`` (B, H, m, D + 1) S_{t-1}, updated in place;
    ``log_ref`` (B, H) M_{t-1} (None for ReLU). Returns out_t (B, H, 1, D) in v's dtype and M_t.
    """
    out_dtype = v.dtype
    if q.dtype in (torch.float16, torch.bfloat16):  # features in float32, as favor_attention
        q, k, v = q.float(), k.float(), v.float()
    qf, _ = _features(q, projection, kernel, feature_a)  # (B, H, 1, m); its scale cancels
    kf, log_scale = _features(k, projection, kernel, feature_a)  # (B, H, 1, m), (B, H, 1) | None
    # The sums' dtype (float64 for generation): the chunked forward adds blocks of 128 positions, a
    # recurrence one position at a time, and in float32 that drifts (4e-5 in the logits after 2,048
    # ReLU steps).
    acc = sums.dtype
    qf, kf = qf.to(acc), kf.to(acc)
    v1 = F.pad(v.to(acc), (0, 1), value=1.0)  # (B, H, 1, D + 1)
    if log_scale is not None:
        ls = log_scale[..., 0].to(acc)  # (B, H)
        new_ref = torch.maximum(log_ref, ls)
        decay = torch.exp(log_ref - new_ref)[..., None, None]  # (B, H, 1, 1), <= 1
        v1 = v1 * torch.exp(ls - new_ref)[..., None, None]
        sums.mul_(decay).add_(kf.transpose(-2, -1) @ v1)  # (B, H, m, D + 1)
        log_ref = new_ref
    else:
        sums.add_(kf.transpose(-2, -1) @ v1)
    return _ratio(qf @ sums).to(out_dtype), log_ref
