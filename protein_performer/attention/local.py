"""Exact softmax attention inside a sliding window, computed in blocks (linear in L).

Each query t attends to the keys s with ``|t - s| <= local_window`` (and ``s <= t`` when causal)::

    out_t = sum_s softmax_s(q_t . k_s / sqrt(D) over the window) v_s

The sequence is cut into blocks of ``local_window`` positions; a query block sees its own block and its
neighbours (previous and next; previous only when causal), so time and memory are
O(L * local_window * D), never O(L^2). Used by the hybrid local + global heads of
:class:`~protein_performer.attention.layer.FavorAttention`: sharp, short-range patterns exactly,
the whole window through FAVOR+.

Masked scores are -inf, so disallowed keys get weights of exactly 0 and a causal output at t does
not depend on later positions, bit for bit.

Shapes: q, k, v are (B, H, L, D); outputs are (B, H, L, D).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_window(local_window: int) -> None:
    if local_window < 1:
        raise ValueError(f"local_window must be >= 1, got {local_window}")


def _neighbours(blocks: Tensor, causal: bool) -> Tensor:
    """(B, H, N, W, D) -> (B, H, N, kW, D): the previous, own and (bidirectional) next block."""
    prev = F.pad(blocks, (0, 0, 0, 0, 1, 0))[:, :, :-1]  # block n - 1 (zeros before the first)
    parts = [prev, blocks]
    if not causal:
        parts.append(F.pad(blocks, (0, 0, 0, 0, 0, 1))[:, :, 1:])  # block n + 1
    return torch.cat(parts, dim=3)


def local_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    local_window: int,
    *,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
) -> Tensor:
    """Exact softmax attention over keys within ``local_window`` positions of each query.

    Args:
        q, k, v: (B, H, L, D).
        local_window: largest ``|t - s|`` a query t may attend to (>= 1).
        causal: only keys ``s <= t``.
        key_padding_mask: (B, L) bool, True at real tokens; padded keys get weight 0 (a padded
            query still sees itself, so no row is empty; its output is unspecified).

    Returns:
        (B, H, L, D) in the dtype of ``v`` (q and k are cast to it).
    """
    _check_window(local_window)
    B, H, L, D = q.shape
    W = min(local_window, L)
    pad = (-L) % W
    N = (L + pad) // W
    # Under autocast rotary hands over q and k in float32 and v in bf16; the products would round q
    # and k to bf16 anyway, so round them once here, before the neighbours triple k (same values).
    q, k = (q * D**-0.5).to(v.dtype), k.to(v.dtype)
    qb = F.pad(q, (0, 0, 0, pad)).view(B, H, N, W, D)
    kn = _neighbours(F.pad(k, (0, 0, 0, pad)).view(B, H, N, W, D), causal)  # (B, H, N, kW, D)
    vn = _neighbours(F.pad(v, (0, 0, 0, pad)).view(B, H, N, W, D), causal)
    kW = kn.shape[3]
    t = torch.arange(N * W, device=q.device).view(N, W, 1)  # query positions
    s = (torch.arange(N, device=q.device) * W - W).view(N, 1, 1) + torch.arange(kW, device=q.device)  # (N, 1, kW)
    rel = s - t  # (N, W, kW)
    allowed = (rel.abs() <= local_window) & (s >= 0) & (s < L)
    if causal:
        allowed &= rel <= 0
    if key_padding_mask is not None:
        real = F.pad(key_padding_mask, (0, pad), value=False).view(B, 1, N, W, 1).float()
        real = _neighbours(real, causal).transpose(-2, -1) > 0  # (B, 1, N, 1, kW): real keys
        allowed = (allowed & real) | (rel == 0)  # (B, 1, N, W, kW)
    scores = (qb @ kn.transpose(-2, -1)).masked_fill(~allowed, float("-inf"))  # (B, H, N, W, kW)
    out = scores.softmax(dim=-1) @ vn  # (B, H, N, W, D)
    return out.reshape(B, H, N * W, D)[:, :, :L]


def local_attention_weights(
    q: Tensor,
    k: Tensor,
    local_window: int,
    *,
    causal: bool = False,
    rows: Tensor | None = None,
    key_padding_mask: Tensor | None = None,
) -> Tensor:
    """The (B, H, R, L) weights of :func:`local_attention` for query rows ``rows`` (default all).

    For analysis: each returned row is a full length-L row (zeros outside the window) summing to 1.
    """
    _check_window(local_window)
    L = q.shape[-2]
    rows = torch.arange(L, device=q.device) if rows is None else rows.to(q.device)
    positions = torch.arange(L, device=q.device)
    rel = positions[None, :] - rows[:, None]  # (R, L)
    allowed = rel.abs() <= local_window
    if causal:
        allowed &= rel <= 0
    scores = (q[:, :, rows] @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, H, R, L)
    if key_padding_mask is not None:
        allowed = (allowed & key_padding_mask[:, None, None, :]) | (rel == 0)  # (B, 1, R, L)
    return scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
