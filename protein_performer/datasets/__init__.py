"""Datasets, samplers and collators that turn prepared shards into training batches (torch + numpy).

Three ways to serve a split (:class:`~protein_performer.corpus.shards.Shard`):

* :class:`ConcatWindowDataset` — the Performer paper's setting: proteins joined by ``<eos>`` into
  one stream, cut into non-overlapping windows of ``max_length`` tokens. Each epoch starts the cut
  at a fresh random offset, so window boundaries move between epochs.
* :class:`ProteinDataset` — one protein per sample, framed ``<cls> seq <eos>`` by
  :meth:`~protein_performer.alphabet.Alphabet.frame`, long proteins cropped; batch it with
  :class:`TokenBudgetBatchSampler` (ESM-style: sort by length, fill a token budget, the one
  batcher :func:`token_budget_batches` that ``embed`` uses too).
* :class:`FamilyWindowDataset` — one protein family (``prepare --family``): members drawn by
  sequence weight, each framed ``<cls> seq <eos>``, joined into windows of ``max_length``.

Collators (:class:`MLMCollator`, :class:`CLMCollator`) pad samples and return the batch contract::

    input_ids       LongTensor (B, L)
    labels          LongTensor (B, L), -100 where there is no loss
    attention_mask  BoolTensor (B, L), True at real (non-pad) tokens

:func:`collate_proteins` returns the same padding without ``labels``: the input of ``embed``,
``similarity`` and ``attention``.

Randomness (window offsets, crops, masks) is drawn from ``np.random.SeedSequence([seed, epoch,
index])``, so it depends on neither the number of workers nor the rank that serves a sample.
The epoch reaches worker processes through :meth:`set_epoch`, which :class:`EpochSampler` calls
when Lightning calls the sampler's ``set_epoch`` (before the epoch's workers start).
"""

from __future__ import annotations

import math
from typing import Iterator, Literal, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, Dataset, DistributedSampler, Sampler

from protein_performer.alphabet import ALPHABET, SPECIAL_TOKENS
from protein_performer.corpus.shards import Shard

IGNORE_INDEX = -100
SCORE_MASK_PROB = 0.15
"""Share of residues hidden when masked models are validated or scored (whatever the training share)."""
OBJECTIVES = ("mlm", "clm")

FIRST_RESIDUE = len(SPECIAL_TOKENS)  # ids below this are special tokens, never masked
STANDARD_LOW, STANDARD_HIGH = ALPHABET.standard_indices[0], ALPHABET.standard_indices[-1] + 1

BatchOrder = Literal["shortest_first", "longest_first"]
Oversize = Literal["error", "alone"]

# Stream tags keep the random streams of different uses apart for the same (seed, epoch, index).
_OFFSET_STREAM, _CROP_STREAM, _MASK_STREAM, _EVAL_MASK_STREAM = 1, 2, 3, 4
_FAMILY_STREAM, _FAMILY_EVAL_STREAM = 5, 6


def check_objective(objective: str) -> str:
    """``objective`` if it is one of :data:`OBJECTIVES`; else the one error every caller raises."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    return objective


class Sample(NamedTuple):
    """One served sample: its tokens (1-D ``uint8``), its index in the dataset, the epoch, and
    optionally each token's position (aligned family windows; else the model counts them)."""

    tokens: np.ndarray
    index: int
    epoch: int = 0
    positions: np.ndarray | None = None


def residue_targets_only(labels: torch.Tensor) -> torch.Tensor:
    """Scoring targets: drop special-token targets (the ``<eos>`` after a protein), keep residues."""
    return labels.masked_fill((labels != IGNORE_INDEX) & (labels < FIRST_RESIDUE), IGNORE_INDEX)


def _rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, *keys]))


# --------------------------------------------------------------------------- concatenated stream


