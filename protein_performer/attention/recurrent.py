"""Causal attention as a recurrence: one token at a time, for generation.

Causal FAVOR+ is an RNN. With features phi (see :mod:`.features`) its output at position t is::

    out_t = phi(q_t) . S_t[:, :D] / phi(q_t) . S_t[:, D],   S_t = sum_{s <= t} phi(k_s) [v_s, 1]^T

so each global head keeps the (m, D + 1) sums ``S`` and a new token costs O(m D), whatever t is.
Softmax keys carry a log-scale (their largest logit, :func:`~.features.softmax_feature_logits`);
as in :func:`~.linear._causal_chunked`, ``S`` is kept referenced to the running maximum ``M_t`` of
those log-scales over s <= t (the stabiliser)::

    M_t = max(M_{t-1}, ls_t),   S_t = S_{t-1} exp(M_{t-1} - M_t) + phi(k_t) [v_t, 1]^T exp(ls_t - M_t)

which is the chunked path's state with chunks of one position: the same features, the same
reference, the same ratio. The other heads and options keep what they need:

* local heads (exact softmax inside ``local_window``): a ring buffer of the last
  ``local_window + 1`` keys and values;
* exact global heads: a key/value cache that grows with t (the fair baseline for generation);
* the q/k/v convolution (``conv_width``): the last ``conv_width - 1`` rows of q/k/v before it;
* per-protein attention (``segment_attention``): :meth:`LayerState.reset_rows` after an
  ``<eos>`` (the convolution too: the full forward convolves each protein on its own).

Shapes: x is (B, dim) (one position per row); heads are (B, H, 1, D) inside a step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from protein_performer.attention.layer import FavorAttention
from protein_performer.attention.linear import _features, _ratio
from protein_performer.attention.rotary import apply_rotary

_INITIAL_CACHE = 256
"""Positions a new exact key/value cache holds before it doubles."""


@dataclass
class LayerState:
    """Everything one attention layer needs from the past, for B rows stepped together."""

    conv: Tensor | None = None
    """(B, conv_width - 1, 3 dim): q/k/v rows before the convolution, oldest first."""
    local_k: Tensor | None = None
    """(B, local_heads, local_window + 1, D): ring buffer of keys (slot = step % size)."""
    local_v: Tensor | None = None
    """(B, local_heads, local_window + 1, D): values, same slots."""
    local_step: Tensor | None = None
    """(local_window + 1,) long: the step held in each ring slot (-1: empty)."""
    sums: Tensor | None = None
    """(B, H_global, m, D + 1) float64: FAVOR+ sums phi(k_s) [v_s, 1]^T, referenced to ``log_ref``."""
    log_ref: Tensor | None = None
    """(B, H_global): running maximum of the key log-scales (softmax kernel only)."""
    cache_k: Tensor | None = None
    """(B, H_global, capacity, D): exact attention's keys at steps 0 .. step - 1."""
    cache_v: Tensor | None = None
    """(B, H_global, capacity, D): values, same positions."""

    def reset_rows(self, rows: Tensor) -> None:
        """Forget the FAVOR+ sums and the convolution rows of ``rows`` (B,) bool (caches are cut by
        segment starts instead)."""
        if self.conv is not None:  # the next protein's convolution starts from zero padding
            self.conv.masked_fill_(rows[:, None, None], 0.0)
        if self.sums is not None:
            self.sums.masked_fill_(rows[:, None, None, None], 0.0)
        if self.log_ref is not None:
            self.log_ref.masked_fill_(rows[:, None], torch.finfo(self.log_ref.dtype).min)

    def nbytes(self) -> int:
        """Bytes held by this state (caches at their allocated capacity)."""
        return sum(t.numel() * t.element_size() for t in vars(self).values() if isinstance(t, Tensor))


