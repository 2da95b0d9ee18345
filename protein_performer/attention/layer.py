"""Multi-head attention layer over FAVOR+ (or exact attention, for the baseline Transformer).

Every kind has the same parameters (``qkv``, ``out``) and the same ``projection`` buffer, so a
checkpoint of an exact-attention model loads unchanged into a Performer of the same shape: the
backward compatibility the Performer paper highlights.

Two options help FAVOR+ with short-range patterns, which its smooth kernel estimate captures
poorly: hybrid heads (the first ``local_heads`` heads use exact softmax attention inside a sliding
window of ``local_window`` residues, the others FAVOR+ over the whole sequence) and a short
depthwise convolution over q, k and v (``conv_width``; causal padding for causal models).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from protein_performer.attention.features import Scaling, favorpp_coefficient, gaussian_orthogonal_matrix
from protein_performer.attention.linear import (
    DEFAULT_CHUNK_SIZE,
    exact_attention,
    exact_attention_weights,
    favor_attention,
    favor_attention_weights,
)
from protein_performer.attention.local import local_attention, local_attention_weights
from protein_performer.attention.rotary import apply_rotary

AttentionKind = Literal["softmax", "relu", "exact"]
FeatureMap = Literal["favor+", "favor++"]
FAVORPP_MOMENTUM = 0.05
"""Weight of each training batch in FAVOR++'s running rho (an exponential moving average)."""


Segments = list[list[tuple[int, int]]]
"""Per batch row, ``[start, end)`` ranges covering the row in order (one per protein)."""


def protein_segments(input_ids: Tensor, eos_idx: int) -> Segments:
    """Split each row of (B, L) token ids after every ``<eos>``: the proteins of a concatenated
    window, each ending with its ``<eos>`` (a trailing part without one is a segment too)."""
    segments = []
    for row in input_ids.tolist():
        ends = [i + 1 for i, t in enumerate(row) if t == eos_idx]
        if not ends or ends[-1] != len(row):
            ends.append(len(row))
        segments.append(list(zip([0, *ends[:-1]], ends)))
    return segments


def _per_segment(fn, tensors: tuple[Tensor, ...], key_padding_mask: Tensor | None, segments: Segments | None,
                 dim: int) -> Tensor:
    """``fn(*tensors, key_padding_mask)``, or, with ``segments``, ``fn`` on every segment of every
    row alone (sequence axis ``dim`` of each tensor; the mask is (B, L)), joined back in place."""
    if segments is None:
        return fn(*tensors, key_padding_mask)
    rows = []
    for b, row in enumerate(segments):
        pieces = []
        for a, e in row:
            part = [t[b : b + 1].narrow(dim, a, e - a) for t in tensors]
            mask = None if key_padding_mask is None else key_padding_mask[b : b + 1, a:e]
            pieces.append(fn(*part, mask))
        rows.append(torch.cat(pieces, dim=dim)[0])
    return torch.stack(rows)