class _Stream:
    """The virtual stream ``p0 <eos> p1 <eos> ... p(n-1) <eos>`` over residue tokens and offsets.

    Nothing is copied: a slice is one contiguous read of ``tokens`` with ``<eos>`` inserted.
    """

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        self.tokens = tokens
        n = len(offsets) - 1
        # stream position of the <eos> after protein i: its residues end at offsets[i + 1],
        # shifted right by the i separators before it
        self.eos_positions = offsets[1:] + np.arange(n, dtype=np.int64)  # (n,)
        self.length = int(offsets[-1]) + n

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Stream tokens ``[start, stop)`` as ``uint8``, ``0 <= start <= stop <= length``."""
        lo = int(np.searchsorted(self.eos_positions, start, side="left"))  # separators before start
        hi = int(np.searchsorted(self.eos_positions, stop, side="left"))  # separators before stop
        out = np.empty(stop - start, dtype=np.uint8)
        is_eos = np.zeros(stop - start, dtype=bool)
        is_eos[self.eos_positions[lo:hi] - start] = True
        out[is_eos] = ALPHABET.eos_idx
        residue_start = start - lo  # residues before `start` = positions minus separators
        out[~is_eos] = self.tokens[residue_start : residue_start + (stop - start) - (hi - lo)]
        return out


class ConcatWindowDataset(Dataset):
    """Non-overlapping windows of ``max_length`` tokens over the ``<eos>``-joined stream of a shard.

    The stream is read as a circle: an epoch's windows start at ``offset`` and wrap around the
    end, so they cover the whole stream exactly once; every window is full except the last,
    which is padded with ``<pad>``. ``offset`` is drawn from ``(seed, epoch)`` when
    ``random_offset`` is True (training) and is 0 otherwise (evaluation, scoring).

    Args:
        shard: the split to serve.
        max_length: tokens per window (8192 by default; 16384 .. 65536 work the same way).
        seed: seed of the per-epoch offsets.
        epoch: initial epoch; change it with :meth:`set_epoch`.
        random_offset: draw a fresh start offset each epoch; False: offset 0.
        limit: serve at most this many windows per epoch (quick runs); None: all.
    """

    def __init__(
        self,
        shard: Shard,
        max_length: int = 8192,
        *,
        seed: int = 0,
        epoch: int = 0,
        random_offset: bool = True,
        limit: int | None = None,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        self.shard, self.max_length, self.seed = shard, max_length, seed
        self.random_offset, self.limit = random_offset, limit
        self._stream = _Stream(shard.tokens, shard.offsets)
        if self._stream.length == 0:
            raise ValueError(f"{shard.path}: split holds no proteins; prepare it again with more data")
        self.num_windows = math.ceil(self._stream.length / max_length)
        self.set_epoch(epoch)

    @property
    def stream_length(self) -> int:
        """Tokens in the stream: residues plus one ``<eos>`` per protein."""
        return self._stream.length

    def set_epoch(self, epoch: int) -> None:
        """Move window boundaries: the offset of ``epoch`` is a function of ``(seed, epoch)``."""
        self.epoch = epoch
        if self.random_offset:
            self.offset = int(_rng(self.seed, _OFFSET_STREAM, epoch).integers(self._stream.length))
        else:
            self.offset = 0

    def __len__(self) -> int:
        return self.num_windows if self.limit is None else min(self.num_windows, self.limit)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        n, size = self._stream.length, self.max_length
        start = index * size  # position in the rotated stream
        stop = min(start + size, n)
        a, b = (self.offset + start) % n, (self.offset + stop) % n  # positions in the stream
        if a < b:
            parts = [self._stream.slice(a, b)]
        else:  # wraps past the end of the stream
            parts = [self._stream.slice(a, n), self._stream.slice(0, b)]
        window = np.full(size, ALPHABET.pad_idx, dtype=np.uint8)  # (max_length,)
        filled = np.concatenate(parts) if len(parts) > 1 else parts[0]
        window[: len(filled)] = filled
        return Sample(window, index, self.epoch)

    def __getstate__(self) -> dict:
        # Ship the shard's path to worker processes, not its memory map (reopened there).
        state = self.__dict__.copy()
        state["shard"] = Shard(self.shard.path)
        state["_stream"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._stream = _Stream(self.shard.tokens, self.shard.offsets)


def windows_from_sequences(token_arrays: Sequence[np.ndarray], max_length: int) -> list[np.ndarray]:
    """Join proteins with ``<eos>`` (one after each) and cut non-overlapping windows from offset 0.

    The windows equal those of ``ConcatWindowDataset(..., random_offset=False)`` over the same
    proteins, except that the last one is returned unpadded (the collators pad).
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if not token_arrays:
        return []
    lengths = np.array([len(a) for a in token_arrays], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])  # (n + 1,)
    stream = _Stream(np.concatenate([np.asarray(a, dtype=np.uint8) for a in token_arrays]), offsets)
    return [stream.slice(s, min(s + max_length, stream.length)) for s in range(0, stream.length, max_length)]


