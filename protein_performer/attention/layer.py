"""Multi-head attention layer over FAVOR+ (or exact attention, for the baseline Transformer).

The layer projects x to q, k, v and back; its kernel (:mod:`.kernels`) mixes positions, in the
forward (:meth:`FavorAttention.forward`) and one token at a time (:meth:`FavorAttention.step`,
for generation). Every kind has the same parameters (``qkv``, ``out``) and the same ``projection`` buffer, so a
checkpoint of an exact-attention model loads unchanged into a Performer of the same shape: the
backward compatibility the Performer paper highlights.

Two options help FAVOR+ with short-range patterns, which its smooth kernel estimate captures
poorly: hybrid heads (the first ``local_heads`` heads use exact softmax attention inside a sliding
window of ``local_window`` residues, the others FAVOR+ over the whole sequence) and a short
depthwise convolution over q, k and v (``conv_width``; causal padding for causal models). The
convolution, like per-protein segments, is the layer's: it acts the same around every kernel.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from protein_performer.attention.features import gaussian_orthogonal_matrix
from protein_performer.attention.kernels import AttentionOptions, RandomFeatures, make_kernel
from protein_performer.attention.recurrent import LayerState
from protein_performer.attention.rotary import apply_rotary

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
    row alone (sequence axis ``dim`` of each tensor; the mask is (B, L)), joined back in place.

    Segments are served to ``fn`` as padded batches (:func:`segment_groups`: lengths within 1.5x
    of each other share a batch; padding is hidden by the key mask, and queries on it are dropped),
    not one call each: a family window of ~30 members is a few calls per layer instead of ~30."""
    if segments is None:
        return fn(*tensors, key_padding_mask)
    first = tensors[0]
    B, L = first.shape[0], first.shape[dim]
    flat = [t.movedim(dim, 1).reshape(B * L, *t.movedim(dim, 1).shape[2:]) for t in tensors]  # (B L, ...) each
    real = None if key_padding_mask is None else key_padding_mask.reshape(B * L)
    served, where, used = [], torch.empty(B * L, dtype=torch.long), 0
    for group in segment_groups(segments):
        width = max(e - a for _, a, e in group)
        lengths = torch.tensor([e - a for _, a, e in group])  # (S,)
        inside = torch.arange(width)[None, :] < lengths[:, None]  # (S, W)
        index = torch.tensor([b * L + a for b, a, _ in group])[:, None] + torch.arange(width)[None, :]  # (S, W)
        index = torch.where(inside, index, 0)  # padding reads row 0; the mask hides it from every kernel
        where[index[inside]] = used + torch.arange(len(group) * width).view(len(group), width)[inside]
        used += len(group) * width
        index, inside = index.to(first.device), inside.to(first.device)
        parts = [t.index_select(0, index.view(-1)).view(*index.shape, *t.shape[1:]).movedim(1, dim) for t in flat]
        mask = inside if real is None else inside & real[index]  # (S, W)
        y = fn(*parts, mask).movedim(dim, 1)  # (S, W, ...)
        served.append(y.reshape(-1, *y.shape[2:]))
    out = torch.cat(served).index_select(0, where.to(first.device))  # (B L, ...): each token from its segment
    return out.view(B, L, *out.shape[1:]).movedim(1, dim)


def segment_groups(segments: Segments, spread: float = 1.5) -> list[list[tuple[int, int, int]]]:
    """Every ``(row, start, end)`` of ``segments``, longest first, in groups whose longest is at
    most ``spread`` times their shortest (each group is one padded call; padding stays under 1/3)."""
    spans = sorted(((b, a, e) for b, row in enumerate(segments) for a, e in row), key=lambda s: s[1] - s[2])
    groups: list[list[tuple[int, int, int]]] = []
    for span in spans:
        if groups and (groups[-1][0][2] - groups[-1][0][1]) <= spread * (span[2] - span[1]):
            groups[-1].append(span)
        else:
            groups.append([span])
    return groups


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


def _reorder_heads(t: Tensor, heads: slice, order: Tensor) -> Tensor:
    """(B, H, L, ...) ``t`` with heads ``heads`` gathered along L by ``order`` (B, L); others unchanged."""
    part = t[:, heads]
    index = order[:, None, :].reshape(order.shape[0], 1, order.shape[1], *([1] * (t.dim() - 3)))
    part = part.gather(2, index.expand_as(part))
    return torch.cat([t[:, :heads.start], part, t[:, heads.stop:]], dim=1)


