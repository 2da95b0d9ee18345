"""The protein language model: a pre-norm Transformer whose attention is FAVOR+ (or exact).

Plain ``nn.Module``; imports only torch and the attention core. Training lives in ``lit.py``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from protein_performer.alphabet import ALPHABET
from protein_performer.attention import (
    KERNELS,
    AttentionKind,
    AttentionOptions,
    FavorAttention,
    FeatureMap,
    RotaryEmbedding,
    Segments,
    protein_segments,
)
from protein_performer.attention.recurrent import DecodeState


@dataclass
class PerformerConfig:
    """Shape of a :class:`PerformerLM`. The defaults are the mission models' shape."""

    vocab_size: int = len(ALPHABET)
    """Number of token ids (the alphabet's size)."""
    dim: int = 512
    """Width of the residual stream."""
    depth: int = 6
    """Number of Transformer blocks."""
    heads: int = 8
    """Attention heads per block (dim must be divisible by heads)."""
    ff_mult: int = 4
    """Feed-forward hidden width = ff_mult * dim."""
    attention: AttentionKind = "softmax"
    """Performer-Softmax (FAVOR+), Performer-ReLU, or exact softmax attention (the baseline)."""
    nb_features: int = 256
    """Random features m per head (FAVOR+ only)."""
    feature_scaling: Literal["gaussian", "sqrt_d"] = "gaussian"
    """Row norms of the orthogonal projection: chi-distributed or all sqrt(head_dim)."""
    causal: bool = False
    """Unidirectional attention (causal language modelling)."""
    position: Literal["rotary", "learned"] = "rotary"
    """Rotary embeddings work at any length; learned absolute ones up to max_position."""
    max_position: int = 8192
    """Longest sequence for learned absolute positions (unused with rotary)."""
    dropout: float = 0.1
    """Dropout on the residual branches and embeddings."""
    checkpointing: bool = False
    """Recompute each block in the backward pass (activation checkpointing) to save memory."""
    chunk_size: int = 64
    """Block length of causal FAVOR+ prefix sums (64: fastest on CPU at m = 256, docs/benchmarks/attention.md)."""
    feature_seed: int = 0
    """Seed of the initial random projections (redraws are seeded by the trainer)."""
    tie_embeddings: bool = True
    """Share the input embedding and the output projection."""
    local_heads: int = 0
    """Hybrid attention: this many heads per block use exact softmax attention inside a sliding
    window of ``local_window`` residues (linear in L, causal-safe); the others use ``attention``."""
    local_window: int = 16
    """Largest |t - s| a local head attends to."""
    column_heads: int = 0
    """Family windows: the last ``column_heads`` of the ``local_heads`` attend in column order, the
    window's tokens sorted by position (stably, so by place in the window within a position): a
    residue's ``local_window`` neighbours either side are then the residues at its own and the
    adjacent columns of the other members, exactly, however far apart they sit in the window. A
    lone protein is in column order already (these heads are then ordinary local heads). Needs
    positions per member (``restart_positions`` or ``aligned_positions``), a masked model, and
    attention across members (not ``segment_attention``)."""
    conv_width: int = 0
    """Width of a depthwise convolution over q, k and v along the sequence (0: none; causal
    padding for causal models)."""
    segment_attention: bool = False
    """Per-protein attention in concatenated windows: a residue attends only within its own
    protein (the stretch ending at its ``<eos>``), causal state restarts after each ``<eos>``, and
    positions count from the protein's start, so each protein is computed as if served alone."""
    restart_positions: bool = False
    """Positions count from each protein's start in concatenated windows (as with
    ``segment_attention``) while attention still crosses proteins: family windows, where a residue
    can look at the same site in its homologs (residues of equal position have rotary distance 0)."""
    aligned_positions: bool = False
    """Family models: positions come from the family alignment (``position_ids``: each residue's
    column in the query's frame, from ``prepare --family``), so a residue and the same site in its
    homologs sit at rotary distance 0. Training passes them and so does scoring with homologs."""
    feature_map: FeatureMap = "favor+"
    """Softmax random features: FAVOR+, or FAVOR++ (optimal positive features, A from a running
    statistic of training batches)."""
    norm_eps: float = 1e-5
    """Epsilon of every LayerNorm."""
    lm_head: Literal["linear", "esm"] = "linear"
    """Output head: one linear layer, or ESM's (dense -> GELU -> LayerNorm, then the linear layer)."""
    token_dropout: bool = False
    """ESM-2's token dropout: ``<mask>`` embeddings are zeroed and each row's embeddings scaled by
    (1 - 0.12) / (1 - the row's fraction of ``<mask>`` among its real tokens), in training and
    inference alike. Only for models converted from ESM-2 (``protein-performer convert``)."""
    rotary_frequencies: Literal["float64", "float32"] = "float64"
    """Precision in which the rotary inverse frequencies are computed before they are stored in
    float32: float32 is ESM's (fair-esm and Hugging Face), which differs in the last bit for some
    frequencies; converted ESM models use it. (ESM scales q before rotating it and we scale the
    scores; rotation commutes with scaling, so that difference is rounding only.)"""

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        attentions, feature_maps = sorted({a for a, _ in KERNELS}), sorted({f for _, f in KERNELS})
        if self.attention not in attentions:
            raise ValueError(f"attention must be one of {attentions}, got {self.attention!r}")
        if self.position not in ("rotary", "learned"):
            raise ValueError(f"position must be 'rotary' or 'learned', got {self.position!r}")
        if self.position == "rotary" and (self.dim // self.heads) % 2:
            raise ValueError("rotary positions need an even head dimension (dim / heads)")
        if self.feature_map not in feature_maps:
            raise ValueError(f"feature_map must be one of {feature_maps}, got {self.feature_map!r}")
        if (self.attention, self.feature_map) not in KERNELS:
            allowed = sorted(a for a, f in KERNELS if f == self.feature_map)
            raise ValueError(f"feature_map {self.feature_map!r} needs attention {' or '.join(map(repr, allowed))}, "
                             f"not {self.attention!r}")
        if not 0 <= self.local_heads <= self.heads:
            raise ValueError(f"local_heads must be in [0, heads={self.heads}], got {self.local_heads}")
        if not 0 <= self.column_heads <= self.local_heads:
            raise ValueError(f"column_heads must be in [0, local_heads={self.local_heads}], got {self.column_heads}")
        if self.column_heads and (self.causal or self.segment_attention
                                  or not (self.restart_positions or self.aligned_positions)):
            raise ValueError("column_heads need a masked model (causal: false) whose positions count per member "
                             "(restart_positions or aligned_positions) and whose attention crosses members "
                             "(segment_attention: false)")
        if self.conv_width < 0 or self.conv_width == 1:
            raise ValueError(f"conv_width must be 0 (off) or >= 2, got {self.conv_width}")
        for name in ("depth", "heads", "ff_mult", "nb_features", "chunk_size", "max_position", "local_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lm_head not in ("linear", "esm"):
            raise ValueError(f"lm_head must be 'linear' or 'esm', got {self.lm_head!r}")
        if self.rotary_frequencies not in ("float64", "float32"):
            raise ValueError(f"rotary_frequencies must be 'float64' or 'float32', got {self.rotary_frequencies!r}")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be > 0, got {self.norm_eps}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PerformerOutput:
    """What :meth:`PerformerLM.forward` returns."""

    logits: Tensor
    """(B, L, vocab_size)."""
    hidden_states: dict[int, Tensor] = field(default_factory=dict)
    """Layer index -> (B, L, dim): 0 is the embedding output, ``depth`` the final (normed) output."""
    attentions: dict[int, Tensor] = field(default_factory=dict)
    """Block index (1-based) -> (B, H, R, L) attention weights, only when requested."""


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, hidden)
        self.proj = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class HeadTransform(nn.Module):
    """ESM's LM head before its (tied) output layer: dense -> GELU -> LayerNorm, (B, L, dim) -> same."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(F.gelu(self.dense(x)))


class Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + ff(norm(x))."""

    def __init__(self, config: PerformerConfig, generator: torch.Generator) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.attn = FavorAttention(config.dim, config.heads, AttentionOptions.from_config(config), generator=generator)
        self.norm2 = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.ff = FeedForward(config.dim, config.ff_mult * config.dim, config.dropout)

    def forward(
        self,
        x: Tensor,
        key_padding_mask: Tensor | None,
        rotary: tuple[Tensor, Tensor] | None,
        weight_rows: Tensor | None = None,
        need_weights: bool = False,
        segments: Segments | None = None,
        column_order: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        h, weights = self.attn(self.norm1(x), key_padding_mask=key_padding_mask, rotary=rotary,
                               weight_rows=weight_rows, need_weights=need_weights, segments=segments,
                               column_order=column_order)
        x = x + h
        return x + self.ff(self.norm2(x)), weights


def protein_positions(input_ids: Tensor, eos_idx: int) -> Tensor:
    """(B, L) ids -> (B, L) positions counted from each protein's start: 0 after every ``<eos>``
    (and at the window's start), the ``<eos>`` itself the last position of its protein."""
    B, L = input_ids.shape
    index = torch.arange(L, device=input_ids.device).expand(B, L)  # (B, L)
    after_eos = torch.zeros_like(input_ids, dtype=torch.bool)
    after_eos[:, 1:] = input_ids[:, :-1] == eos_idx
    start = torch.where(after_eos, index, torch.zeros_like(index)).cummax(dim=1).values  # (B, L)
    return index - start


def column_permutation(positions: Tensor, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Column order of a window for ``column_heads``: ((B, L) ``order``, (B, L) ``inverse``), where
    ``x.gather(1, order)`` sorts each row by position (stably: by place in the window within a
    position; padding last) and ``.gather(1, inverse)`` puts it back."""
    key = positions.to(torch.long)
    if key.dim() == 1:
        key = key.unsqueeze(0)
    if attention_mask is not None:
        key = torch.where(attention_mask, key, torch.iinfo(torch.long).max)
    order = torch.sort(key, dim=1, stable=True).indices  # (B, L)
    return order, order.argsort(dim=1)


def layer_index(i: int, depth: int, *, first: int = 0) -> int:
    """A layer number as a non-negative index in ``first..depth``; negatives count from the end
    (-1 = ``depth``, the last block), as ESM's ``repr_layers``.

    Hidden states are numbered from ``first=0`` (the embeddings), attention blocks from ``first=1``.
    """
    j = i + depth + 1 if i < 0 else i
    if not first <= j <= depth:
        raise ValueError(f"layer {i} out of range for a model with {depth} layers "
                         f"(valid: {first}..{depth}, or {first - depth - 1}..-1 from the end)")
    return j


class PerformerLM(nn.Module):
    """Token ids (B, L) -> logits (B, L, vocab); masked or causal by ``config.causal``."""

    def __init__(self, config: PerformerConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim, padding_idx=ALPHABET.pad_idx)
        self.rotary = RotaryEmbedding(config.dim // config.heads) if config.position == "rotary" else None
        if self.rotary is not None and config.rotary_frequencies == "float32":  # as ESM computes them
            head_dim = config.dim // config.heads
            self.rotary.inv_freq.copy_(1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)))
        self.pos_embed = nn.Embedding(config.max_position, config.dim) if config.position == "learned" else None
        self.dropout = nn.Dropout(config.dropout)
        generator = torch.Generator().manual_seed(config.feature_seed)
        self.blocks = nn.ModuleList(Block(config, generator) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.head_transform = HeadTransform(config.dim, config.norm_eps) if config.lm_head == "esm" else None
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=True)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2 style scaled init of residual projections
            if name.endswith(("attn.out.weight", "ff.proj.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * config.depth))
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def num_parameters(self) -> int:
        """Trainable numbers, a tied embedding counted once."""
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def redraw_features(self, generator: torch.Generator) -> None:
        """Draw new random projections for every attention layer (no effect for exact attention)."""
        for block in self.blocks:
            block.attn.redraw_features(generator)

    @torch.no_grad()
    def commit_feature_statistics(self) -> None:
        """After an optimizer step: fold the last batch's FAVOR++ statistics into the running ones."""
        for block in self.blocks:
            block.attn.commit_feature_statistics()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        return_layers: Sequence[int] = (),
        return_attention: bool | Sequence[int] = False,
        attention_rows: Tensor | None = None,
        position_ids: Tensor | None = None,
    ) -> PerformerOutput:
        """Run the model.

        Args:
            input_ids: (B, L) token ids.
            attention_mask: (B, L) bool, True at real tokens (padding is ignored as a key).
            return_layers: hidden states to return (0 = embeddings, ``depth`` = final; negatives
                count from the end, as ESM's ``repr_layers``).
            return_attention: True for every block, or a list of 1-based block indices; returns
                (B, H, R, L) weights (implicit FAVOR+ weights; never used by training).
            attention_rows: (R,) query positions for the returned weights (default all).
            position_ids: (B, L) long, each token's position (aligned family windows: its column
                in the query's frame); default: counted along the window, or from each protein's
                start with ``restart_positions`` / ``segment_attention``.
        """
        B, L = input_ids.shape
        want = {layer_index(i, self.config.depth) for i in return_layers}
        if return_attention is True:
            want_attn = set(range(1, self.config.depth + 1))
        else:
            want_attn = set(return_attention or ())
        x = self.embed(input_ids)  # (B, L, dim)
        if self.config.token_dropout:
            x = self._token_dropout(x, input_ids, attention_mask)
        segments = protein_segments(input_ids, ALPHABET.eos_idx) if self.config.segment_attention else None
        positions = torch.arange(L, device=x.device)  # (L,), or (B, L) restarting at every protein
        per_protein = segments is not None or self.config.restart_positions or position_ids is not None
        if position_ids is not None:
            if position_ids.shape != input_ids.shape:
                raise ValueError(f"position_ids {tuple(position_ids.shape)} must match input_ids {(B, L)}")
            positions = position_ids.to(device=x.device, dtype=torch.long)  # (B, L)
        elif per_protein:
            positions = protein_positions(input_ids, ALPHABET.eos_idx)  # (B, L)
        rotary = None
        if self.rotary is not None:
            span = L if position_ids is None else max(L, int(positions.max()) + 1)
            rotary = self.rotary(span, device=x.device, dtype=x.dtype)  # (span, head_dim) x 2
            if per_protein:
                rotary = tuple(t[positions].unsqueeze(1) for t in rotary)  # (B, 1, L, head_dim) x 2
        else:
            top = L if position_ids is None else int(positions.max()) + 1
            if top > self.config.max_position:
                raise ValueError(f"position {top - 1} exceeds max_position {self.config.max_position} "
                                 "of this learned-position model")
            x = x + self.pos_embed(positions)
        column_order = column_permutation(positions, attention_mask) if self.config.column_heads else None
        x = self.dropout(x)
        hidden: dict[int, Tensor] = {0: x} if 0 in want else {}
        attentions: dict[int, Tensor] = {}
        for i, block in enumerate(self.blocks, start=1):
            need = i in want_attn
            if self.config.checkpointing and self.training and torch.is_grad_enabled():
                x, w = checkpoint(block, x, attention_mask, rotary, None, False, segments, column_order,
                                  use_reentrant=False)
            else:
                x, w = block(x, attention_mask, rotary, attention_rows, need, segments, column_order)
            if need:
                attentions[i] = w
            if i in want and i != self.config.depth:
                hidden[i] = x
        x = self.norm(x)
        if self.config.depth in want:
            hidden[self.config.depth] = x
        if self.head_transform is not None:
            x = self.head_transform(x)
        return PerformerOutput(logits=self.lm_head(x), hidden_states=hidden, attentions=attentions)

    def init_state(self, batch_size: int = 1) -> DecodeState:
        """The empty recurrent state for :meth:`step`, for ``batch_size`` rows (causal models only):
        per layer, FAVOR+ sums and their stabiliser, or caches for exact and local heads."""
        if not self.config.causal:
            raise ValueError("this is a masked (non-causal) model: step-by-step decoding needs a causal one "
                             "(a checkpoint trained with --model.objective clm --model.config.causal true)")
        p = next(self.parameters())
        layers = [b.attn.init_state(batch_size, device=p.device, dtype=p.dtype) for b in self.blocks]
        zeros = torch.zeros(batch_size, dtype=torch.long, device=p.device)
        return DecodeState(layers, positions=zeros, segment_start=zeros.clone() if self.config.segment_attention else None)

    def step(self, tokens: Tensor, state: DecodeState) -> Tensor:
        """Feed one token per row, (B,) ids -> (B, vocab) logits of the next token; ``state`` is
        updated in place. Logits equal those of :meth:`forward` on the whole prefix, position by
        position, at O(1) cost per token for FAVOR+ (exact attention: a growing key/value cache)."""
        x = self.embed(tokens)  # (B, dim)
        if self.config.token_dropout:  # forward's scale depends on the row's count of <mask>: none here
            if bool((tokens == ALPHABET.mask_idx).any()):
                raise ValueError("token_dropout models cannot step over <mask> tokens (the forward's scale "
                                 "depends on the whole row); run forward() on the full sequence instead")
            x = x.masked_fill((tokens == ALPHABET.mask_idx).unsqueeze(-1), 0.0) * (1 - 0.15 * 0.8) / 1.0
        rotary = None
        if self.rotary is not None:  # RotaryEmbedding's formula at each row's position
            freqs = torch.outer(state.positions.to(torch.float32), self.rotary.inv_freq)  # (B, D / 2)
            emb = torch.cat([freqs, freqs], dim=-1)  # (B, D)
            rotary = (emb.cos().to(x.dtype), emb.sin().to(x.dtype))
        else:
            if int(state.positions.max()) >= self.config.max_position:
                raise ValueError(f"position {int(state.positions.max())} exceeds max_position "
                                 f"{self.config.max_position} of this learned-position model")
            x = x + self.pos_embed(state.positions)
        x = self.dropout(x)
        for block, layer in zip(self.blocks, state.layers):
            x = x + block.attn.step(block.norm1(x), layer, state.step, rotary=rotary,
                                    segment_start=state.segment_start)
            x = x + block.ff(block.norm2(x))
        x = self.norm(x)
        if self.head_transform is not None:
            x = self.head_transform(x)
        ended = tokens == ALPHABET.eos_idx  # (B,)
        state.step += 1
        if state.segment_start is not None:  # the next protein starts afresh
            for layer in state.layers:
                layer.reset_rows(ended)
            state.segment_start = torch.where(ended, state.step, state.segment_start)
            state.positions = torch.where(ended, 0, state.positions + 1)
        elif self.config.restart_positions:  # positions restart, the attention state carries on
            state.positions = torch.where(ended, 0, state.positions + 1)
        else:
            state.positions = state.positions + 1
        return self.lm_head(x)

    @staticmethod
    def _token_dropout(x: Tensor, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        """ESM-2's token dropout (``config.token_dropout``), in ESM's order of operations:
        (B, L, dim) embeddings -> same, ``<mask>`` rows zeroed, each row rescaled by
        (1 - 0.15 * 0.8) / (1 - its observed fraction of ``<mask>`` among real tokens)."""
        is_mask = input_ids == ALPHABET.mask_idx  # (B, L)
        x = x.masked_fill(is_mask.unsqueeze(-1), 0.0)
        real = attention_mask.sum(-1) if attention_mask is not None else input_ids.shape[1]  # (B,) or L
        observed = is_mask.sum(-1).to(x.dtype) / real  # (B,)
        return x * (1 - 0.15 * 0.8) / (1 - observed)[:, None, None]
