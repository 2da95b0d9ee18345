"""Attention masses between amino-acid types, counted head by head over analysed windows.

A *window* is what the model reads in one forward pass: one framed protein (``<cls> s <eos>``), or
a family window as ``prepare --family`` serves it in training (members drawn by sequence weight,
each framed, joined to a fixed number of tokens). For every (block, head) and every window this
module counts, with residue queries and residue keys only (specials excluded):

* ``mass[a]``: attention received by residues of type ``a``; ``total``: by any residue;
* ``pair_mass[a, b]``: attention from residues of type ``a`` to *other* residues of type ``b``;
* ``pair_expected[a, b]``: the same mass spread evenly over the other residues the head lets each
  query see: the whole window (global heads), tokens within ``local_window`` of it (local heads),
  the same within the window sorted by position (column heads, ``PerformerConfig.column_heads``),
  each inside its own protein with ``segment_attention`` and only earlier tokens when causal;
* ``pair_offset_expected[a, b]``: the mass expected if the head's attention depended on where a key
  sits and not on what it is: per window and head, the mean weight of each *offset class* (the key's
  position minus the query's, clipped to +-:data:`MAX_OFFSET`, and whether both are in one protein)
  times the number of visible (a, b) pairs in that class. Attention whose weight is a function of
  the offset class alone (a fixed offset, the same column of other members) scores exactly 0
  against it, however the residues are laid out, so the inputs' composition cannot leak through
  such a head into a "similarity" (which the even null lets through wherever composition varies
  with the offset: a column's neighbours).

Counts stay per window (:class:`AttentionCounts`), so a bootstrap can resample proteins, windows
or families; :mod:`protein_performer.analysis.similarity` turns them into 20 x 20 matrices. Query
rows are processed ``row_block`` at a time (the model's ``attention_rows``), so no L x L matrix
of a long window is held at once. ``query_rows`` analyses a random sample of each window's residue
queries (seeded by the window's index): every count is then a sum over the same sampled queries, so
observed and expected masses stay comparable; a long family window of 8,192 tokens costs a few
forward passes instead of dozens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Sequence, Sized

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from protein_performer.alphabet import ALPHABET, STANDARD_AMINO_ACIDS
from protein_performer.model import column_permutation, layer_index, protein_positions
from protein_performer.progress import progress_bar

N_AA = len(STANDARD_AMINO_ACIDS)
MAX_OFFSET = 32
"""Offsets (key position - query position) beyond +-MAX_OFFSET share one class per sign and membership."""
N_CLASSES = 2 * (2 * MAX_OFFSET + 1)
HeadKind = Literal["local", "column", "global"]


@dataclass(frozen=True)
class Window:
    """One analysed input: (L,) token ids, and for models with ``aligned_positions`` the (L,)
    alignment positions of its tokens; ``unit`` names what a bootstrap resamples (a protein, or a
    family whose windows are resampled together)."""

    tokens: np.ndarray
    positions: np.ndarray | None = None
    unit: str = ""


def protein_windows(sequences: Iterable[str]) -> Iterable[Window]:
    """Each protein framed ``<cls> s <eos>``, its own bootstrap unit."""
    for i, seq in enumerate(sequences):
        yield Window(ALPHABET.frame(seq), None, f"protein {i}")


def head_kinds(config) -> tuple[HeadKind, ...]:
    """What each head of a block sees: the first ``local_heads - column_heads`` heads are local, the
    next ``column_heads`` local in column order, the rest global (``attention/layer.py``)."""
    columns = getattr(config, "column_heads", 0)
    return tuple("global" if h >= config.local_heads else "column" if h >= config.local_heads - columns
                 else "local" for h in range(config.heads))


def block_indices(config, layers: Sequence[int] | None) -> tuple[int, ...]:
    """1-based attention blocks; negatives count from the end (-1 = last block)."""
    if not layers:
        return tuple(range(1, config.depth + 1))
    return tuple(dict.fromkeys(layer_index(i, config.depth, first=1) for i in layers))


@dataclass
class AttentionCounts:
    """Attention masses by (block, head) and amino-acid type, one row per analysed window."""

    layers: tuple[int, ...]
    """1-based blocks analysed."""
    kinds: tuple[HeadKind, ...]
    """(F,): what each analysed (block, head) sees, F = len(layers) * heads."""
    units: list[str]
    """(U,): the bootstrap unit of each window."""
    mass: np.ndarray
    """(U, F, 20): attention received by each standard amino acid from residue queries."""
    total: np.ndarray
    """(U, F): attention received by any residue."""
    counts: np.ndarray
    """(U, 20): residues of each type (as keys)."""
    pair_mass: np.ndarray
    """(U, F, 20, 20): attention from residues of type a to other residues of type b."""
    pair_expected: np.ndarray
    """(U, F, 20, 20): the same mass spread evenly over what each query sees."""
    pair_offset_expected: np.ndarray
    """(U, F, 20, 20): the mass expected from each head's mean weight per offset class."""

    @property
    def heads(self) -> int:
        return len(self.kinds) // len(self.layers)

    def unit_index(self) -> tuple[list[str], np.ndarray]:
        """(names of the G distinct units in first-seen order, (U,) index of each window's unit)."""
        names = list(dict.fromkeys(self.units))
        where = {u: i for i, u in enumerate(names)}
        return names, np.asarray([where[u] for u in self.units], dtype=np.int64)


