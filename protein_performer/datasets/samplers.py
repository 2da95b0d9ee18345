"""Samplers: the epoch reaches the dataset (:class:`EpochSampler`), and the one token-budget batcher
(:func:`token_budget_batches`) that training (:class:`TokenBudgetBatchSampler`) and ``embed`` share."""

from __future__ import annotations

import math
from typing import Iterator, Literal, Sequence

import numpy as np
from torch.utils.data import BatchSampler, Dataset, DistributedSampler, Sampler

BatchOrder = Literal["shortest_first", "longest_first"]
Oversize = Literal["error", "alone"]


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
            "raise the budget (token_budget) or lower window_tokens"
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
