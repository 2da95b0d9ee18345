"""Attention kernels behind one interface: how a group of heads mixes positions.

A kernel turns per-head queries, keys and values into outputs. :class:`~.layer.FavorAttention`
keeps everything else (q/k/v and output projections, the q/k/v convolution, rotary positions,
per-protein segments, and the buffers saved in checkpoints) and calls its kernel, chosen once by
:func:`make_kernel` from the layer's :class:`AttentionOptions` (PerformerConfig's attention
settings, built by :meth:`AttentionOptions.from_config`), through four methods::

    attend(q, k, v, mask, features=)          (B, H, L, D) -> (B, H, L, D): the forward, bidirectional
                                              or causal, for training and inference
    weights(q, k, mask, features=, rows=)     -> (B, H, R, L): the explicit attention matrix
                                              (analysis and similarity; never training)
    init_state(B, D, features=, ...)          -> a State: the empty past of a causal layer
    step(state, q, k, v, features=, step=)    (B, H, 1, D) -> (B, H, 1, D): one position of the
                                              causal forward (generation), updating ``state``

``mask`` is the (B, L) key padding mask (True at real tokens); ``features`` is
:class:`RandomFeatures`, the layer's buffers: the projection every kind keeps (so a checkpoint of
one kind loads into another) and FAVOR++'s running statistic. A kernel's ``step``, position by
position, equals its causal ``attend`` (tests/test_kernels.py checks every registered kernel in
float64). The mathematics lives elsewhere; a kernel only calls it:

===================  ==================================================  =====================
:data:`KERNELS` key  kernel                                              mathematics
===================  ==================================================  =====================
exact, favor+        :class:`ExactSoftmax` (SDPA; a growing KV cache)    exact.py
softmax, favor+      :class:`FavorSoftmax` (positive random features)    linear.py, features.py
softmax, favor++     :class:`FavorPlusPlus` (optimal positive features)  linear.py, features.py
relu, favor+         :class:`FavorRelu` (generalised ReLU kernel)        linear.py, features.py
``local_heads`` > 0  :class:`LocalSoftmax` (exact in a window) on the     local.py
                     first heads, in a :class:`Hybrid` with the above
===================  ==================================================  =====================

Two options are the layer's, not kernels, because they act around any kernel rather than mix
positions themselves: the q/k/v convolution (``conv_width``) filters the projections before the
kernel sees them (its weight is the layer's parameter), and per-protein segments
(``segment_attention``) run ``attend`` on each protein's slice and, when stepping, pass
``segment_start`` and reset finished rows (:meth:`State.reset_rows`). Every kernel supports both.

Adding a kernel touches this file and its tests. A learned feature map, phi(x) = elu(W x) + 1
with W trained (its state: :class:`~.recurrent.FavorState` without ``log_ref``), for instance::

    class LearnedFeatures(AttentionKernel):
        def __init__(self, heads: int, options: AttentionOptions) -> None:
            super().__init__(heads, options)
            self.map = nn.Linear(64, 64)  # trained with the model; checkpoint keys under attn.kernel
        def attend(self, q, k, v, key_padding_mask=None, *, features): ...  # linear attention of phi
        def weights(self, q, k, key_padding_mask=None, *, features, rows=None): ...
        def init_state(self, batch_size, head_dim, *, features, device, dtype): ...
        def step(self, state, q, k, v, *, features, step, segment_start=None): ...

    KERNELS["learned", "favor+"] = LearnedFeatures

and ``"learned"`` joins :data:`AttentionKind`; :class:`PerformerConfig` accepts it from then on
(tests/test_kernels.py registers a kernel of its own the same way and steps a model with it).

Shapes: q, k, v are (B, H, L, D) with H the heads this kernel serves; in ``step`` L = 1.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import ClassVar, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from protein_performer.attention.exact import exact_attention, exact_attention_weights
from protein_performer.attention.features import Scaling, favorpp_coefficient, favorpp_statistic
from protein_performer.attention.linear import (
    DEFAULT_CHUNK_SIZE,
    Kernel,
    favor_attention,
    favor_attention_weights,
    favor_step,
)
from protein_performer.attention.local import local_attention, local_attention_weights
from protein_performer.attention.recurrent import (
    CacheState,
    FavorState,
    HybridState,
    State,
    WindowState,
)

AttentionKind = Literal["softmax", "relu", "exact"]
"""``PerformerConfig.attention``: the first half of a :data:`KERNELS` key."""
FeatureMap = Literal["favor+", "favor++"]
"""``PerformerConfig.feature_map``: the second half of a :data:`KERNELS` key."""
FAVORPP_MOMENTUM = 0.05
"""Weight of each training batch in FAVOR++'s running rho (an exponential moving average)."""
_INITIAL_CACHE = 256
"""Positions a new exact key/value cache holds before it doubles."""


