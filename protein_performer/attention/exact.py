"""Exact softmax attention, the quadratic baseline: softmax(Q K^T / sqrt(D)) V over every allowed key.

The Transformer the Performer is compared with (``PerformerConfig.attention = "exact"``), computed by
``F.scaled_dot_product_attention`` so it gets the fused kernels; its explicit (L x L) weights serve
analysis only. One decoding step over a key/value cache is :meth:`.kernels.ExactSoftmax.step`.

Shapes: q, k, v are (B, H, L, D); outputs are (B, H, L, D).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def exact_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
) -> Tensor:
    """Exact softmax(Q K^T / sqrt(D)) V, the quadratic baseline (``F.scaled_dot_product_attention``).

    q, k, v: (B, H, L, D); key_padding_mask: (B, L) bool, True at real tokens. Returns (B, H, L, D).
    Without padding no mask is built, so SDPA can use its fused (causal) kernels.
    """
    if key_padding_mask is not None and bool(key_padding_mask.all()):
        key_padding_mask = None
    if key_padding_mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    mask = key_padding_mask[:, None, None, :]  # (B, 1, 1, L)
    if causal:
        L = q.shape[-2]
        mask = mask & torch.ones(L, L, dtype=torch.bool, device=q.device).tril()  # (B, 1, L, L)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def exact_attention_weights(
    q: Tensor, k: Tensor, *, causal: bool = False, key_padding_mask: Tensor | None = None
) -> Tensor:
    """softmax(Q K^T / sqrt(D)) as a (B, H, L, L) matrix; for analysis of exact baselines only."""
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, H, L, L)
    if key_padding_mask is not None:
        scores = scores.masked_fill(~key_padding_mask[:, None, None, :], float("-inf"))
    if causal:
        L = q.shape[-2]
        upper = torch.ones(L, L, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(upper, float("-inf"))
    return scores.softmax(dim=-1)