def _types(tokens: Tensor) -> Tensor:
    """(L,) ids -> (L, 21): one-hot of the 20 standard amino acids, then 1 for every residue
    (X, B, ... count as residues a query sees, with no type); specials are all 0."""
    first = ALPHABET.standard_indices[0]
    residue = tokens >= ALPHABET.amino_acid_indices[0]  # (L,) any residue code, not a special
    standard = (tokens >= first) & (tokens < first + N_AA)
    out = torch.zeros(len(tokens), N_AA + 1, dtype=torch.float64)
    idx = standard.nonzero()[:, 0]
    out[idx, tokens[idx] - first] = 1.0
    out[:, N_AA] = residue.double()
    return out


def visible_composition(types: Tensor, window: int | None, *, causal: bool = False,
                        segments: Tensor | None = None, order: Tensor | None = None) -> Tensor:
    """(L, 21) types -> (L, 20): for each token, the frequency of each amino acid among the *other*
    residues it can attend to: all tokens (``window`` None) or those within ``window`` places; only
    earlier ones when ``causal``; only its own protein when ``segments`` ((L,) non-decreasing protein
    index) is given; places counted in ``order`` ((L,) permutation: the column heads' sorted window)."""
    L = types.shape[0]
    if order is not None:
        types = types[order]
    prefix = F.pad(types.cumsum(dim=0), (0, 0, 1, 0))  # (L + 1, 21): prefix[i] = tokens < i
    i = torch.arange(L)
    if segments is None:
        seg_lo, seg_hi = torch.zeros(L, dtype=torch.long), torch.full((L,), L)
    else:
        starts = torch.searchsorted(segments, segments, right=False)
        seg_lo, seg_hi = starts, torch.searchsorted(segments, segments, right=True)
    lo = seg_lo if window is None else torch.maximum(i - window, seg_lo)
    hi = torch.minimum(i + 1, seg_hi) if causal else (seg_hi if window is None
                                                      else torch.minimum(i + window + 1, seg_hi))
    seen = prefix[hi] - prefix[lo] - types  # (L, 21): what token i sees, without itself
    share = seen[:, :N_AA] / seen[:, N_AA:].clamp_min(1.0)
    if order is not None:
        share = share[order.argsort()]
    return share


@dataclass(frozen=True)
class _Layout:
    """Where each token sits, as the heads see it: (L,) position (the model's), protein index,
    rank in column order (None without column heads)."""

    positions: Tensor
    protein: Tensor
    rank: Tensor | None

    @classmethod
    def of(cls, ids: Tensor, position_ids: Tensor | None, columns: bool) -> _Layout:
        after_eos = torch.zeros_like(ids, dtype=torch.long)
        after_eos[1:] = (ids[:-1] == ALPHABET.eos_idx).long()
        positions = position_ids if position_ids is not None else protein_positions(ids[None], ALPHABET.eos_idx)[0]
        rank = column_permutation(positions[None])[1][0] if columns else None
        return cls(positions, after_eos.cumsum(0), rank)