# --------------------------------------------------------------------------- one protein per sample


class ProteinDataset(Dataset):
    """One protein per sample, served as ``<cls> seq <eos>`` (at most ``max_length`` tokens).

    Proteins longer than ``max_length - 2`` residues are cropped: a random window drawn from
    ``(seed, epoch, index)`` with ``crop="random"`` (training), the first residues with
    ``crop="start"`` (evaluation). ``<cls>`` and ``<eos>`` are always added. Padding is the
    collator's job. ``limit`` serves only the first proteins (quick runs); None: all.
    """

    def __init__(
        self,
        shard: Shard,
        max_length: int = 1024,
        *,
        crop: str = "random",
        seed: int = 0,
        epoch: int = 0,
        limit: int | None = None,
    ) -> None:
        if crop not in ("random", "start"):
            raise ValueError(f"crop must be 'random' or 'start', got {crop!r}")
        if max_length < 3:
            raise ValueError(f"max_length must be >= 3 (<cls>, a residue, <eos>), got {max_length}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        self.shard, self.max_length, self.crop, self.seed, self.epoch = shard, max_length, crop, seed, epoch
        self.limit = limit

    def set_epoch(self, epoch: int) -> None:
        """Random crops of ``epoch`` are a function of ``(seed, epoch, index)``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.shard) if self.limit is None else min(len(self.shard), self.limit)

    @property
    def served_lengths(self) -> np.ndarray:
        """Tokens served per protein (residues + 2, capped at ``max_length``): for token budgets."""
        return np.minimum(self.shard.lengths[: len(self)] + 2, self.max_length)

    def __getitem__(self, index: int) -> Sample:
        residues = self.shard.protein(index)
        keep = self.max_length - 2
        if len(residues) > keep:
            start = 0
            if self.crop == "random":
                start = int(_rng(self.seed, _CROP_STREAM, self.epoch, index).integers(len(residues) - keep + 1))
            residues = residues[start : start + keep]
        return Sample(ALPHABET.frame(residues), index, self.epoch)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["shard"] = Shard(self.shard.path)
        return state


# --------------------------------------------------------------------------- family windows


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


def family_window(proteins: Sequence[np.ndarray], order: np.ndarray, max_length: int,
                  positions: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Members in ``order``, each framed ``<cls> residues <eos>``, joined until ``max_length`` tokens;
    the last member is cut at the window's end: ((n,) ``uint8`` tokens, n <= max_length, and with
    ``positions`` (each member's residue positions) the (n,) positions of the tokens, else None)."""
    parts, where, used = [], [], 0
    for k in order:
        framed = ALPHABET.frame(proteins[int(k)])
        parts.append(framed[: max_length - used])
        if positions is not None:
            where.append(framed_positions(positions[int(k)])[: max_length - used])
        used += len(parts[-1])
        if used >= max_length:
            break
    if not parts:
        return np.zeros(0, dtype=np.uint8), None if positions is None else np.zeros(0, dtype=np.int64)
    return np.concatenate(parts), None if positions is None else np.concatenate(where)


class FamilyWindowDataset(Dataset):
    """Windows of one protein family: members drawn by sequence weight, shuffled, each framed
    ``<cls> ... <eos>``, joined to ``max_length`` tokens (the last member cut at the end).

    Attention crosses members, so a residue can look at the same site in its homologs; models
    for these windows count positions from each member's start (``restart_positions``). An epoch
    serves ``ceil(framed tokens of the split / max_length)`` windows, so it reads about as many
    tokens as the split holds; window ``index`` of ``epoch`` is a function of ``(seed, epoch,
    index)`` (training) or of ``(seed, index)`` (evaluation: the same windows every time).
    Members without weights (a plain corpus) weigh 1.
    """

    def __init__(self, shard: Shard, max_length: int = 8192, *, seed: int = 0, epoch: int = 0,
                 random: bool = True, limit: int | None = None) -> None:
        if max_length < 3:
            raise ValueError(f"max_length must be >= 3 (<cls>, a residue, <eos>), got {max_length}")
        if len(shard) == 0:
            raise ValueError(f"{shard.path}: split holds no members; prepare the family with more homologs or "
                             "smaller --valid-fraction / --test-fraction")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        self.shard, self.max_length, self.seed, self.epoch = shard, max_length, seed, epoch
        self.random, self.limit = random, limit
        weights = shard.weights
        self.weights = np.ones(len(shard)) if weights is None else weights
        if not self.weights.sum() > 0:
            raise ValueError(f"{shard.path}: every member weighs 0; prepare the family again")
        self.num_windows = max(1, math.ceil(int((shard.lengths + 2).sum()) / max_length))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_windows if self.limit is None else min(self.num_windows, self.limit)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        keys = (self.epoch, index) if self.random else (index,)
        rng = _rng(self.seed, _FAMILY_STREAM if self.random else _FAMILY_EVAL_STREAM, *keys)
        order = weighted_order(self.weights, rng)
        positions = _LazyPositions(self.shard) if self.shard.positions is not None else None
        tokens, where = family_window(_LazyProteins(self.shard), order, self.max_length, positions)
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


# --------------------------------------------------------------------------- samplers


class EpochSampler(DistributedSampler):
    """A :class:`DistributedSampler` whose ``set_epoch`` also moves the dataset to that epoch.

    Lightning calls ``set_epoch`` on the train sampler before each epoch's workers start, and
    leaves a ``DistributedSampler`` in place instead of injecting its own; so one class serves
    one process (``num_replicas=1, rank=0``) and DDP alike. Ranks get disjoint index sets.
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        set_dataset_epoch = getattr(self.dataset, "set_epoch", None)
        if callable(set_dataset_epoch):
            set_dataset_epoch(epoch)

    def resume(self, epoch: int, done: int) -> None:
        """Serve epoch ``epoch`` without its first ``done`` indices, once: a run resumed mid-epoch
        continues where its checkpoint left off."""
        self.set_epoch(epoch)
        self._skip = done

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())[self._skip :]
        self._skip = 0
        return iter(indices)


def token_budget_batches(
    lengths: Sequence[int] | np.ndarray,
    max_tokens: int,
    *,
    order: BatchOrder = "shortest_first",
    oversize: Oversize = "error",
) -> list[list[int]]:
    """Sort indices by length and fill batches while ``longest * count <= max_tokens`` (padded size).

    ``order``: batches of the shortest samples first (training) or of the longest first
    (``embed``: the largest batches run while memory is fresh). Ties keep input order.
    ``oversize``: a sample longer than ``max_tokens`` raises (``"error"``) or is batched alone
    (``"alone"``).
    """
    if order not in ("shortest_first", "longest_first") or oversize not in ("error", "alone"):
        raise ValueError(f"order {order!r} / oversize {oversize!r}: expected shortest_first|longest_first, error|alone")
    lengths = np.asarray(lengths, dtype=np.int64)
    if oversize == "error" and lengths.size and int(lengths.max()) > max_tokens:
        raise ValueError(
            f"a sample of {int(lengths.max())} tokens exceeds the token budget {max_tokens}; "
            "raise the budget (token_budget) or lower max_length"
        )
    ranked = np.argsort(lengths if order == "shortest_first" else -lengths, kind="stable")
    batches: list[list[int]] = []
    batch: list[int] = []
    longest = 0
    for i in ranked:
        longest = max(longest, int(lengths[i]))
        if batch and longest * (len(batch) + 1) > max_tokens:
            batches.append(batch)
            batch, longest = [], int(lengths[i])
        batch.append(int(i))
    if batch:
        batches.append(batch)
    return batches


class TokenBudgetBatchSampler(BatchSampler):
    """Batches from :func:`token_budget_batches`, order shuffled per epoch, split across ranks.

    The batches are built over the whole dataset; ``sampler`` is only read for the rank layout
    (``num_replicas``/``rank`` of a :class:`DistributedSampler`, else one process) and receives
    ``set_epoch`` from Lightning (an :class:`EpochSampler` forwards it to the dataset). Lightning
    re-creates this sampler with its own ``DistributedSampler`` under DDP; that one is wrapped in
    an :class:`EpochSampler` with the same layout. Every rank gets the same number of batches
    (the first batches repeat to even out).
    """

    def __init__(
        self, sampler: Sampler, lengths: np.ndarray, max_tokens: int, *, shuffle: bool = True, seed: int = 0
    ) -> None:
        if isinstance(sampler, DistributedSampler) and not isinstance(sampler, EpochSampler):
            sampler = EpochSampler(
                sampler.dataset, sampler.num_replicas, sampler.rank, shuffle=sampler.shuffle, seed=sampler.seed
            )
        self.sampler = sampler
        self.num_replicas = sampler.num_replicas if isinstance(sampler, DistributedSampler) else 1
        self.rank = sampler.rank if isinstance(sampler, DistributedSampler) else 0
        self.lengths, self.max_tokens, self.shuffle, self.seed = lengths, max_tokens, shuffle, seed
        self.batch_size, self.drop_last = None, False  # BatchSampler attributes; batches vary in size
        self.batches = token_budget_batches(lengths, max_tokens)
        self._skip = 0

    @property
    def epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", 0))

    def __len__(self) -> int:
        return math.ceil(len(self.batches) / self.num_replicas)

    def resume(self, epoch: int, done: int) -> None:
        """Serve epoch ``epoch`` without its first ``done`` batches, once (see :meth:`EpochSampler.resume`)."""
        set_epoch = getattr(self.sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        self._skip = done

    def __iter__(self) -> Iterator[list[int]]:
        order = np.arange(len(self.batches))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.batches))
        total = len(self) * self.num_replicas
        order = np.resize(order, total)  # repeats the first batches so all ranks get len(self)
        skip, self._skip = self._skip, 0
        for i in order[self.rank :: self.num_replicas][skip:]:
            yield self.batches[i]


# --------------------------------------------------------------------------- collators


def _unpack(samples: Sequence[Sample | np.ndarray]) -> list[Sample]:
    """Plain arrays become samples indexed by their position in ``samples``."""
    return [s if isinstance(s, Sample) else Sample(np.asarray(s), i, 0) for i, s in enumerate(samples)]


def _pad(samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token arrays with ``<pad>`` to the longest: ``input_ids`` (B, L) int64 and
    ``attention_mask`` (B, L) bool, True at real (non-pad) tokens."""
    width = max(len(s.tokens) for s in samples)
    out = np.full((len(samples), width), ALPHABET.pad_idx, dtype=np.int64)  # (B, L)
    for row, s in zip(out, samples):
        row[: len(s.tokens)] = s.tokens
    return out, out != ALPHABET.pad_idx


def _positions(samples: Sequence[Sample], width: int) -> dict[str, torch.Tensor]:
    """``{"position_ids": (B, L) long}`` when every sample carries positions (padding at 0), else {}."""
    if not samples or any(s.positions is None for s in samples):
        if any(s.positions is not None for s in samples):
            raise ValueError("a batch mixes samples with and without positions")
        return {}
    out = np.zeros((len(samples), width), dtype=np.int64)  # (B, L)
    for row, s in zip(out, samples):
        row[: len(s.positions)] = s.positions
    return {"position_ids": torch.from_numpy(out)}


def collate_proteins(proteins: Sequence[Sample | np.ndarray]) -> dict[str, torch.Tensor]:
    """Framed proteins (:meth:`~protein_performer.alphabet.Alphabet.frame`) as one model input.

    Returns ``input_ids`` (B, L) long, right-padded with ``<pad>``, and ``attention_mask`` (B, L)
    bool, True at real tokens: the batch contract without ``labels``, which :class:`MLMCollator`
    and :class:`CLMCollator` add to the same padding. ``embed``, ``similarity`` and ``attention``
    feed the model through it.
    """
    input_ids, attention_mask = _pad(_unpack(proteins))  # (B, L) x 2
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}


