"""The Performer paper's setting: proteins joined by ``<eos>`` into one stream, cut into windows.

:class:`ConcatWindowDataset` serves a shard's stream in non-overlapping windows whose start moves
each epoch; :func:`windows_from_sequences` cuts the same windows from offset 0 out of proteins in
memory (``score``, the baselines). Both cut with :class:`~protein_performer.windows.WindowPlan`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from torch.utils.data import Dataset

from protein_performer.alphabet import ALPHABET
from protein_performer.corpus.shards import Shard
from protein_performer.datasets.samples import OFFSET_STREAM, Sample, seeded_rng
from protein_performer.windows import WindowPlan


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
    """Non-overlapping windows of ``window_tokens`` over the ``<eos>``-joined stream of a shard.

    The stream is read as a circle: an epoch's windows start at ``offset`` and wrap around the
    end, so they cover the whole stream exactly once; every window is full except the last,
    which is padded with ``<pad>``. ``offset`` is drawn from ``(seed, epoch)`` when
    ``random_offset`` is True (training) and is 0 otherwise (evaluation, scoring).

    Args:
        shard: the split to serve.
        window_tokens: tokens per window (8192 by default; 16384 .. 65536 work the same way).
        seed: seed of the per-epoch offsets.
        epoch: initial epoch; change it with :meth:`set_epoch`.
        random_offset: draw a fresh start offset each epoch; False: offset 0.
        limit: serve at most this many windows per epoch (quick runs); None: all.
    """

    def __init__(
        self,
        shard: Shard,
        window_tokens: int = 8192,
        *,
        seed: int = 0,
        epoch: int = 0,
        random_offset: bool = True,
        limit: int | None = None,
    ) -> None:
        if window_tokens < 1:
            raise ValueError(f"window_tokens must be >= 1, got {window_tokens}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        self.shard, self.window_tokens, self.seed = shard, window_tokens, seed
        self.random_offset, self.limit = random_offset, limit
        self._stream = _Stream(shard.tokens, shard.offsets)
        if self._stream.length == 0:
            raise ValueError(f"{shard.path}: split holds no proteins; prepare it again with more data")
        self.plan = WindowPlan(self._stream.length, window_tokens)  # over the stream rotated by `offset`
        self.num_windows = len(self.plan)
        self.set_epoch(epoch)

    @property
    def stream_length(self) -> int:
        """Tokens in the stream: residues plus one ``<eos>`` per protein."""
        return self._stream.length

    def set_epoch(self, epoch: int) -> None:
        """Move window boundaries: the offset of ``epoch`` is a function of ``(seed, epoch)``."""
        self.epoch = epoch
        if self.random_offset:
            self.offset = int(seeded_rng(self.seed, OFFSET_STREAM, epoch).integers(self._stream.length))
        else:
            self.offset = 0

    def __len__(self) -> int:
        return self.num_windows if self.limit is None else min(self.num_windows, self.limit)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        n, size = self._stream.length, self.window_tokens
        window = self.plan[index]  # positions in the rotated stream
        a, b = (self.offset + window.start) % n, (self.offset + window.stop) % n  # positions in the stream
        if a < b:
            parts = [self._stream.slice(a, b)]
        else:  # wraps past the end of the stream
            parts = [self._stream.slice(a, n), self._stream.slice(0, b)]
        tokens = np.full(size, ALPHABET.pad_idx, dtype=np.uint8)  # (window_tokens,)
        filled = np.concatenate(parts) if len(parts) > 1 else parts[0]
        tokens[: len(filled)] = filled
        return Sample(tokens, index, self.epoch)

    def __getstate__(self) -> dict:
        # Ship the shard's path to worker processes, not its memory map (reopened there).
        state = self.__dict__.copy()
        state["shard"] = Shard(self.shard.path)
        state["_stream"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._stream = _Stream(self.shard.tokens, self.shard.offsets)


def windows_from_sequences(token_arrays: Sequence[np.ndarray], window_tokens: int) -> list[np.ndarray]:
    """Join proteins with ``<eos>`` (one after each) and cut non-overlapping windows from offset 0.

    The windows equal those of ``ConcatWindowDataset(..., random_offset=False)`` over the same
    proteins, except that the last one is returned unpadded (the collators pad).
    """
    if window_tokens < 1:
        raise ValueError(f"window_tokens must be >= 1, got {window_tokens}")
    if not token_arrays:
        return []
    lengths = np.array([len(a) for a in token_arrays], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])  # (n + 1,)
    stream = _Stream(np.concatenate([np.asarray(a, dtype=np.uint8) for a in token_arrays]), offsets)
    return [stream.slice(w.start, w.stop) for w in WindowPlan(stream.length, window_tokens)]
