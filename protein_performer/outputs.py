"""Output paths: checked by every command before its work (so a bad ``--out`` costs nothing), and
written so that a failure, an interrupt or a full disk leaves no partial file.

The rules, for every command: no file is written that the user did not name or that the command
does not announce; a side file (``map.csv`` beside ``--out map.png``) never collides with an input
or another output; an existing output is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Literal

log = logging.getLogger(__name__)


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
            raise ValueError(f"{flag} {path} already exists; use --overwrite to replace it or choose another {flag}")
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


def side_file(main: Path, suffix: str, *, inputs: Iterable[Path] = (), outputs: Iterable[Path] = (),
              overwrite: bool = False, flag: str = "--out") -> Path:
    """The file a command writes beside its output ``main``: ``main`` with ``suffix`` for its
    extension (``map.png``, ``.csv`` -> ``map.csv``; ``.neighbours.csv`` -> ``map.neighbours.csv``).

    Raises ``ValueError`` (naming the file and what to do) when it would be ``main`` itself, an
    input, one of the command's other ``outputs``, or an existing file while ``overwrite`` is false.
    """
    main = Path(main)
    side = main.with_suffix(suffix)
    if _same(side, main):
        raise ValueError(f"{flag} {main}: the {suffix} file written beside it would be {flag} itself; "
                         f"choose a {flag} that does not end in {suffix}")
    for other in outputs:
        if _same(side, Path(other)):
            raise ValueError(f"{flag} {main}: the {suffix} file written beside it, {side}, is also another output "
                             f"of this command; choose another {flag}")
    for source in inputs:
        if _same(side, Path(source)):
            raise ValueError(f"{flag} {main}: the {suffix} file written beside it, {side}, is an input file; "
                             f"choose another {flag}")
    if side.exists() and not overwrite:
        raise ValueError(f"{side} already exists (the {suffix} file written beside {flag} {main}); use --overwrite "
                         f"to replace it or choose another {flag}")
    check_output(side, "file", flag=flag)
    return side


def _same(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name the same file (an existing one through any link, or the same absolute path)."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


@contextmanager
def written_atomically(path: Path, *, sweep: bool = True) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path`` to write; it becomes ``path`` (one rename) when
    the block ends, and is removed when the block fails or is interrupted. A full disk raises
    ``OSError("no space left on <folder> ...")``. With ``sweep``, temporaries of ``path`` left by
    killed processes are removed first (their names carry the process id)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if sweep:
        remove_dead_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if disk_full(err) and not str(err).startswith("no space left on "):  # (not said already)
            raise no_space(path) from err
        raise


def disk_full(err: BaseException) -> bool:
    """Whether ``err`` is a write that found no space left (``ENOSPC``, also as HDF5 reports it)."""
    return isinstance(err, OSError) and (err.errno == errno.ENOSPC or "No space left on device" in str(err)
                                         or str(err).startswith("no space left on "))


def no_space(path: Path, kept: str = "nothing was left there") -> OSError:
    """The error of a write to ``path`` that found its disk full; ``kept`` says what remains of it."""
    return OSError(f"no space left on {Path(path).parent.resolve()} while writing {Path(path).name}; {kept}: free "
                   "some space or choose another output folder, then run again")


def remove_dead_temporaries(path: Path) -> None:
    """Remove ``.NAME.tmp-PID`` files beside ``path`` whose process is gone (a killed run's)."""
    pattern = re.compile(re.escape(f".{path.name}.tmp-") + r"(\d+)")
    if not path.parent.is_dir():
        return
    for entry in path.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and entry.is_file() and not process_alive(int(match.group(1))):
            log.warning("removing %s, left by an interrupted run", entry)
            entry.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def repo_relative(text: str, root: Path | None = None) -> str:
    """``text`` (a recorded command, a log line) with the absolute paths of this machine's checkout
    made relative to the repository ``root``: ``ROOT/docs/x`` -> ``docs/x``, ``ROOT`` -> ``.``, and a
    path beside the checkout, ``ROOT/../shared/data/x`` -> ``../shared/data/x``, so that generated
    documents say what to type in any clone and not where one machine kept its files. Other absolute
    paths (``/tmp/...``) stay. ``root`` defaults to the checkout this package is imported from."""
    root = Path(__file__).resolve().parents[1] if root is None else Path(root)
    for base, inside, itself in ((root, "", "."), (root.parent, "../", "..")):
        if base == base.parent:  # the file-system root: every path is under it
            break
        pattern = rf"(?<![\w.~/-]){re.escape(str(base))}(/|(?![\w.~/-]))"
        text = re.sub(pattern, lambda m, inside=inside, itself=itself: inside if m.group(1) == "/" else itself, text)
    return text