def _seen_by_head(config, kinds: Sequence[HeadKind], types: Tensor, layout: _Layout) -> list[Tensor]:
    """(L, 20) visible composition for each head of a block (one computation per kind of head)."""
    segments = layout.protein if getattr(config, "segment_attention", False) else None
    order = None if layout.rank is None else layout.rank.argsort()
    seen: dict[HeadKind, Tensor] = {}
    for kind in set(kinds):
        window = None if kind == "global" else config.local_window
        seen[kind] = visible_composition(types, window, causal=config.causal, segments=segments,
                                         order=order if kind == "column" else None)
    return [seen[k] for k in kinds]


def _visible(config, kind: HeadKind, layout: _Layout, rows: Tensor, keys: Tensor) -> Tensor:
    """(R, n) whether a head of ``kind`` lets each query token in ``rows`` see each key token."""
    ok = torch.ones(len(rows), len(keys), dtype=torch.bool)
    if getattr(config, "segment_attention", False):
        ok &= layout.protein[rows][:, None] == layout.protein[keys][None, :]
    if config.causal:
        ok &= keys[None, :] <= rows[:, None]
    if kind == "local":
        ok &= (keys[None, :] - rows[:, None]).abs() <= config.local_window
    elif kind == "column":
        ok &= (layout.rank[keys][None, :] - layout.rank[rows][:, None]).abs() <= config.local_window
    return ok


def _offset_class(layout: _Layout, rows: Tensor, keys: Tensor) -> Tensor:
    """(R, n) offset class of each (query, key): clipped position offset, and one protein or two."""
    offset = (layout.positions[keys][None, :] - layout.positions[rows][:, None]).clamp(-MAX_OFFSET, MAX_OFFSET)
    same = layout.protein[rows][:, None] == layout.protein[keys][None, :]
    return offset + MAX_OFFSET + same.long() * (2 * MAX_OFFSET + 1)


