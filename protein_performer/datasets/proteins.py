"""One protein per sample, framed ``<cls> seq <eos>``; batched by :class:`~protein_performer.datasets.samplers.TokenBudgetBatchSampler`."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from protein_performer.alphabet import ALPHABET
from protein_performer.corpus.shards import Shard
from protein_performer.datasets.samples import CROP_STREAM, Sample, seeded_rng


class ProteinDataset(Dataset):
    """One protein per sample, served as ``<cls> seq <eos>`` (at most ``window_tokens``).

    Proteins longer than ``window_tokens - 2`` residues are cropped: a random window drawn from
    ``(seed, epoch, index)`` with ``crop="random"`` (training), the first residues with
    ``crop="start"`` (evaluation). ``<cls>`` and ``<eos>`` are always added. Padding is the
    collator's job. ``limit`` serves only the first proteins (quick runs); None: all.
    """

    def __init__(
        self,
        shard: Shard,
        window_tokens: int = 1024,
        *,
        crop: str = "random",
        seed: int = 0,
        epoch: int = 0,
        limit: int | None = None,
    ) -> None:
        if crop not in ("random", "start"):
            raise ValueError(f"crop must be 'random' or 'start', got {crop!r}")
        if window_tokens < 3:
            raise ValueError(f"window_tokens must be >= 3 (<cls>, a residue, <eos>), got {window_tokens}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        self.shard, self.window_tokens, self.crop, self.seed, self.epoch = shard, window_tokens, crop, seed, epoch
        self.limit = limit

    def set_epoch(self, epoch: int) -> None:
        """Random crops of ``epoch`` are a function of ``(seed, epoch, index)``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.shard) if self.limit is None else min(len(self.shard), self.limit)

    @property
    def served_lengths(self) -> np.ndarray:
        """Tokens served per protein (residues + 2, capped at ``window_tokens``): for token budgets."""
        return np.minimum(self.shard.lengths[: len(self)] + 2, self.window_tokens)

    def __getitem__(self, index: int) -> Sample:
        residues = self.shard.protein(index)
        keep = self.window_tokens - 2
        if len(residues) > keep:
            start = 0
            if self.crop == "random":
                start = int(seeded_rng(self.seed, CROP_STREAM, self.epoch, index).integers(len(residues) - keep + 1))
            residues = residues[start : start + keep]
        return Sample(ALPHABET.frame(residues), index, self.epoch)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["shard"] = Shard(self.shard.path)
        return state