class RandomFeatures(NamedTuple):
    """The layer's buffers a kernel may read (saved in checkpoints under the layer's names)."""

    projection: Tensor
    """(m, D) orthogonal random features, shared by the layer's heads (every kind keeps one)."""
    rho: Tensor | None = None
    """(H,) FAVOR++'s running statistic per head it serves (``favorpp_rho``; -1: not measured)."""


@dataclass(frozen=True)
class AttentionOptions:
    """How a layer attends: the attention settings of PerformerConfig, under the same names.

    Built from the config in one place, :meth:`from_config`, and passed whole from the model to
    :class:`~.layer.FavorAttention` and on to its kernels, each of which reads what it needs.
    PerformerConfig validates the values (this class does not).
    """

    attention: AttentionKind = "softmax"
    """Kernel of the global heads: the first half of a :data:`KERNELS` key."""
    feature_map: FeatureMap = "favor+"
    """Softmax random features: the second half of a :data:`KERNELS` key."""
    nb_features: int = 256
    """Random features m per head (the layer's projection buffer, (m, head_dim))."""
    feature_scaling: Scaling = "gaussian"
    """Row norms of the orthogonal projection: chi-distributed or all sqrt(head_dim)."""
    causal: bool = False
    """Position t attends to s <= t only."""
    chunk_size: int = DEFAULT_CHUNK_SIZE
    """Block length of causal FAVOR+ prefix sums."""
    local_heads: int = 0
    """The first ``local_heads`` heads attend exactly within ``local_window`` (a :class:`Hybrid`)."""
    local_window: int = 16
    """Largest |t - s| a local head attends to."""
    column_heads: int = 0
    """The last ``column_heads`` of the local heads attend in column order (the layer's option)."""
    conv_width: int = 0
    """Width of the depthwise convolution over q, k and v (the layer's option; 0: none)."""
    dropout: float = 0.0
    """Dropout on the layer's output."""

    @classmethod
    def from_config(cls, config: object) -> AttentionOptions:
        """The options of a :class:`~protein_performer.model.PerformerConfig` (any object with
        attributes of these names): every field is the config's setting of the same name."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


class AttentionKernel(nn.Module, ABC):
    """The interface (module docstring). A module so that a kernel may own parameters and follows
    the layer's ``train()`` / ``eval()``; the kernels here own none (the checkpoint keys are the
    layer's)."""

    def __init__(self, heads: int, options: AttentionOptions) -> None:
        super().__init__()
        self.heads, self.causal = heads, options.causal

    @abstractmethod
    def attend(self, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None = None, *,
               features: RandomFeatures) -> Tensor:
        """(B, H, L, D) -> (B, H, L, D); outputs at padded queries are unspecified."""

    @abstractmethod
    def weights(self, q: Tensor, k: Tensor, key_padding_mask: Tensor | None = None, *,
                features: RandomFeatures, rows: Tensor | None = None) -> Tensor:
        """(B, H, R, L) attention of query rows ``rows`` (R,) (default all), each row summing to 1."""

    @abstractmethod
    def init_state(self, batch_size: int, head_dim: int, *, features: RandomFeatures,
                   device: torch.device, dtype: torch.dtype) -> State:
        """The empty past of ``batch_size`` rows, for :meth:`step`."""

    @abstractmethod
    def step(self, state: State, q: Tensor, k: Tensor, v: Tensor, *, features: RandomFeatures, step: int,
             segment_start: Tensor | None = None) -> Tensor:
        """Position ``step`` (0, 1, ...) of the causal forward: (B, H, 1, D) -> (B, H, 1, D).
        ``segment_start`` (B,) long: keys of earlier steps are invisible (per-protein attention)."""

    def initial_statistic(self) -> Tensor | None:
        """A running statistic the layer keeps as a buffer (FAVOR++'s rho), or None."""
        return None

    def commit_statistic(self, statistic: Tensor | None) -> None:
        """After an optimizer step: fold the last training batch into the running statistic."""

    def extra_repr(self) -> str:
        return f"heads={self.heads}, causal={self.causal}"


