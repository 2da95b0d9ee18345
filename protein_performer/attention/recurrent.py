"""Decoding states: what causal attention keeps from the past to go on one token at a time.

Each kernel (:mod:`.kernels`) builds its own :class:`State` in ``init_state`` and updates it in
``step``; the layer adds the convolution's last rows (:class:`LayerState`), and the model the
positions (:class:`DecodeState`, :meth:`PerformerLM.init_state` / :meth:`PerformerLM.step`).

Causal FAVOR+ is an RNN. With features phi (see :mod:`.features`) its output at position t is::

    out_t = phi(q_t) . S_t[:, :D] / phi(q_t) . S_t[:, D],   S_t = sum_{s <= t} phi(k_s) [v_s, 1]^T

so each FAVOR+ head keeps the (m, D + 1) sums ``S`` and a new token costs O(m D), whatever t is;
softmax keys keep them referenced to the running maximum of their log-scales
(:func:`~.linear.favor_step`, the chunked path's state with chunks of one position). The others:

* local heads (exact softmax inside ``local_window``): a ring buffer of the last
  ``local_window + 1`` keys and values;
* exact heads: a key/value cache that grows with t (the fair baseline for generation);
* the q/k/v convolution (``conv_width``): the last ``conv_width - 1`` rows of q/k/v before it;
* per-protein attention (``segment_attention``): :meth:`State.reset_rows` after an ``<eos>``
  (FAVOR+ sums and the convolution: the full forward computes each protein on its own); caches
  and ring buffers hide keys before ``segment_start`` instead.

Shapes: heads are (B, H, ., D), the batch row first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import Tensor


@dataclass
class State:
    """A decoding state: tensors whose first axis is the batch row (except the fields named in
    ``shared``, one per layer) or nested states. Updated in place by ``step``."""

    shared: ClassVar[tuple[str, ...]] = ()

    def reset_rows(self, rows: Tensor) -> None:
        """Forget the past of ``rows`` (B,) bool after their protein's ``<eos>`` (per-protein
        attention). By default nothing: such kernels mask keys before ``segment_start`` instead."""

    def nbytes(self) -> int:
        """Bytes held (caches at their allocated capacity)."""
        return sum(v.numel() * v.element_size() if isinstance(v, Tensor) else v.nbytes()
                   for v in vars(self).values() if isinstance(v, (Tensor, State)))

    def repeat(self, n: int) -> State:
        """A copy with ``n`` rows, each a copy of this one-row state's row."""

        def copy(name: str, value):
            if isinstance(value, State):
                return value.repeat(n)
            if not isinstance(value, Tensor):
                return value
            return value.clone() if name in self.shared else value.expand(n, *value.shape[1:]).clone()

        return replace(self, **{name: copy(name, value) for name, value in vars(self).items()})


@dataclass
class FavorState(State):
    """FAVOR+ heads: the sums S of :func:`~.linear.favor_step` and their stabiliser."""

    sums: Tensor
    """(B, H, m, D + 1) float64: sum_s phi(k_s) [v_s, 1]^T, referenced to ``log_ref``."""
    log_ref: Tensor | None
    """(B, H): running maximum of the key log-scales (softmax features; None for ReLU)."""

    def reset_rows(self, rows: Tensor) -> None:
        self.sums.masked_fill_(rows[:, None, None, None], 0.0)
        if self.log_ref is not None:
            self.log_ref.masked_fill_(rows[:, None], torch.finfo(self.log_ref.dtype).min)


@dataclass
class CacheState(State):
    """Exact heads: every key and value so far (capacity doubles when full)."""

    keys: Tensor
    """(B, H, capacity, D): keys at steps 0 .. step - 1."""
    values: Tensor
    """(B, H, capacity, D): values, same positions."""


@dataclass
class WindowState(State):
    """Local heads: a ring buffer of the last ``local_window + 1`` keys and values."""

    keys: Tensor
    """(B, H, local_window + 1, D): slot = step % (local_window + 1)."""
    values: Tensor
    """(B, H, local_window + 1, D): values, same slots."""
    held: Tensor
    """(local_window + 1,) long: the step held in each slot (-1: empty); the same for every row."""
    shared: ClassVar[tuple[str, ...]] = ("held",)


@dataclass
class HybridState(State):
    """A :class:`Hybrid`'s two states."""

    local: State
    global_: State | None
    """None when every head is local."""

    def reset_rows(self, rows: Tensor) -> None:
        self.local.reset_rows(rows)
        if self.global_ is not None:
            self.global_.reset_rows(rows)


@dataclass
class LayerState(State):
    """Everything one attention layer needs from the past, for B rows stepped together."""

    kernel: State
    """The kernel's own state (``FavorAttention.kernel.init_state``)."""
    conv: Tensor | None = None
    """(B, conv_width - 1, 3 dim): q/k/v rows before the convolution, oldest first."""

    def reset_rows(self, rows: Tensor) -> None:
        """Forget the kernel's past and the convolution rows of ``rows`` (B,) bool."""
        if self.conv is not None:  # the next protein's convolution starts from zero padding
            self.conv.masked_fill_(rows[:, None, None], 0.0)
        self.kernel.reset_rows(rows)


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

    def repeat(self, n: int) -> DecodeState:
        """A new state of ``n`` rows, each a copy of this one-row state: a shared prefix (say a
        protein's homologs) stepped once, then continued by ``n`` different suffixes."""
        if self.positions.shape[0] != 1:
            raise ValueError(f"repeat() copies a one-row state; this one has {self.positions.shape[0]} rows")

        def rows(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.expand(n, *t.shape[1:]).clone()

        return DecodeState([layer.repeat(n) for layer in self.layers], positions=rows(self.positions),
                           segment_start=rows(self.segment_start), step=self.step)
