"""One planner of windows over a sequence: the positions each window reads and those it answers for.

A sequence of ``length`` positions too long for one forward is read in windows of ``window``
positions; consecutive windows share ``overlap`` positions (stride ``window - overlap``). The
policies that differ between users are explicit parameters of :class:`WindowPlan`:

* ``tail``: ``"short"`` ends the last window at the sequence's end, shorter than the others;
  ``"full"`` keeps every window ``window`` long and moves the last one back to end at the end
  (it then shares more than ``overlap`` with its neighbour). A sequence that fits is one window.
* ``ownership``: every position is *owned* by exactly one window, the one its result is read from.
  ``"centre"``: the window whose centre it is nearest among those that read it (ties to the earlier
  one), so it has context on both sides; ``"prefix"``: the first window that reads it after that
  window's own first position, i.e. the one with the longest prefix before it (causal models).
  Owned ranges are contiguous, in order, and cover the sequence.

Users (numpy and the standard library only, so every layer may import it):

* ``score`` and the concatenated training stream (:mod:`protein_performer.datasets`):
  ``WindowPlan(length, window)``, non-overlapping windows from position 0, the last one short.
* ``embed`` (:mod:`protein_performer.embed.embedder`): ``overlap`` residues shared, ``tail="full"``;
  it averages the states of every window that reads a residue (ownership unused).
* ``score-variants`` (:mod:`protein_performer.variants.scoring`): stride half a window,
  ``tail="full"``, ``"centre"`` for masked models and ``"prefix"`` for causal ones.

Window ``k`` is computed on its own in O(1) (``plan[k]``), so a plan over a stream of billions of
tokens costs nothing to hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Iterator, Literal, overload

import numpy as np

Tail = Literal["short", "full"]
Ownership = Literal["centre", "prefix"]


@dataclass(frozen=True)
class Window:
    """One window: it reads positions ``[start, stop)`` and owns ``[own_start, own_stop)`` (inside them)."""

    start: int
    stop: int
    own_start: int
    own_stop: int

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class WindowPlan(Sequence):
    """The windows over ``length`` positions, as the module docstring describes; a sequence of :class:`Window`."""

    length: int
    window: int
    overlap: int = 0
    tail: Tail = "short"
    ownership: Ownership = "centre"

    def __post_init__(self) -> None:
        if self.length < 0 or self.window < 1:
            raise ValueError(f"windows of {self.window} over {self.length} positions: need length >= 0, window >= 1")
        if not 0 <= self.overlap < self.window:
            raise ValueError(f"overlap {self.overlap} must be in [0, window {self.window})")
        if self.tail not in ("short", "full") or self.ownership not in ("centre", "prefix"):
            raise ValueError(f"tail {self.tail!r} / ownership {self.ownership!r}: expected short|full, centre|prefix")

    @property
    def stride(self) -> int:
        """Positions between the starts of consecutive windows (except before a moved-back last one)."""
        return self.window - self.overlap

    def __len__(self) -> int:
        if self.length <= self.window:
            return 1 if self.length else 0
        return 1 + math.ceil((self.length - self.window) / self.stride)

    def _start(self, k: int) -> int:
        if self.tail == "full" and k == len(self) - 1:
            return max(self.length - self.window, 0)
        return k * self.stride

    def _stop(self, k: int) -> int:
        return min(self._start(k) + self.window, self.length)

    def _boundary(self, k: int) -> int:
        """The first position owned by window ``k + 1`` rather than window ``k``."""
        if self.ownership == "prefix":
            return self._stop(k)
        s0, e0, s1, e1 = self._start(k), self._stop(k), self._start(k + 1), self._stop(k + 1)
        # Centres (s + e - 1) / 2; a position i goes to k + 1 when i > (centre_k + centre_k+1) / 2,
        # i.e. 4i > s0 + e0 + s1 + e1 - 2; only positions both windows read, [s1, e0), are shared.
        return min(max((s0 + e0 + s1 + e1 - 2) // 4 + 1, s1), e0)

    @overload
    def __getitem__(self, k: int) -> Window: ...

    @overload
    def __getitem__(self, k: slice) -> list[Window]: ...

    def __getitem__(self, k: int | slice) -> Window | list[Window]:
        n = len(self)
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(n))]
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError(f"window {k} out of range for {n} windows")
        own_start = 0 if k == 0 else self._boundary(k - 1)
        own_stop = self.length if k == n - 1 else self._boundary(k)
        return Window(self._start(k), self._stop(k), own_start, own_stop)

    def __iter__(self) -> Iterator[Window]:
        return (self[k] for k in range(len(self)))

    def owners(self) -> np.ndarray:
        """(length,) int64: the window that owns each position."""
        sizes = [w.own_stop - w.own_start for w in self]
        return np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