class ExactSoftmax(AttentionKernel):
    """softmax(Q K^T / sqrt(D)) V (the Transformer baseline); decoding keeps a growing KV cache."""

    def attend(self, q, k, v, key_padding_mask=None, *, features):
        return exact_attention(q, k, v, causal=self.causal, key_padding_mask=key_padding_mask)

    def weights(self, q, k, key_padding_mask=None, *, features, rows=None):
        w = exact_attention_weights(q, k, causal=self.causal, key_padding_mask=key_padding_mask)
        return w if rows is None else w[:, :, rows]

    def init_state(self, batch_size, head_dim, *, features, device, dtype):
        shape = (batch_size, self.heads, _INITIAL_CACHE, head_dim)
        keys, values = (torch.zeros(shape, device=device, dtype=dtype) for _ in range(2))
        return CacheState(keys, values)

    def step(self, state: CacheState, q, k, v, *, features, step, segment_start=None):
        if step >= state.keys.shape[2]:  # double the capacity (amortised O(1) per step)
            state.keys = torch.cat([state.keys, torch.zeros_like(state.keys)], dim=2)
            state.values = torch.cat([state.values, torch.zeros_like(state.values)], dim=2)
        state.keys[:, :, step] = k[:, :, 0]
        state.values[:, :, step] = v[:, :, 0]
        keys, values = state.keys[:, :, : step + 1], state.values[:, :, : step + 1]  # (B, H, T, D)
        mask = None
        if segment_start is not None:
            steps = torch.arange(step + 1, device=q.device)
            mask = (steps[None, :] >= segment_start[:, None])[:, None, None, :]  # (B, 1, 1, T)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # (B, H, 1, D)


class _Favor(AttentionKernel):
    """FAVOR+ with the feature map ``feature_kernel`` of :mod:`.linear` (stabilised if ``softmax``)."""

    feature_kernel: ClassVar[Kernel]
    log_scaled: ClassVar[bool]
    """Whether keys carry a log-scale (softmax features), so the decoding state tracks its maximum."""

    def __init__(self, heads: int, options: AttentionOptions) -> None:
        super().__init__(heads, options)
        self.chunk_size = options.chunk_size

    def coefficient(self, features: RandomFeatures) -> Tensor | None:
        """FAVOR++'s A per head (H,); None for FAVOR+ (A = 0)."""
        return None

    def attend(self, q, k, v, key_padding_mask=None, *, features):
        return favor_attention(q, k, v, features.projection, kernel=self.feature_kernel, causal=self.causal,
                               key_padding_mask=key_padding_mask, chunk_size=self.chunk_size,
                               feature_a=self.coefficient(features))

    def weights(self, q, k, key_padding_mask=None, *, features, rows=None):
        return favor_attention_weights(q, k, features.projection, kernel=self.feature_kernel, causal=self.causal,
                                       rows=rows, key_padding_mask=key_padding_mask,
                                       feature_a=self.coefficient(features))

    def init_state(self, batch_size, head_dim, *, features, device, dtype):
        acc = torch.float64  # a running sum over thousands of steps: see favor_step
        m = features.projection.shape[0]
        sums = torch.zeros(batch_size, self.heads, m, head_dim + 1, device=device, dtype=acc)
        log_ref = None
        if self.log_scaled:
            log_ref = torch.full((batch_size, self.heads), torch.finfo(acc).min, device=device, dtype=acc)
        return FavorState(sums, log_ref)

    def step(self, state: FavorState, q, k, v, *, features, step, segment_start=None):
        out, state.log_ref = favor_step(q, k, v, features.projection, state.sums, state.log_ref,
                                        kernel=self.feature_kernel, feature_a=self.coefficient(features))
        return out  # finished proteins' sums were reset (State.reset_rows): no mask needed

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, chunk_size={self.chunk_size}"


