"""What the benchmarks share: timing and peak memory on CPU or CUDA, and the best-of-repeats time of a
cell. The machine description, process memory (Linux ``/proc``) and marked markdown blocks are
:mod:`protein_performer.experiments.machine`'s."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import time

from protein_performer.experiments.machine import peak_rss_bytes, reset_peak_rss, rss_bytes
from protein_performer.experiments.report.tables import md_table

log = logging.getLogger(__name__)


class BestOfRepeats:
    """Mixed into a benchmark's ``Cell`` dataclass: ``seconds`` holds one wall time per repeat, and the
    cell's :attr:`time` is the fastest of them (the least disturbed by the rest of the machine)."""

    seconds: list[float]

    @property
    def time(self) -> float | None:
        """The fastest repeat in seconds; None when the cell was not run."""
        return min(self.seconds) if self.seconds else None


def targets_table(rows: list[tuple[str, str, str, str]]) -> str:
    """The benchmarks' targets as a markdown table: (criterion, measured, target, PASS/MISS/n/a) rows."""
    return md_table(["criterion", "measured", "target", "status"], [list(row) for row in rows], align="lrrl")


# ----------------------------------------------------------------------------- devices
# One way for every benchmark to time and measure on CPU or CUDA: bf16 autocast on CUDA (fp32 on
# CPU), the device synchronised around every timer, and peak memory from the CUDA allocator or the
# kernel's peak-RSS counter.


def synchronize(device: str) -> None:
    """Wait for the device's queued work (CUDA); nothing to wait for on CPU."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def autocast(device: str, bf16: bool | None = None):
    """The benchmarks' precision: bf16 autocast on CUDA, plain fp32 on CPU; ``bf16`` decides instead
    when given (True: Lightning's ``bf16-mixed`` on either device)."""
    import torch

    return torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda" if bf16 is None else bf16)


def time_call(fn, device: str) -> float:
    """Seconds that ``fn()`` takes, the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def release_free_memory() -> None:
    """Hand glibc's free heap back to the kernel (``malloc_trim``), so that RSS counts live memory
    only and a peak measured from it is not hidden by memory freed by an earlier run."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """``with PeakMemory(device) as peak: ...``; then ``peak.bytes`` is the peak memory above what
    was allocated when the block began: ``torch.cuda.max_memory_allocated`` on CUDA, ``VmHWM`` over
    ``VmRSS`` on CPU (None where the kernel's peak counter cannot be reset)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.bytes: int | None = None
        self._base = 0
        self._exact = True

    def __enter__(self) -> "PeakMemory":
        import torch

        synchronize(self.device)
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            release_free_memory()
            self._base = rss_bytes()
            self._exact = reset_peak_rss()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        synchronize(self.device)
        if self.device == "cuda":
            self.bytes = max(0, torch.cuda.max_memory_allocated() - self._base)
        elif self._exact:
            self.bytes = max(0, peak_rss_bytes() - self._base)