class FavorAttention(nn.Module):
    """Multi-head self-attention: ``(B, L, dim) -> (B, L, dim)``.

    The layer holds the projections (``qkv``, ``out``, the optional q/k/v convolution) and the
    buffers saved in checkpoints; how heads mix positions is its ``kernel`` (:mod:`.kernels`),
    chosen once from ``options`` (:class:`~.kernels.AttentionOptions`, the model's attention
    settings: ``attention`` ``"softmax"``: Performer-Softmax, FAVOR+; ``"relu"``: Performer-ReLU;
    ``"exact"``: softmax attention via SDPA; ``feature_map`` and ``local_heads``), which the
    kernel receives whole. The (nb_features, head_dim) random projection is a buffer: saved in
    checkpoints, shared by all heads of the layer, and changed only by :meth:`redraw_features`
    with an explicit generator. The options are validated by ``PerformerConfig``.
    """

    def __init__(self, dim: int, heads: int, options: AttentionOptions = AttentionOptions(), *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.options = options
        self.columns = slice(options.local_heads - options.column_heads, options.local_heads)  # column-order heads
        self.qkv = nn.Linear(dim, 3 * dim)
        # Depthwise filter over the 3 * dim channels of q, k, v, (3 dim, width); tap j reads position
        # t + j - left. It starts as the identity (1 at tap `left`), i.e. as the model without it.
        width = options.conv_width
        self.conv_left = width - 1 if options.causal else (width - 1) // 2
        self.conv_weight = None
        if width:
            identity = torch.zeros(3 * dim, width)
            identity[:, self.conv_left] = 1.0
            self.conv_weight = nn.Parameter(identity)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(options.dropout)
        self.register_buffer("projection", torch.empty(options.nb_features, self.head_dim))
        self.kernel = make_kernel(heads, options)
        statistic = self.kernel.initial_statistic()
        if statistic is not None:  # FAVOR++'s rho per global head, a running statistic of training batches
            self.register_buffer("favorpp_rho", statistic)
        self.redraw_features(generator)

    @torch.no_grad()
    def redraw_features(self, generator: torch.Generator | None = None) -> None:
        """Draw a new orthogonal projection (in place, same device and dtype)."""
        new = gaussian_orthogonal_matrix(
            self.options.nb_features, self.head_dim, scaling=self.options.feature_scaling, generator=generator
        )
        self.projection.copy_(new)

    def features(self) -> RandomFeatures:
        """The buffers the kernel reads: the projection and FAVOR++'s rho (None without it)."""
        return RandomFeatures(self.projection, self._buffers.get("favorpp_rho"))

    @torch.no_grad()
    def commit_feature_statistics(self) -> None:
        """Fold the last training batch's FAVOR++ statistic into the running rho (after a step)."""
        self.kernel.commit_statistic(self._buffers.get("favorpp_rho"))

    def forward(
        self,
        x: Tensor,
        *,
        key_padding_mask: Tensor | None = None,
        rotary: tuple[Tensor, Tensor] | None = None,
        weight_rows: Tensor | None = None,
        need_weights: bool = False,
        segments: Segments | None = None,
        column_order: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """x: (B, L, dim); key_padding_mask: (B, L) True at real tokens; rotary: (cos, sin) (L, head_dim).

        With ``need_weights`` also returns the (B, H, R, L) attention of query rows ``weight_rows``
        (default all rows): implicit FAVOR+ weights, or exact softmax weights for ``"exact"``.
        ``segments`` (per batch row, the ``[start, end)`` ranges that cover it; see
        :func:`protein_segments`): attention runs inside each range only (per-protein attention).
        ``column_order`` ((B, L) order and inverse, :func:`~protein_performer.model.column_permutation`):
        the column heads (the last ``column_heads`` local heads) see the tokens in that order.
        """
        B, L, _ = x.shape
        qkv = self.qkv(x)  # (B, L, 3 dim)
        if self.conv_weight is not None:  # per protein with segments: zeros at each protein's ends
            qkv = _per_segment(self._convolve, (qkv,), key_padding_mask, segments, dim=1)  # (B, L, 3 dim)
        q, k, v = qkv.view(B, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, H, L, hd) each
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        features = self.features()
        attend = partial(self.kernel.attend, features=features)
        columns = column_order is not None and self.columns.start < self.columns.stop
        if columns:
            q, k, v = (_reorder_heads(t, self.columns, column_order[0]) for t in (q, k, v))
            if key_padding_mask is not None and not torch.equal(key_padding_mask.gather(1, column_order[0]),
                                                                key_padding_mask):
                raise ValueError("column heads need padding at the end of each row (right padding)")
        y = _per_segment(attend, (q, k, v), key_padding_mask, segments, dim=2)  # (B, H, L, hd)
        weights = None
        if need_weights:
            with torch.no_grad():
                weights = self.kernel.weights(q, k, key_padding_mask, features=features,
                                              rows=None if columns else weight_rows)
                if columns:  # column heads' weights back to window order: W[i, j] = W_sorted[inv[i], inv[j]]
                    inverse = column_order[1]
                    c = weights[:, self.columns]  # (B, c, L, L)
                    c = c.gather(2, inverse[:, None, :, None].expand_as(c))
                    c = c.gather(3, inverse[:, None, None, :].expand_as(c))
                    weights = torch.cat([weights[:, :self.columns.start], c, weights[:, self.columns.stop:]], 1)
                    if weight_rows is not None:
                        weights = weights[:, :, weight_rows.to(weights.device)]
            if segments is not None:
                weights = _restrict_to_segments(weights, segments, weight_rows)
        if columns:
            y = _reorder_heads(y, self.columns, column_order[1])
        y = y.transpose(1, 2).reshape(B, L, self.dim)  # (B, L, dim)
        return self.dropout(self.out(y)), weights

    def _convolve(self, qkv: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        """Depthwise convolution along L of (B, L, 3 dim); padded positions count as zeros, and a
        causal model pads on the left only, so position t sees t - width + 1 .. t."""
        if key_padding_mask is not None:
            qkv = qkv.masked_fill(~key_padding_mask.unsqueeze(-1), 0.0)
        L, w = qkv.shape[1], self.options.conv_width
        x = F.pad(qkv, (0, 0, self.conv_left, w - 1 - self.conv_left))  # (B, L + w - 1, 3 dim)
        out = x[:, :L] * self.conv_weight[:, 0]
        for j in range(1, w):  # a few shifted multiply-adds: cheaper than a grouped Conv1d on CPU
            out = out + x[:, j : j + L] * self.conv_weight[:, j]
        return out  # (B, L, 3 dim)

    def init_state(self, batch_size: int, *, device: torch.device, dtype: torch.dtype) -> LayerState:
        """The empty decoding state of this (causal) layer for ``batch_size`` rows (:meth:`step`)."""
        if not self.options.causal:
            raise ValueError("recurrent attention needs a causal layer (PerformerConfig.causal=True)")
        kernel = self.kernel.init_state(batch_size, self.head_dim, features=self.features(), device=device,
                                        dtype=dtype)
        conv = None
        if self.conv_weight is not None:
            conv = torch.zeros(batch_size, self.options.conv_width - 1, 3 * self.dim, device=device, dtype=dtype)
        return LayerState(kernel, conv)

    def step(
        self,
        x: Tensor,
        state: LayerState,
        step: int,
        *,
        rotary: tuple[Tensor, Tensor] | None = None,
        segment_start: Tensor | None = None,
    ) -> Tensor:
        """One position of the causal forward: x (B, dim) -> (B, dim); updates ``state`` in place.

        Args:
            step: index of this position among the positions stepped so far (0, 1, ...).
            rotary: (cos, sin), each (B, D): the rotation of each row's position.
            segment_start: (B,) long, the step at which each row's current protein began (per-protein
                attention); keys of earlier steps are invisible. None: every past key is visible.
        """
        B = x.shape[0]
        qkv = self.qkv(x)  # (B, 3 dim)
        if state.conv is not None:
            qkv = self._convolve_step(qkv, state)
        q, k, v = qkv.view(B, 3, self.heads, 1, self.head_dim).unbind(1)  # (B, H, 1, D) each
        if rotary is not None:
            cos, sin = (t[:, None, None, :] for t in rotary)  # (B, 1, 1, D)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = self.kernel.step(state.kernel, q, k, v, features=self.features(), step=step,
                             segment_start=segment_start)  # (B, H, 1, D)
        return self.dropout(self.out(y.reshape(B, self.dim)))  # (B, dim)

    def _convolve_step(self, qkv: Tensor, state: LayerState) -> Tensor:
        """:meth:`_convolve` (causal) at one position: tap j reads position t - width + 1 + j.
        (B, 3 dim) -> (B, 3 dim); the newest row joins the state."""
        window = torch.cat([state.conv, qkv.unsqueeze(1)], dim=1)  # (B, width, 3 dim), oldest first
        state.conv = window[:, 1:]
        out = window[:, 0] * self.conv_weight[:, 0]
        for j in range(1, self.options.conv_width):  # the forward's order of multiply-adds
            out = out + window[:, j] * self.conv_weight[:, j]
        return out

    def extra_repr(self) -> str:
        o = self.options
        return (f"dim={self.dim}, heads={self.heads}, nb_features={o.nb_features}, causal={o.causal}, "
                f"conv_width={o.conv_width}")