class FavorSoftmax(_Favor):
    """Performer-Softmax: positive random features of exp(q . k / sqrt(D)), with stabilisers."""

    feature_kernel: ClassVar[Kernel] = "softmax"
    log_scaled: ClassVar[bool] = True


class FavorRelu(_Favor):
    """Performer-ReLU: the generalised kernel relu(W x) / sqrt(m) + eps."""

    feature_kernel: ClassVar[Kernel] = "relu"
    log_scaled: ClassVar[bool] = False


class FavorPlusPlus(FavorSoftmax):
    """FAVOR++: softmax features with the variance-optimal A per head, from a running rho.

    rho is measured on each training batch (kept pending, so a recomputed forward sees the same A)
    and folded into the layer's ``favorpp_rho`` by :meth:`commit_statistic` after the optimizer
    step: a frozen statistic, so no output depends on the future.
    """

    def __init__(self, heads: int, options: AttentionOptions) -> None:
        super().__init__(heads, options)
        self._pending: Tensor | None = None

    def coefficient(self, features: RandomFeatures) -> Tensor:
        return favorpp_coefficient(features.rho)  # rho < 0 (unmeasured) gives A = 0

    def attend(self, q, k, v, key_padding_mask=None, *, features):
        if self.training:  # this batch's statistic serves the *next* batches
            with torch.no_grad():
                self._pending = favorpp_statistic(q, k, key_padding_mask)  # (H,)
        return super().attend(q, k, v, key_padding_mask, features=features)

    def initial_statistic(self) -> Tensor:
        return torch.full((self.heads,), -1.0)

    @torch.no_grad()
    def commit_statistic(self, statistic: Tensor | None) -> None:
        if self._pending is None or statistic is None:
            return
        pending = self._pending
        statistic.copy_(torch.where(statistic < 0, pending, torch.lerp(statistic, pending, FAVORPP_MOMENTUM)))
        self._pending = None


class LocalSoftmax(AttentionKernel):
    """Exact softmax attention within ``local_window`` positions; decoding keeps a ring buffer."""

    def __init__(self, heads: int, options: AttentionOptions) -> None:
        super().__init__(heads, options)
        self.local_window = options.local_window

    def attend(self, q, k, v, key_padding_mask=None, *, features):
        return local_attention(q, k, v, self.local_window, causal=self.causal, key_padding_mask=key_padding_mask)

    def weights(self, q, k, key_padding_mask=None, *, features, rows=None):
        return local_attention_weights(q, k, self.local_window, causal=self.causal, rows=rows,
                                       key_padding_mask=key_padding_mask)

    def init_state(self, batch_size, head_dim, *, features, device, dtype):
        size = self.local_window + 1
        keys, values = (torch.zeros(batch_size, self.heads, size, head_dim, device=device, dtype=dtype)
                        for _ in range(2))
        return WindowState(keys, values, torch.full((size,), -1, dtype=torch.long, device=device))

    def step(self, state: WindowState, q, k, v, *, features, step, segment_start=None):
        size = state.keys.shape[2]
        slot = step % size
        state.keys[:, :, slot] = k[:, :, 0]
        state.values[:, :, slot] = v[:, :, 0]
        state.held[slot] = step
        held = state.held  # (size,) steps in the slots; all within the window by construction
        allowed = (held >= 0).expand(q.shape[0], size)  # (B, size)
        if segment_start is not None:
            allowed = allowed & (held[None, :] >= segment_start[:, None])
        scores = (q * q.shape[-1] ** -0.5) @ state.keys.transpose(-2, -1)  # (B, H, 1, size)
        scores = scores.masked_fill(~allowed[:, None, None, :], float("-inf"))
        return scores.softmax(dim=-1) @ state.values  # (B, H, 1, D)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, local_window={self.local_window}"