@torch.no_grad()
def count_window(model, window: Window, blocks: Sequence[int], kinds: Sequence[HeadKind],
                 row_block: int = 256, queries: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Counts of one window: ((F, 20) mass, (F,) total, (20,) counts, (F, 20, 20) pair mass,
    (F, 20, 20) pair expected, (F, 20, 20) pair offset-expected), F = len(blocks) * heads.
    ``queries``: indices (among the window's residues, ascending) of the queries to count (default all);
    ``counts`` stays the composition of all residues."""
    device = next(model.parameters()).device
    config = model.config
    H = config.heads
    ids_cpu = torch.as_tensor(np.asarray(window.tokens, dtype=np.int64))  # (L,)
    types = _types(ids_cpu)  # (L, 21)
    res = types[:, N_AA].nonzero()[:, 0]  # (n,) residue token indices
    onehot = types[res, :N_AA]  # (n, 20)
    code = torch.where(onehot.sum(1) > 0, onehot.argmax(1), -1)  # (n,) 0..19, -1 for X, B, ...
    position_ids = None if window.positions is None else torch.as_tensor(np.asarray(window.positions, np.int64))
    layout = _Layout.of(ids_cpu, position_ids, "column" in kinds)
    seen = [s[res] for s in _seen_by_head(config, kinds[:H], types, layout)]  # H x (n, 20)
    ids = ids_cpu[None].to(device)
    mask = torch.ones_like(ids, dtype=torch.bool)
    kwargs = {} if position_ids is None else {"position_ids": position_ids[None].to(device)}
    n_feat, size = len(blocks) * H, N_AA * N_CLASSES * N_AA
    column_mass = torch.zeros(n_feat, len(res), dtype=torch.float64)  # (F, n) attention received
    pair_mass = torch.zeros(n_feat, N_AA, N_AA, dtype=torch.float64)
    pair_expected = torch.zeros_like(pair_mass)
    class_mass = torch.zeros(n_feat, N_CLASSES, dtype=torch.float64)  # (F, K) standard pairs' mass per class
    pairs_by_class = {kind: torch.zeros(size, dtype=torch.float64) for kind in set(kinds)}  # (20 K 20,) visible
    picked = torch.arange(len(res)) if queries is None else torch.as_tensor(np.asarray(queries, dtype=np.int64))
    for start in range(0, len(picked), row_block):
        j = picked[start : start + row_block]  # (R,) residue indices of the queries
        rows = res[j]
        out = model(ids, mask, return_attention=list(blocks), attention_rows=rows.to(device), **kwargs)
        row_types = onehot[j]  # (R, 20)
        klass = _offset_class(layout, rows, res)  # (R, n)
        both = (code[j][:, None] >= 0) & (code[None, :] >= 0)  # (R, n) standard query and key
        both[torch.arange(len(j)), j] = False  # not itself
        flat = (code[j][:, None].clamp_min(0) * N_CLASSES + klass) * N_AA + code[None, :].clamp_min(0)  # (R, n)
        for kind in pairs_by_class:
            pick = both & _visible(config, kind, layout, rows, res)
            pairs_by_class[kind] += torch.bincount(flat[pick], minlength=size).double()
        for k, b in enumerate(blocks):
            w = out.attentions[b][0][:, :, res.to(device)].double().cpu()  # (H, R, n): residue keys only
            column_mass[k * H : (k + 1) * H] += w.sum(dim=1)
            w[:, torch.arange(len(j)), j] = 0.0  # no self-attention in pairs
            pair_mass[k * H : (k + 1) * H] += row_types.T @ w @ onehot  # (H, 20, 20)
            sent = w.sum(dim=-1)  # (H, R) mass each query sends to other residues
            expected = torch.stack([s[j] for s in seen])  # (H, R, 20)
            pair_expected[k * H : (k + 1) * H] += row_types.T @ (sent.unsqueeze(-1) * expected)
            pair_weights, pair_class = w[:, both], klass[both]  # (H, M), (M,): standard pairs only
            for h in range(H):
                class_mass[k * H + h] += torch.bincount(pair_class, weights=pair_weights[h], minlength=N_CLASSES)
    offset_expected = torch.zeros_like(pair_mass)
    for f, kind in enumerate(kinds):
        pairs = pairs_by_class[kind].view(N_AA, N_CLASSES, N_AA)  # (20, K, 20) visible pairs by class
        mean = class_mass[f] / pairs.sum(dim=(0, 2)).clamp_min(1.0)  # (K,) mean weight of a pair in each class
        offset_expected[f] = torch.einsum("k,akb->ab", mean, pairs)
    mass = (column_mass @ onehot).numpy()
    return (mass, column_mass.sum(dim=1).numpy(), onehot.sum(dim=0).numpy(), pair_mass.numpy(),
            pair_expected.numpy(), offset_expected.numpy())


def count_attention(model, windows: Iterable[Window], *, layers: Sequence[int] | None = None,
                    row_block: int = 256, query_rows: int | None = None, seed: int = 0,
                    progress: bool | None = False, desc: str = "similarity", unit: str = "windows") -> AttentionCounts:
    """:class:`AttentionCounts` of ``model`` over ``windows``. ``query_rows``: count this many residue
    queries of each window, drawn at random with seed ``(seed, window index)`` (default: all).
    ``progress``: a bar on stderr (None: only on a terminal; :mod:`protein_performer.progress`)."""
    if row_block < 1 or (query_rows is not None and query_rows < 1):
        raise ValueError(f"row_block and query_rows must be >= 1, got {row_block} and {query_rows}")
    model.eval()
    config = model.config
    blocks = block_indices(config, layers)
    kinds = head_kinds(config) * len(blocks)
    parts, names = [], []
    n_given = len(windows) if isinstance(windows, Sized) else None
    for i, window in enumerate(progress_bar(windows, total=n_given, desc=desc, unit=unit, enabled=progress)):
        queries = None
        n_res = int((np.asarray(window.tokens) >= ALPHABET.amino_acid_indices[0]).sum())
        if query_rows is not None and query_rows < n_res:
            rng = np.random.default_rng(np.random.SeedSequence([seed, i]))
            queries = np.sort(rng.choice(n_res, size=query_rows, replace=False))
        parts.append(count_window(model, window, blocks, kinds, row_block, queries))
        names.append(window.unit)
    if not parts:
        raise ValueError("no proteins to analyse")
    mass, total, counts, pair_mass, pair_expected, offset_expected = (np.stack(p) for p in zip(*parts))
    return AttentionCounts(blocks, kinds, names, mass, total, counts, pair_mass, pair_expected, offset_expected)
