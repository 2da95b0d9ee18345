"""Causal linear attention by chunks, with its backward pass written out (used by :mod:`.linear`).

For features qf, kf (B, H, L, m), values v1 (B, H, L, E) and, for the softmax kernel, a per-key
log-scale ls (B, H, L) (the true key features are ``kf_s * exp(ls_s)``), this computes the
unnormalised causal product::

    out_t = exp(-M_t) * sum_{s <= t} (qf_t . kf_s) exp(ls_s) v1_s

with ``M_t`` the running maximum of ``ls`` over positions <= t (a stabiliser: the attention ratio
does not depend on it, so it carries no gradient). The sequence is cut into chunks of C positions:

- across chunks, a state ``T_n = sum_{s in chunks < n} kf_s exp(ls_s - before_n) v1_s^T`` (m, E)
  is carried by an exclusive scan, referenced to ``before_n``, the running maximum before chunk n
  (every factor is at most 1);
- inside a chunk, the C x C product ``tril(qf kf^T)`` is formed once and multiplies the values
  ``v1_s exp(ls_s - b_n)``; the rows are then scaled by ``exp(b_n - M_t)``. ``b_n`` is the running
  maximum at the chunk's first position, which every row of the chunk may see, so the weight
  ``exp(ls_s - M_t)`` factors into one scale per key and one per row: no C x C weight matrix.

A row whose running maximum has risen more than half the float range above ``b_n`` inside its chunk
(keys whose scales differ by > 44 in float32, large norms only) would overflow that split. Such a row
is returned as exact zeros, so its normaliser reads 0 and :func:`.linear._recompute_lost_rows`
recomputes it with per-feature references. Everything row t uses is at positions <= t (``b_n``,
earlier chunks' states, keys s <= t; later keys meet exact zeros of the mask), so causality is
exact bit for bit.

The backward pass reuses the saved C x C product and the states, and obtains the gradient of ``ls``
from the values' gradient: ``ls_s`` only ever multiplies ``v1_s``, so ``dL/dls_s = v1_s . dL/dv1_s``.
Gradients equal autograd's through the same formula to float64 rounding.

Cost: 3 L C (m + E) multiply-adds for the chunk products (forward and backward) on top of the
bidirectional pass's 6 L m E; memory O(L C + L / C m E).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _exclusive_scan_(x: Tensor, decay: Tensor | None, *, reverse: bool = False) -> Tensor:
    """In place, the exclusive scan over the chunk axis of x (B, H, N, m, E), with decay (B, H, N)
    or None; returns x::

        forward:  S_0 = 0,      S_{n+1} = S_n d_n + x_n
        reverse:  S_{N-1} = 0,  S_{n-1} = S_n d_n + x_n

    One fused multiply-add per chunk on an (m, E) running sum that stays in cache; no second
    (N, m, E) tensor is allocated.
    """
    B, H, N, m, E = x.shape
    acc, nxt = x.new_zeros(B, H, m, E), x.new_empty(B, H, m, E)  # the running sum and its successor
    for n in range(N - 1, -1, -1) if reverse else range(N):
        cur = x[:, :, n]  # (B, H, m, E)
        if decay is None:
            torch.add(acc, cur, out=nxt)
        else:
            torch.addcmul(cur, acc, decay[:, :, n, None, None], out=nxt)
        cur.copy_(acc)
        acc, nxt = nxt, acc
    return x


def _future(C: int, device: torch.device) -> Tensor:
    """(C, C) bool, True where key s is after query t (s > t) inside a chunk."""
    return torch.ones(C, C, dtype=torch.bool, device=device).triu_(1)


def _weighted(vc: Tensor, w: Tensor | None) -> Tensor:
    """Values (BHN, C, E) times per-key weights (BHN, C, 1); ReLU features have none."""
    return vc if w is None else vc * w


def _chunk_product(qc: Tensor, kc: Tensor) -> Tensor:
    """tril(qf kf^T) per chunk: (BHN, C, m) twice -> (BHN, C, C), exact zeros where s > t."""
    return torch.bmm(qc, kc.transpose(1, 2)).masked_fill_(_future(qc.shape[1], qc.device), 0.0)


def _states(kc: Tensor, v_state: Tensor, decay: Tensor | None, B: int, H: int) -> Tensor:
    """The state before each chunk, (BHN, m, E): each chunk's kf^T v_state (referenced to after_n),
    then the exclusive scan (referenced to before_n)."""
    BHN, C, m = kc.shape
    E = v_state.shape[-1]
    contrib = torch.bmm(kc.transpose(1, 2), v_state).view(B, H, BHN // (B * H), m, E)
    return _exclusive_scan_(contrib, decay).view(BHN, m, E)


class CausalChunked(torch.autograd.Function):
    """See the module docstring. ``apply(qf, kf, v1, log_scale | None, chunk_size)`` -> (B, H, L, E)."""

    @staticmethod
    def forward(ctx, qf: Tensor, kf: Tensor, v1: Tensor, log_scale: Tensor | None, chunk_size: int) -> Tensor:
        B, H, L, m = qf.shape
        E = v1.shape[-1]
        C = min(chunk_size, L)
        pad = (-L) % C
        if pad:  # padded keys get zero features and a -inf scale; padded rows are dropped
            qf, kf, v1 = (F.pad(t, (0, 0, 0, pad)) for t in (qf, kf, v1))
            if log_scale is not None:
                log_scale = F.pad(log_scale, (0, pad), value=float("-inf"))
        N = (L + pad) // C
        BHN = B * H * N
        qc, kc, vc = qf.reshape(BHN, C, m), kf.reshape(BHN, C, m), v1.reshape(BHN, C, E)  # one chunk each
        P = _chunk_product(qc, kc)  # (BHN, C, C)
        if log_scale is None:  # ReLU features: no scales
            w_state = w_chunk = row_scale = state_scale = decay = None
        else:
            ls = log_scale.view(B, H, N, C)
            lowest = torch.finfo(ls.dtype).min  # finite floor: all-padded prefixes give 0, never nan
            limit = 0.5 * math.log(torch.finfo(ls.dtype).max)
            after = torch.cummax(ls.amax(dim=-1), dim=2).values.clamp_min(lowest)  # (B, H, N): chunks <= n
            before = F.pad(after[..., :-1], (1, 0), value=lowest)  # (B, H, N): chunks < n
            running = torch.maximum(before.unsqueeze(-1), torch.cummax(ls, dim=-1).values)  # (B, H, N, C) M_t
            running = running.clamp_min(lowest)
            base = running[..., :1]  # (B, H, N, 1) b_n: the running maximum at the chunk's first row
            w_state = torch.exp(ls - after.unsqueeze(-1)).view(BHN, C, 1)  # <= 1
            w_chunk = torch.exp((ls - base).clamp_max(limit)).view(BHN, C, 1)  # <= e^limit
            rise = running - base  # (B, H, N, C) >= 0
            row_scale = torch.exp(-rise).masked_fill_(rise > limit, 0.0).view(BHN, C, 1)  # 0: recompute
            state_scale = torch.exp(before.unsqueeze(-1) - base).view(BHN, 1, 1)  # <= 1
            decay = torch.exp(before - after)  # (B, H, N) <= 1: T_{n+1} = T_n d_n + contrib_n
        T = _states(kc, _weighted(vc, w_state), decay, B, H)  # (BHN, m, E)
        out = torch.bmm(qc, T)  # (BHN, C, E)
        if state_scale is not None:
            out.mul_(state_scale)
        out.baddbmm_(P, _weighted(vc, w_chunk))
        if row_scale is not None:
            out.mul_(row_scale)
        # The weighted values are recomputed in backward rather than kept (2 (L, E) tensors less per
        # layer between the passes). The product and the states are handed to the first backward
        # pass, which frees each as soon as it is used; a second one (retain_graph) recomputes them.
        ctx.save_for_backward(qc, kc, vc, w_state, w_chunk, row_scale, state_scale, decay)
        ctx.kept = [P, T]
        ctx.dims = (B, H, L, N, C, m, E)
        return out.view(B, H, N * C, E)[:, :, :L]

    @staticmethod
    def backward(ctx, grad: Tensor):
        qc, kc, vc, w_state, w_chunk, row_scale, state_scale, decay = ctx.saved_tensors
        B, H, L, N, C, m, E = ctx.dims
        if ctx.kept:
            P, T = ctx.kept
            ctx.kept = []
        else:  # differentiated again: the same values, recomputed
            P = _chunk_product(qc, kc)
            T = _states(kc, _weighted(vc, w_state), decay, B, H)
        BHN = B * H * N
        if N * C != L:
            grad = F.pad(grad, (0, 0, 0, N * C - L))
        G = grad.reshape(BHN, C, E)
        if row_scale is not None:
            G = G * row_scale
        dP = torch.bmm(G, _weighted(vc, w_chunk).transpose(1, 2)).masked_fill_(_future(C, G.device), 0.0)  # (BHN, C, C)
        dv = torch.bmm(P.transpose(1, 2), G)  # (BHN, C, E): through the chunk product
        del P
        G_state = G.mul_(state_scale) if state_scale is not None else G  # G is this function's own here
        dq = torch.bmm(dP, kc).baddbmm_(G_state, T.transpose(1, 2))  # (BHN, C, m)
        del T
        R = torch.bmm(qc.transpose(1, 2), G_state).view(B, H, N, m, E)  # d(states), then in place:
        R = _exclusive_scan_(R, decay, reverse=True).view(BHN, m, E)  # d(chunk n's contribution)
        del G, G_state
        dk = torch.bmm(dP.transpose(1, 2), qc).baddbmm_(_weighted(vc, w_state), R.transpose(1, 2))  # (BHN, C, m)
        del dP
        dv_state = torch.bmm(kc, R)  # (BHN, C, E)
        del R
        if w_state is None:
            dv.add_(dv_state)
        else:
            dv.mul_(w_chunk).addcmul_(dv_state, w_state)
        d_log_scale = None
        if ctx.needs_input_grad[3]:  # ls_s only multiplies v1_s
            d_log_scale = torch.linalg.vecdot(vc, dv).view(B, H, N * C)[:, :, :L]

        def unchunk(t: Tensor) -> Tensor:  # (BHN, C, X) -> (B, H, L, X)
            return t.view(B, H, N * C, t.shape[-1])[:, :, :L]

        return unchunk(dq), unchunk(dk), unchunk(dv), d_log_scale, None


def causal_chunked(qf: Tensor, kf: Tensor, v1: Tensor, log_scale: Tensor | None, chunk_size: int) -> Tensor:
    """Causal linear attention by chunks: qf, kf (B, H, L, m); v1 (B, H, L, E); log_scale (B, H, L)
    or None -> (B, H, L, E) unnormalised (module docstring)."""
    return CausalChunked.apply(qf, kf, v1, log_scale, chunk_size)