def _restrict_to_segments(weights: Tensor, segments: Segments, rows: Tensor | None) -> Tensor:
    """(B, H, R, L) weights -> zero outside each query's segment, rows renormalised (the weights
    of attention computed per segment: same numerators, fewer keys)."""
    B, _, R, L = weights.shape
    seg = torch.empty(B, L, dtype=torch.long)
    for b, row in enumerate(segments):
        for i, (a, e) in enumerate(row):
            seg[b, a:e] = i
    seg = seg.to(weights.device)
    query_seg = seg if rows is None else seg[:, rows.to(weights.device)]  # (B, R)
    same = (query_seg[:, :, None] == seg[:, None, :]).unsqueeze(1)  # (B, 1, R, L)
    kept = weights * same
    return kept / kept.sum(-1, keepdim=True).clamp_min(torch.finfo(kept.dtype).tiny)


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
        local_heads: int = 0,
        local_window: int = 16,
        conv_width: int = 0,
        feature_map: FeatureMap = "favor+",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if kernel not in ("softmax", "relu", "exact"):
            raise ValueError(f"kernel must be 'softmax', 'relu' or 'exact', got {kernel!r}")
        if not 0 <= local_heads <= heads:
            raise ValueError(f"local_heads must be in [0, heads={heads}], got {local_heads}")
        if local_window < 1:
            raise ValueError(f"local_window must be >= 1, got {local_window}")
        if conv_width < 0 or conv_width == 1:
            raise ValueError(f"conv_width must be 0 (off) or >= 2, got {conv_width}")
        if feature_map not in ("favor+", "favor++"):
            raise ValueError(f"feature_map must be 'favor+' or 'favor++', got {feature_map!r}")
        if feature_map == "favor++" and kernel != "softmax":
            raise ValueError(f"feature_map 'favor++' needs the softmax kernel, not {kernel!r}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.kernel, self.causal, self.chunk_size = kernel, causal, chunk_size
        self.nb_features, self.feature_scaling = nb_features, feature_scaling
        self.local_heads, self.local_window, self.conv_width = local_heads, local_window, conv_width
        self.qkv = nn.Linear(dim, 3 * dim)
        # Depthwise filter over the 3 * dim channels of q, k, v, (3 dim, width); tap j reads position
        # t + j - left. It starts as the identity (1 at tap `left`), i.e. as the model without it.
        self.conv_left = conv_width - 1 if causal else (conv_width - 1) // 2
        self.conv_weight = None
        if conv_width:
            identity = torch.zeros(3 * dim, conv_width)
            identity[:, self.conv_left] = 1.0
            self.conv_weight = nn.Parameter(identity)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("projection", torch.empty(nb_features, self.head_dim))
        self.feature_map = feature_map
        if feature_map == "favor++":
            # rho = mean |q' + k'|^2 / d per global head, a running statistic of training batches
            # (-1: not measured yet, A = 0). A frozen statistic: no output depends on the future.
            self.register_buffer("favorpp_rho", torch.full((heads - local_heads,), -1.0))
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
        segments: Segments | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, L, dim); key_padding_mask: (B, L) True at real tokens; rotary: (cos, sin) (L, head_dim).

        With ``need_weights`` also returns the (B, H, R, L) attention of query rows ``weight_rows``
        (default all rows): implicit FAVOR+ weights, or exact softmax weights for ``"exact"``.
        ``segments`` (per batch row, the ``[start, end)`` ranges that cover it; see
        :func:`protein_segments`): attention runs inside each range only (per-protein attention).
        """
        B, L, _ = x.shape
        qkv = self.qkv(x)  # (B, L, 3 dim)
        if self.conv_weight is not None:  # per protein with segments: zeros at each protein's ends
            qkv = _per_segment(self._convolve, (qkv,), key_padding_mask, segments, dim=1)  # (B, L, 3 dim)
        q, k, v = qkv.view(B, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, H, L, hd) each
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        y = _per_segment(self._attend, (q, k, v), key_padding_mask, segments, dim=2)  # (B, H, L, hd)
        weights = None
        if need_weights:
            weights = self._weights(q, k, weight_rows, key_padding_mask)
            if segments is not None:
                weights = _restrict_to_segments(weights, segments, weight_rows)
        y = y.transpose(1, 2).reshape(B, L, self.dim)  # (B, L, dim)
        return self.dropout(self.out(y)), weights

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        """(B, H, L, hd) -> (B, H, L, hd): local heads first, then the global ones."""
        h = self.local_heads
        parts = []
        if h:  # heads [0, h): exact attention inside the sliding window
            parts.append(local_attention(q[:, :h], k[:, :h], v[:, :h], self.local_window,
                                         causal=self.causal, key_padding_mask=key_padding_mask))
        if h < self.heads:  # heads [h, H): the kernel over the whole sequence
            parts.append(self._global(q[:, h:], k[:, h:], v[:, h:], key_padding_mask))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def _convolve(self, qkv: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        """Depthwise convolution along L of (B, L, 3 dim); padded positions count as zeros, and a
        causal model pads on the left only, so position t sees t - width + 1 .. t."""
        if key_padding_mask is not None:
            qkv = qkv.masked_fill(~key_padding_mask.unsqueeze(-1), 0.0)
        L, w = qkv.shape[1], self.conv_width
        x = F.pad(qkv, (0, 0, self.conv_left, w - 1 - self.conv_left))  # (B, L + w - 1, 3 dim)
        out = x[:, :L] * self.conv_weight[:, 0]
        for j in range(1, w):  # a few shifted multiply-adds: cheaper than a grouped Conv1d on CPU
            out = out + x[:, j : j + L] * self.conv_weight[:, j]
        return out  # (B, L, 3 dim)

    def feature_coefficient(self) -> Tensor | None:
        """FAVOR++'s A per global head, (H_global,), from the running rho; None for FAVOR+."""
        if self.feature_map != "favor++":
            return None
        return favorpp_coefficient(self.favorpp_rho)  # rho < 0 (unmeasured) gives A = 0

    @torch.no_grad()
    def _measure_favorpp(self, q: Tensor, k: Tensor, key_padding_mask: Tensor | None) -> None:
        """This batch's rho_h = mean over query/key pairs of |q' + k'|^2 / d, i.e.
        (E|q'|^2 + E|k'|^2 + 2 E[q'] . E[k']) / d over real tokens, kept until
        :meth:`commit_feature_statistics` (so a recomputed forward sees the same A)."""
        d = q.shape[-1]
        x, y = q.float() * d**-0.25, k.float() * d**-0.25  # (B, H, L, d)
        if key_padding_mask is None:
            w = torch.ones(x.shape[0], 1, x.shape[2], 1, device=x.device)
        else:
            w = key_padding_mask[:, None, :, None].float()  # (B, 1, L, 1): real tokens
        n = w.sum().clamp_min(1)
        sq_x = ((x * x).sum(-1, keepdim=True) * w).sum(dim=(0, 2, 3)) / n  # (H,)
        sq_y = ((y * y).sum(-1, keepdim=True) * w).sum(dim=(0, 2, 3)) / n
        mean_x, mean_y = (x * w).sum(dim=(0, 2)) / n, (y * w).sum(dim=(0, 2)) / n  # (H, d)
        self._favorpp_pending = (sq_x + sq_y + 2 * (mean_x * mean_y).sum(-1)) / d  # (H,)

    @torch.no_grad()
    def commit_feature_statistics(self) -> None:
        """Fold the last training batch's FAVOR++ statistic into the running rho (after a step)."""
        pending = getattr(self, "_favorpp_pending", None)
        if pending is None:
            return
        rho = self.favorpp_rho
        rho.copy_(torch.where(rho < 0, pending, torch.lerp(rho, pending, FAVORPP_MOMENTUM)))
        self._favorpp_pending = None

    def _global(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        if self.kernel == "exact":
            return exact_attention(q, k, v, causal=self.causal, key_padding_mask=key_padding_mask)
        a = self.feature_coefficient()
        if a is not None and self.training:  # this batch's statistic serves the *next* batches
            self._measure_favorpp(q, k, key_padding_mask)
        return favor_attention(q, k, v, self.projection, kernel=self.kernel, causal=self.causal,
                               key_padding_mask=key_padding_mask, chunk_size=self.chunk_size, feature_a=a)

    @torch.no_grad()
    def _weights(self, q: Tensor, k: Tensor, rows: Tensor | None, key_padding_mask: Tensor | None) -> Tensor:
        """(B, H, R, L) weights of every head: local heads first, then the global ones."""
        h, parts = self.local_heads, []
        if h:
            parts.append(local_attention_weights(q[:, :h], k[:, :h], self.local_window, causal=self.causal,
                                                 rows=rows, key_padding_mask=key_padding_mask))
        if h < self.heads:
            qg, kg = q[:, h:], k[:, h:]
            if self.kernel == "exact":
                w = exact_attention_weights(qg, kg, causal=self.causal, key_padding_mask=key_padding_mask)
                parts.append(w if rows is None else w[:, :, rows])
            else:
                parts.append(favor_attention_weights(qg, kg, self.projection, kernel=self.kernel,
                                                     causal=self.causal, rows=rows,
                                                     key_padding_mask=key_padding_mask,
                                                     feature_a=self.feature_coefficient()))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, heads={self.heads}, kernel={self.kernel}, "
                f"nb_features={self.nb_features}, causal={self.causal}, local_heads={self.local_heads}, "
                f"local_window={self.local_window}, conv_width={self.conv_width}")
