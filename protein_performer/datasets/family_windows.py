"""Windows of one protein family (``prepare --family``): members drawn by sequence weight, each framed
``<cls> seq <eos>``, joined to ``window_tokens``. ``score-variants --homologs`` draws its contexts
with the same :func:`weighted_order` and :func:`framed_positions`."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from torch.utils.data import Dataset

from protein_performer.alphabet import ALPHABET
from protein_performer.corpus.shards import Shard
from protein_performer.datasets.samples import (
    FAMILY_EVAL_STREAM,
    FAMILY_ORDER_STREAM,
    FAMILY_STREAM,
    Sample,
    seeded_rng,
)


def weighted_order(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random order of all members, drawn without replacement with probability proportional to
    ``weights`` (Gumbel top-k: sort ``log w + Gumbel`` descending); members of weight 0 come last."""
    keys = np.log(np.maximum(weights, 1e-300)) + rng.gumbel(size=len(weights))
    return np.argsort(-keys, kind="stable")


def framed_positions(residue_positions: np.ndarray) -> np.ndarray:
    """Positions of ``<cls> residues <eos>`` from the residues' (aligned) positions: ``<cls>`` one
    before the first residue (at least 0), ``<eos>`` one after the last. (n + 2,) int64."""
    p = np.asarray(residue_positions, dtype=np.int64)
    first, last = (int(p[0]), int(p[-1])) if len(p) else (1, -1)
    return np.concatenate([[max(first - 1, 0)], p, [last + 1]])


def family_window(proteins: Sequence[np.ndarray], order: np.ndarray, window_tokens: int,
                  positions: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Members in ``order``, each framed ``<cls> residues <eos>``, joined until ``window_tokens``;
    the last member is cut at the window's end: ((n,) ``uint8`` tokens, n <= window_tokens, and with
    ``positions`` (each member's residue positions) the (n,) positions of the tokens, else None)."""
    parts, where, used = [], [], 0
    for k in order:
        framed = ALPHABET.frame(proteins[int(k)])
        parts.append(framed[: window_tokens - used])
        if positions is not None:
            where.append(framed_positions(positions[int(k)])[: window_tokens - used])
        used += len(parts[-1])
        if used >= window_tokens:
            break
    if not parts:
        return np.zeros(0, dtype=np.uint8), None if positions is None else np.zeros(0, dtype=np.int64)
    return np.concatenate(parts), None if positions is None else np.concatenate(where)


class FamilyWindowDataset(Dataset):
    """Windows of protein families: members drawn by sequence weight, shuffled, each framed
    ``<cls> ... <eos>``, joined to ``window_tokens`` (the last member cut at the end).

    Attention crosses members, so a residue can look at the same site in its homologs; models
    for these windows count positions from each member's start (``restart_positions``). A family
    of ``t`` framed tokens in the split serves ``ceil(t / window_tokens)`` windows an epoch, so an
    epoch reads about as many tokens as the split holds. A dataset of several homolog sets
    (``prepare --family A B ...``, :attr:`Shard.families`) keeps every window within one set, and a
    set smaller than ``window_tokens`` fills a shorter window: the model must read the family from
    the window, not from its weights. Which set window ``index`` holds is fixed by ``seed`` (a
    seeded shuffle of the windows of every set, so a ``limit`` samples sets evenly); the members
    are a function of ``(seed, epoch, index)`` (training) or of ``(seed, index)`` (evaluation:
    the same windows every time). Members without weights (a plain corpus) weigh 1.
    """

    def __init__(self, shard: Shard, window_tokens: int = 8192, *, seed: int = 0, epoch: int = 0,
                 random: bool = True, limit: int | None = None) -> None:
        if window_tokens < 3:
            raise ValueError(f"window_tokens must be >= 3 (<cls>, a residue, <eos>), got {window_tokens}")
        if len(shard) == 0:
            raise ValueError(f"{shard.path}: split holds no members; prepare the family with more homologs or "
                             "smaller --valid-fraction / --test-fraction")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        self.shard, self.window_tokens, self.seed, self.epoch = shard, window_tokens, seed, epoch
        self.random, self.limit = random, limit
        weights = shard.weights
        self.weights = np.ones(len(shard)) if weights is None else weights
        if not self.weights.sum() > 0:
            raise ValueError(f"{shard.path}: every member weighs 0; prepare the family again")
        families = shard.families
        if families is None:
            families = np.zeros(len(shard), dtype=np.int64)
        framed = shard.lengths + 2
        self.members = [np.flatnonzero(families == f) for f in np.unique(families)]
        self.members = [m for m in self.members if self.weights[m].sum() > 0]
        per_family = [max(1, math.ceil(int(framed[m].sum()) / window_tokens)) for m in self.members]
        self.window_family = np.repeat(np.arange(len(self.members)), per_family)  # (num_windows,)
        self.window_family = seeded_rng(seed, FAMILY_ORDER_STREAM).permutation(self.window_family)
        self.num_windows = len(self.window_family)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_windows if self.limit is None else min(self.num_windows, self.limit)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        keys = (self.epoch, index) if self.random else (index,)
        rng = seeded_rng(self.seed, FAMILY_STREAM if self.random else FAMILY_EVAL_STREAM, *keys)
        members = self.members[int(self.window_family[index])]
        order = members[weighted_order(self.weights[members], rng)]
        positions = _LazyPositions(self.shard) if self.shard.positions is not None else None
        tokens, where = family_window(_LazyProteins(self.shard), order, self.window_tokens, positions)
        return Sample(tokens, index, self.epoch, where)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["shard"] = Shard(self.shard.path)
        return state


class _LazyProteins:
    """``shard.protein(i)`` by index, read only for the members a window uses."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard

    def __getitem__(self, i: int) -> np.ndarray:
        return self.shard.protein(i)


class _LazyPositions(_LazyProteins):
    """``shard.member_positions(i)`` by index."""

    def __getitem__(self, i: int) -> np.ndarray:
        return self.shard.member_positions(i)
