"""Keep freed memory in the process: glibc's allocator settings for large tensors on CPU.

By default glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh
``mmap`` and gives it back with ``munmap`` when freed, and trims the top of its heap whenever
enough is free there. A tensor that large is then new memory every time it is made: the kernel
zero-fills each of its pages on first touch. Models on CPU make and free such tensors every step
(at L = 8192 a (8, 8192, 256) FAVOR+ feature tensor is 64 MiB), so the same step pays the page
faults again and again. On our 2-core machines a fresh 64 MiB tensor costs several times its fill
(``scripts/bench_train.py --bound`` and ``docs/benchmarks/train.md`` have the measurements).

:func:`keep_freed_memory` tells glibc (``mallopt``) to serve large allocations from its heap and
never to trim it, so freed blocks are reused at once, as a caching allocator would (PyTorch's CUDA
allocator does the same on GPUs). The cost: the process keeps its peak memory mapped until it
exits, which a training or inference run reaches every step anyway. ``fit``, ``score``, ``embed``
and the other commands call it at start; set ``PROTEIN_PERFORMER_MALLOC=system`` to keep glibc's
defaults. Elsewhere than glibc (macOS, musl, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

ENV = "PROTEIN_PERFORMER_MALLOC"
"""``system`` keeps glibc's defaults; anything else (or unset) applies :func:`keep_freed_memory`."""

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_applied = False


def on_glibc() -> bool:
    """Whether this process runs on glibc (whose mallopt this module sets)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")  # e.g. "glibc 2.36"
    except (AttributeError, ValueError, OSError):  # no confstr (Windows) or no such name (musl, macOS)
        return False


def keep_freed_memory() -> bool:
    """Serve large allocations from glibc's heap and never trim it (see the module docstring).

    Returns True if the settings are in force (now or from an earlier call), False where they do
    not apply: not glibc, or ``PROTEIN_PERFORMER_MALLOC=system``.
    """
    global _applied
    if _applied:
        return True
    if os.environ.get(ENV, "").strip().lower() == "system":
        return False
    if not on_glibc():
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc's soname on every Linux
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # The trim threshold is a size_t that mallopt takes as an int: -1 converts to SIZE_MAX (never
    # trim), where the largest positive int would still trim a heap top of over 2 GiB.
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, -1) == 1
    if ok:
        _applied = True
        log.debug("glibc malloc: no mmap for large blocks, no heap trimming (%s=system to undo)", ENV)
    return ok
