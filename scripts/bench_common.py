"""Helpers shared by the benchmark scripts: machine description and marked markdown blocks."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
from pathlib import Path

log = logging.getLogger(__name__)


def machine_description(device: str = "cpu") -> str:
    """``"2 CPUs (nproc), AMD EPYC ...; torch X; Python Y"`` (plus the GPU name on CUDA)."""
    import torch

    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    text = f"{os.cpu_count()} CPUs (nproc), {cpu}; torch {torch.__version__}; Python {platform.python_version()}"
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
