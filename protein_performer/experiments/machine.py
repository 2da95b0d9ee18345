"""The machine an experiment ran on and the memory of this process (Linux ``/proc``), and marked
blocks of generated markdown: shared by the experiments and the benchmarks (:mod:`.bench`)."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
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
