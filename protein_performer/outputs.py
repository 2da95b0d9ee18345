"""Checks of output paths, done by every command before its work (so a bad ``--out`` costs nothing)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Literal


def check_output(path: Path, kind: Literal["file", "dir"], *, inputs: Iterable[Path] = (), flag: str = "--out",
                 existing_ok: bool = True) -> None:
    """Raise ``ValueError`` (one line: the path, the problem, what to do) unless ``path`` can be
    written as a ``kind``: not an input, not the wrong kind of existing entry, under a folder
    (not a file) that this process may write in. ``existing_ok=False`` also refuses an existing
    ``path``."""
    path = Path(path)
    for source in inputs:
        if path.exists() and Path(source).exists() and os.path.samefile(path, source):
            raise ValueError(f"{flag} {path} is the input file; choose another {flag}")
    if path.exists():
        if not existing_ok:
            raise ValueError(f"{flag} {path} already exists; remove it or choose another {flag}")
        if kind == "dir" and not path.is_dir():
            raise ValueError(f"{flag} {path} is a file; {flag} must be a folder (new or one this command wrote)")
        if kind == "file" and path.is_dir():
            raise ValueError(f"{flag} {path} is a folder; {flag} must be a file name")
    ancestor = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not ancestor.is_dir():
        raise ValueError(f"{flag} {path}: {ancestor} is a file, not a folder; choose a {flag} under a folder")
    target = path if path.exists() and kind == "dir" else ancestor
    if not os.access(target, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: cannot write in {target} (permission denied or read-only file system); "
                         f"choose a writable {flag}")