@dataclass
class DecodeState:
    """The state of a whole causal model between steps (:meth:`PerformerLM.init_state`)."""

    layers: list[LayerState]
    """One per block."""
    positions: Tensor
    """(B,) long: position of each row's next token (restarting after ``<eos>`` per protein)."""
    segment_start: Tensor | None = None
    """(B,) long: the step at which each row's current protein began (per-protein attention)."""
    step: int = 0
    """Tokens stepped so far (every row steps together)."""

    def nbytes(self) -> int:
        """Bytes held by the attention states of all layers."""
        return sum(layer.nbytes() for layer in self.layers)

    def repeat(self, n: int) -> "DecodeState":
        """A new state of ``n`` rows, each a copy of this one-row state: a shared prefix (say a
        protein's homologs) stepped once, then continued by ``n`` different suffixes."""
        if self.positions.shape[0] != 1:
            raise ValueError(f"repeat() copies a one-row state; this one has {self.positions.shape[0]} rows")

        def rows(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.expand(n, *t.shape[1:]).clone()

        layers = [LayerState(**{name: (value.clone() if name == "local_step" and value is not None else rows(value))
                                for name, value in vars(layer).items()}) for layer in self.layers]
        return DecodeState(layers, positions=rows(self.positions), segment_start=rows(self.segment_start),
                           step=self.step)


def init_layer_state(attn: FavorAttention, batch_size: int, *, device: torch.device, dtype: torch.dtype) -> LayerState:
    """The empty state of ``attn`` (causal) for ``batch_size`` rows."""
    if not attn.causal:
        raise ValueError("recurrent attention needs a causal layer (PerformerConfig.causal=True)")
    B, D, h = batch_size, attn.head_dim, attn.local_heads
    state = LayerState()
    if attn.conv_weight is not None:
        state.conv = torch.zeros(B, attn.conv_width - 1, 3 * attn.dim, device=device, dtype=dtype)
    if h:
        size = attn.local_window + 1
        state.local_k = torch.zeros(B, h, size, D, device=device, dtype=dtype)
        state.local_v = torch.zeros(B, h, size, D, device=device, dtype=dtype)
        state.local_step = torch.full((size,), -1, dtype=torch.long, device=device)
    g = attn.heads - h
    if g and attn.kernel == "exact":
        state.cache_k = torch.zeros(B, g, _INITIAL_CACHE, D, device=device, dtype=dtype)
        state.cache_v = torch.zeros(B, g, _INITIAL_CACHE, D, device=device, dtype=dtype)
    elif g:
        sums_dtype = torch.float64  # a running sum over thousands of steps: see _favor_step
        state.sums = torch.zeros(B, g, attn.nb_features, D + 1, device=device, dtype=sums_dtype)
        if attn.kernel == "softmax":
            state.log_ref = torch.full((B, g), torch.finfo(sums_dtype).min, device=device, dtype=sums_dtype)
    return state


def attention_step(
    attn: FavorAttention,
    x: Tensor,
    state: LayerState,
    step: int,
    *,
    rotary: tuple[Tensor, Tensor] | None = None,
    segment_start: Tensor | None = None,
) -> Tensor:
    """One position of ``attn``'s causal forward: x (B, dim) -> (B, dim); updates ``state`` in place.

    Args:
        step: index of this position among the positions stepped so far (0, 1, ...).
        rotary: (cos, sin), each (B, D): the rotation of each row's position.
        segment_start: (B,) long, the step at which each row's current protein began (per-protein
            attention); keys of earlier steps are invisible. None: every past key is visible.
    """
    B = x.shape[0]
    qkv = attn.qkv(x)  # (B, 3 dim)
    if state.conv is not None:
        qkv = _convolve_step(attn, qkv, state)
    q, k, v = qkv.view(B, 3, attn.heads, 1, attn.head_dim).unbind(1)  # (B, H, 1, D) each
    if rotary is not None:
        cos, sin = (t[:, None, None, :] for t in rotary)  # (B, 1, 1, D)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    h, parts = attn.local_heads, []
    if h:
        parts.append(_local_step(attn, q[:, :h], k[:, :h], v[:, :h], state, step, segment_start))
    if h < attn.heads:
        if attn.kernel == "exact":
            parts.append(_exact_step(q[:, h:], k[:, h:], v[:, h:], state, step, segment_start))
        else:
            parts.append(_favor_step(attn, q[:, h:], k[:, h:], v[:, h:], state))
    y = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]  # (B, H, 1, D)
    return attn.dropout(attn.out(y.reshape(B, attn.dim)))  # (B, dim)


def _convolve_step(attn: FavorAttention, qkv: Tensor, state: LayerState) -> Tensor:
    """The causal depthwise convolution at one position (FavorAttention._convolve): tap j reads
    position t - width + 1 + j. (B, 3 dim) -> (B, 3 dim); the newest row joins the state."""
    window = torch.cat([state.conv, qkv.unsqueeze(1)], dim=1)  # (B, width, 3 dim), oldest first
    state.conv = window[:, 1:]
    out = window[:, 0] * attn.conv_weight[:, 0]
    for j in range(1, attn.conv_width):  # the forward's order of multiply-adds
        out = out + window[:, j] * attn.conv_weight[:, j]
    return out