class MLMCollator:
    """Masked-language-model batches (BERT/ESM recipe).

    Selects each residue (never ``<pad> <mask> <cls> <eos> <unk>``) with probability
    ``mask_prob`` (at least one per sample that has residues); of those, ``mask_token_prob`` become
    ``<mask>``, ``random_token_prob`` a uniformly random standard amino acid, the rest stay.
    ``labels`` hold the original token at selected positions, -100 elsewhere.

    Randomness per sample: ``deterministic=True`` (validation, test, scoring) draws from
    ``(seed, index)`` only, so a sample gets the same mask in every run and epoch; otherwise from
    ``(seed, epoch, index)``, or fresh entropy when ``seed`` is None. The scoring setting is
    ``mask_token_prob=1.0, random_token_prob=0.0, deterministic=True``.
    """

    def __init__(
        self,
        mask_prob: float = 0.15,
        mask_token_prob: float = 0.8,
        random_token_prob: float = 0.1,
        seed: int | None = None,
        deterministic: bool = False,
    ) -> None:
        for name, p in (("mask_prob", mask_prob), ("mask_token_prob", mask_token_prob),
                        ("random_token_prob", random_token_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if mask_token_prob + random_token_prob > 1.0 + 1e-9:
            raise ValueError(
                f"mask_token_prob + random_token_prob = {mask_token_prob + random_token_prob} > 1; "
                "they are shares of the selected positions"
            )
        if deterministic and seed is None:
            raise ValueError("deterministic masking needs a seed (MLMCollator(seed=..., deterministic=True))")
        self.mask_prob, self.mask_token_prob, self.random_token_prob = mask_prob, mask_token_prob, random_token_prob
        self.seed, self.deterministic = seed, deterministic

    def _generator(self, sample: Sample) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        if self.deterministic:
            return _rng(self.seed, _EVAL_MASK_STREAM, sample.index)
        return _rng(self.seed, _MASK_STREAM, sample.epoch, sample.index)

    def __call__(self, samples: Sequence[Sample | np.ndarray]) -> dict[str, torch.Tensor]:
        samples = _unpack(samples)
        input_ids, attention_mask = _pad(samples)  # (B, L) x 2; masking never touches padding
        labels = np.full_like(input_ids, IGNORE_INDEX)  # (B, L)
        for b, sample in enumerate(samples):
            n = len(sample.tokens)
            row = input_ids[b, :n]  # a view: edits land in input_ids
            rng = self._generator(sample)
            eligible = row >= FIRST_RESIDUE  # (n,)
            selected = eligible & (rng.random(n) < self.mask_prob)
            if not selected.any() and eligible.any():
                selected[rng.choice(np.flatnonzero(eligible))] = True
            labels[b, :n][selected] = row[selected]
            action = rng.random(n)
            to_mask = selected & (action < self.mask_token_prob)
            to_random = selected & ~to_mask & (action < self.mask_token_prob + self.random_token_prob)
            row[to_mask] = ALPHABET.mask_idx
            row[to_random] = rng.integers(STANDARD_LOW, STANDARD_HIGH, size=int(to_random.sum()))
        return {
            "input_ids": torch.from_numpy(input_ids),
            "labels": torch.from_numpy(labels),
            "attention_mask": torch.from_numpy(attention_mask),
            **_positions(samples, input_ids.shape[1]),
        }


class CLMCollator:
    """Causal-language-model batches: ``labels[:, t] = input_ids[:, t + 1]``, already shifted.

    ``labels`` is -100 at the last position and wherever the target (or the input) is padding.
    """

    def __call__(self, samples: Sequence[Sample | np.ndarray]) -> dict[str, torch.Tensor]:
        samples = _unpack(samples)
        input_ids, attention_mask = _pad(samples)  # (B, L) x 2
        labels = np.full_like(input_ids, IGNORE_INDEX)  # (B, L)
        labels[:, :-1] = input_ids[:, 1:]
        labels[:, :-1][~attention_mask[:, 1:] | ~attention_mask[:, :-1]] = IGNORE_INDEX
        return {
            "input_ids": torch.from_numpy(input_ids),
            "labels": torch.from_numpy(labels),
            "attention_mask": torch.from_numpy(attention_mask),
            **_positions(samples, input_ids.shape[1]),
        }


def scoring_collator(objective: str, seed: int) -> MLMCollator | CLMCollator:
    """The collator of validation and ``score``: 15% hidden, every one by ``<mask>``, from a fixed
    seed per sample (masked); or causal batches."""
    check_objective(objective)
    if objective == "mlm":
        return MLMCollator(SCORE_MASK_PROB, 1.0, 0.0, seed=seed, deterministic=True)
    return CLMCollator()