class Hybrid(AttentionKernel):
    """Hybrid heads: ``local`` on the first heads, ``global_`` (over the whole sequence) on the
    others, outputs joined in head order. ``global_`` may serve no head (every head local)."""

    def __init__(self, local: LocalSoftmax, global_: AttentionKernel, options: AttentionOptions) -> None:
        super().__init__(local.heads + global_.heads, options)
        self.local, self.global_ = local, global_

    def attend(self, q, k, v, key_padding_mask=None, *, features):
        h = self.local.heads
        y = self.local.attend(q[:, :h], k[:, :h], v[:, :h], key_padding_mask, features=features)
        if not self.global_.heads:
            return y
        rest = self.global_.attend(q[:, h:], k[:, h:], v[:, h:], key_padding_mask, features=features)
        return torch.cat([y, rest], dim=1)

    def weights(self, q, k, key_padding_mask=None, *, features, rows=None):
        h = self.local.heads
        w = self.local.weights(q[:, :h], k[:, :h], key_padding_mask, features=features, rows=rows)
        if not self.global_.heads:
            return w
        return torch.cat([w, self.global_.weights(q[:, h:], k[:, h:], key_padding_mask, features=features,
                                                  rows=rows)], dim=1)

    def init_state(self, batch_size, head_dim, *, features, device, dtype):
        local = self.local.init_state(batch_size, head_dim, features=features, device=device, dtype=dtype)
        rest = None
        if self.global_.heads:
            rest = self.global_.init_state(batch_size, head_dim, features=features, device=device, dtype=dtype)
        return HybridState(local, rest)

    def step(self, state: HybridState, q, k, v, *, features, step, segment_start=None):
        h = self.local.heads
        y = self.local.step(state.local, q[:, :h], k[:, :h], v[:, :h], features=features, step=step,
                            segment_start=segment_start)
        if not self.global_.heads:
            return y
        rest = self.global_.step(state.global_, q[:, h:], k[:, h:], v[:, h:], features=features, step=step,
                                 segment_start=segment_start)
        return torch.cat([y, rest], dim=1)

    def initial_statistic(self) -> Tensor | None:
        return self.global_.initial_statistic()

    def commit_statistic(self, statistic: Tensor | None) -> None:
        self.global_.commit_statistic(statistic)


KERNELS: dict[tuple[str, str], Callable[[int, AttentionOptions], AttentionKernel]] = {
    ("exact", "favor+"): ExactSoftmax,
    ("softmax", "favor+"): FavorSoftmax,
    ("softmax", "favor++"): FavorPlusPlus,
    ("relu", "favor+"): FavorRelu,
}
"""(``attention``, ``feature_map``) of PerformerConfig -> the kernel of the global heads."""


def make_kernel(heads: int, options: AttentionOptions = AttentionOptions()) -> AttentionKernel:
    """The kernel of a layer with ``heads`` heads: ``KERNELS[options.attention, options.feature_map]``,
    joined by local heads first when ``options.local_heads`` (PerformerConfig has validated them)."""
    local_heads = options.local_heads
    global_ = KERNELS[options.attention, options.feature_map](heads - local_heads, options)
    return Hybrid(LocalSoftmax(local_heads, options), global_, options) if local_heads else global_