def _favor_step(attn: FavorAttention, q: Tensor, k: Tensor, v: Tensor, state: LayerState) -> Tensor:
    """Global FAVOR+ heads: (B, Hg, 1, D) -> (B, Hg, 1, D), the recurrence of the module docstring."""
    out_dtype = v.dtype
    if q.dtype in (torch.float16, torch.bfloat16):  # features in float32, as favor_attention
        q, k, v = q.float(), k.float(), v.float()
    a = attn.feature_coefficient()  # FAVOR++'s A per global head, or None
    qf, _ = _features(q, attn.projection, attn.kernel, a)  # (B, Hg, 1, m); its scale cancels
    kf, log_scale = _features(k, attn.projection, attn.kernel, a)  # (B, Hg, 1, m), (B, Hg, 1) | None
    # The sums are float64: the chunked forward adds blocks of 128 positions, a recurrence adds one
    # position at a time, and in float32 that drifts (4e-5 in the logits after 2,048 ReLU steps).
    acc = state.sums.dtype
    qf, kf = qf.to(acc), kf.to(acc)
    v1 = F.pad(v.to(acc), (0, 1), value=1.0)  # (B, Hg, 1, D + 1)
    if log_scale is not None:
        ls = log_scale[..., 0].to(acc)  # (B, Hg)
        new_ref = torch.maximum(state.log_ref, ls)
        decay = torch.exp(state.log_ref - new_ref)[..., None, None]  # (B, Hg, 1, 1), <= 1
        v1 = v1 * torch.exp(ls - new_ref)[..., None, None]
        state.sums.mul_(decay).add_(kf.transpose(-2, -1) @ v1)  # (B, Hg, m, D + 1)
        state.log_ref = new_ref
    else:
        state.sums.add_(kf.transpose(-2, -1) @ v1)
    return _ratio(qf @ state.sums).to(out_dtype)  # (B, Hg, 1, D)


def _local_step(attn: FavorAttention, q: Tensor, k: Tensor, v: Tensor, state: LayerState, step: int,
                segment_start: Tensor | None) -> Tensor:
    """Local heads: exact softmax over the ring buffer of the last ``local_window`` + 1 keys."""
    size = state.local_k.shape[2]
    slot = step % size
    state.local_k[:, :, slot] = k[:, :, 0]
    state.local_v[:, :, slot] = v[:, :, 0]
    state.local_step[slot] = step
    held = state.local_step  # (size,) steps in the slots; all within the window by construction
    allowed = (held >= 0).expand(q.shape[0], size)  # (B, size)
    if segment_start is not None:
        allowed = allowed & (held[None, :] >= segment_start[:, None])
    scores = (q * q.shape[-1] ** -0.5) @ state.local_k.transpose(-2, -1)  # (B, h, 1, size)
    scores = scores.masked_fill(~allowed[:, None, None, :], float("-inf"))
    return scores.softmax(dim=-1) @ state.local_v  # (B, h, 1, D)


def _exact_step(q: Tensor, k: Tensor, v: Tensor, state: LayerState, step: int,
                segment_start: Tensor | None) -> Tensor:
    """Exact global heads: append to the key/value cache and attend over steps 0 .. step."""
    if step >= state.cache_k.shape[2]:  # double the capacity (amortised O(1) per step)
        state.cache_k = torch.cat([state.cache_k, torch.zeros_like(state.cache_k)], dim=2)
        state.cache_v = torch.cat([state.cache_v, torch.zeros_like(state.cache_v)], dim=2)
    state.cache_k[:, :, step] = k[:, :, 0]
    state.cache_v[:, :, step] = v[:, :, 0]
    keys, values = state.cache_k[:, :, : step + 1], state.cache_v[:, :, : step + 1]  # (B, Hg, T, D)
    mask = None
    if segment_start is not None:
        steps = torch.arange(step + 1, device=q.device)
        mask = (steps[None, :] >= segment_start[:, None])[:, None, None, :]  # (B, 1, 1, T)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # (B, Hg, 1, D)
