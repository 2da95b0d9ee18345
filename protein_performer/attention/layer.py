"""Multi-head attention layer over FAVOR+ (or exact attention, for the baseline Transformer).

Every kind has the same parameters (``qkv``, ``out``) and the same ``projection`` buffer, so a
checkpoint of an exact-attention model loads unchanged into a Performer of the same shape: the
backward compatibility the Performer paper highlights.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from protein_performer.attention.features import Scaling, gaussian_orthogonal_matrix
from protein_performer.attention.linear import (
    DEFAULT_CHUNK_SIZE,
    exact_attention,
    exact_attention_weights,
    favor_attention,
    favor_attention_weights,
)
from protein_performer.attention.rotary import apply_rotary

AttentionKind = Literal["softmax", "relu", "exact"]


class FavorAttention(nn.Module):
    """Multi-head self-attention: ``(B, L, dim) -> (B, L, dim)``.

    ``kernel`` is ``"softmax"`` (Performer-Softmax, FAVOR+), ``"relu"`` (Performer-ReLU) or
    ``"exact"`` (softmax attention via SDPA). The (nb_features, head_dim) random projection is a
    buffer: saved in checkpoints, shared by all heads of the layer, and changed only by
    :meth:`redraw_features` with an explicit generator.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        kernel: AttentionKind = "softmax",
        nb_features: int = 256,
        causal: bool = False,
        feature_scaling: Scaling = "gaussian",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if kernel not in ("softmax", "relu", "exact"):
            raise ValueError(f"kernel must be 'softmax', 'relu' or 'exact', got {kernel!r}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.kernel, self.causal, self.chunk_size = kernel, causal, chunk_size
        self.nb_features, self.feature_scaling = nb_features, feature_scaling
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("projection", torch.empty(nb_features, self.head_dim))
        self.redraw_features(generator)

    @torch.no_grad()
    def redraw_features(self, generator: torch.Generator | None = None) -> None:
        """Draw a new orthogonal projection (in place, same device and dtype)."""
        new = gaussian_orthogonal_matrix(
            self.nb_features, self.head_dim, scaling=self.feature_scaling, generator=generator
        )
        self.projection.copy_(new)

    def forward(
        self,
        x: Tensor,
        *,
        key_padding_mask: Tensor | None = None,
        rotary: tuple[Tensor, Tensor] | None = None,
        weight_rows: Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, L, dim); key_padding_mask: (B, L) True at real tokens; rotary: (cos, sin) (L, head_dim).

        With ``need_weights`` also returns the (B, H, R, L) attention of query rows ``weight_rows``
        (default all rows): implicit FAVOR+ weights, or exact softmax weights for ``"exact"``.
        """
        B, L, _ = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, H, L, hd) each
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if self.kernel == "exact":
            y = exact_attention(q, k, v, causal=self.causal, key_padding_mask=key_padding_mask)
        else:
            y = favor_attention(
                q, k, v, self.projection, kernel=self.kernel, causal=self.causal,
                key_padding_mask=key_padding_mask, chunk_size=self.chunk_size,
            )
        weights = None
        if need_weights:
            with torch.no_grad():
                if self.kernel == "exact":
                    weights = exact_attention_weights(q, k, causal=self.causal, key_padding_mask=key_padding_mask)
                    if weight_rows is not None:
                        weights = weights[:, :, weight_rows]
                else:
                    weights = favor_attention_weights(
                        q, k, self.projection, kernel=self.kernel, causal=self.causal,
                        rows=weight_rows, key_padding_mask=key_padding_mask,
                    )
        y = y.transpose(1, 2).reshape(B, L, self.dim)  # (B, L, dim)
        return self.dropout(self.out(y)), weights

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, heads={self.heads}, kernel={self.kernel}, "
                f"nb_features={self.nb_features}, causal={self.causal}")
