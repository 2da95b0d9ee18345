"""Helpers shared by the benchmark scripts: machine description, process memory (Linux ``/proc``),
marked markdown blocks, timing and peak memory on CPU or CUDA, and the best-of-repeats time of a cell."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import platform
import time
from pathlib import Path

log = logging.getLogger(__name__)


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``platform.processor()`` where there is none)."""
    name = platform.processor() or "unknown"
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as fh:
        name = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    return name


def proc_status_kib(key: str) -> int:
    """One KiB field of ``/proc/self/status``: ``VmRSS`` (resident now) or ``VmHWM`` (peak resident)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def rss_bytes() -> int:
    """Resident memory of this process now (``VmRSS``)."""
    return proc_status_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (``VmHWM``) since exec or since :func:`reset_peak_rss`.

    Unlike ``getrusage``'s ``ru_maxrss`` it starts afresh at exec, so a fresh interpreter does not
    inherit the high-water mark of the (forking) process that started it.
    """
    return proc_status_kib("VmHWM") * 1024


def reset_peak_rss() -> bool:
    """Reset the peak (``VmHWM``) to the current RSS (Linux >= 4.0); False where not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def machine_description(device: str = "cpu") -> str:
    """``"2 CPUs (nproc), AMD EPYC ...; torch X; Python Y"`` (plus the GPU name on CUDA)."""
    import torch

    text = f"{os.cpu_count()} CPUs (nproc), {cpu_name()}; torch {torch.__version__}; Python {platform.python_version()}"
    if device == "cuda":
        text += f"; GPU {torch.cuda.get_device_name()}"
    return text


def write_marked_block(path: Path, block: str, name: str, title: str) -> None:
    """Replace the ``<!-- NAME:begin -->`` ... ``<!-- NAME:end -->`` block of ``path`` (appended, or
    a new file headed ``# TITLE``, when there is none), keeping the prose around it."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    marked = f"{begin}\n{block}\n{end}"
    if path.exists():
        text = path.read_text()
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            text = head + marked + rest.split(end, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + marked + "\n"
    else:
        text = f"# {title}\n\n" + marked + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    log.info("wrote %s", path)


class BestOfRepeats:
    """Mixed into a benchmark's ``Cell`` dataclass: ``seconds`` holds one wall time per repeat, and the
    cell's :attr:`time` is the fastest of them (the least disturbed by the rest of the machine)."""

    seconds: list[float]

    @property
    def time(self) -> float | None:
        """The fastest repeat in seconds; None when the cell was not run."""
        return min(self.seconds) if self.seconds else None


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
