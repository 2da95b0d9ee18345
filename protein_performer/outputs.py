"""Output paths: checked by every command before its work (so a bad ``--out`` costs nothing), and
written so that a failure, an interrupt or a full disk leaves no partial file.

The rules, for every command: no file is written that the user did not name or that the command
does not announce; a side file (``map.csv`` beside ``--out map.png``) never collides with an input
or another output; an existing output is replaced only with ``--overwrite``, and ``--overwrite``
replaces only what the command itself wrote; one process at a time writes an output
(:func:`locked`); a full disk stops the command with ``no space left on <folder>`` and leaves
nothing partial (:func:`written_atomically` for one file, :func:`written_into` for several files
of a folder). Numeric flags are checked before any work too (:func:`check_at_least`).
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
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


@contextmanager
def written_into(folder: Path, *, what: str = "") -> Iterator[Path]:
    """Yield a hidden staging folder to write a command's files into; when the block ends they are
    moved into ``folder``: the staging folder, beside a new ``folder``, is renamed to it; inside an
    existing one, each file is renamed into it (its other files untouched). When the block fails or
    is interrupted the staging folder (and any folder above it that this call created) is removed;
    a full disk raises ``OSError("no space left on <folder> ...")``. Staging folders of killed
    processes are removed first (:func:`remove_dead_partials`)."""
    folder = Path(folder)
    fresh = _topmost_missing(folder.parent)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.is_dir():
        remove_dead_partials(folder, inside=True)
        stage = folder / f".partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    else:
        remove_dead_partials(folder)
        stage = partial_dir(folder, "partial")
    stage.mkdir()
    try:
        yield stage
        if not folder.exists():
            stage.rename(folder)
        else:
            for entry in sorted(stage.iterdir()):
                os.replace(entry, folder / entry.name)
            stage.rmdir()
    except BaseException as err:
        shutil.rmtree(stage, ignore_errors=True)
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
        if disk_full(err) and not str(err).startswith("no space left on "):
            raise no_space(folder / (what or folder.name)) from err
        raise


def _topmost_missing(path: Path) -> Path | None:
    """The highest missing folder of ``path`` (what ``mkdir(parents=True)`` would create), or None."""
    path = Path(path).absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def partial_dir(out: Path, kind: str) -> Path:
    """A hidden sibling of ``out`` named after this process, ``.NAME.KIND-PID-XXXXXXXX``
    (``kind``: ``partial`` or ``old``; see :func:`remove_dead_partials`)."""
    return out.parent / f".{out.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_dead_partials(out: Path, *, inside: bool = False) -> None:
    """Remove ``.NAME.partial-PID-*`` / ``.NAME.old-PID-*`` folders beside ``out`` whose process is
    gone (left by a killed run). Folders of older versions (no PID) go when over an hour old.
    With ``inside``: the ``.partial-PID-*`` folders inside the folder ``out`` (:func:`written_into`'s)."""
    folder = Path(out) if inside else Path(out).parent
    prefix = "." if inside else f".{Path(out).name}."
    pattern = re.compile(re.escape(prefix) + r"(?:partial|old)-(?:(\d+)-)?[0-9a-f]{8}")
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        match = pattern.fullmatch(path.name)
        if not match or not path.is_dir():
            continue
        pid = match.group(1)
        dead = not process_alive(int(pid)) if pid else time.time() - path.stat().st_mtime > 3600
        if dead:
            log.warning("removing %s, left by an interrupted run", path)
            shutil.rmtree(path, ignore_errors=True)


LOCK_DIR = Path(tempfile.gettempdir()) / f"protein-performer-locks-{getattr(os, 'getuid', lambda: 0)()}"
"""Where :func:`locked` keeps its lock files (one per output path; never beside the outputs)."""


@contextmanager
def locked(path: Path, flag: str = "--out") -> Iterator[None]:
    """Hold the lock of the output ``path`` (a file or a folder) for the block, so that a second
    process writing the same output (the same absolute path) is refused at once with a one-line
    ``ValueError`` naming ``flag`` instead of both running and the last silently winning. The lock
    (:mod:`filelock`, an OS lock) goes when the block ends or the process dies."""
    from filelock import FileLock, Timeout

    key = hashlib.sha256(str(Path(path).resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    LOCK_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = FileLock(LOCK_DIR / f"{key}.lock", timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise ValueError(f"{flag} {path} is being written by another protein-performer process; wait for it to "
                         f"finish or choose another {flag}") from None
    try:
        yield
    finally:
        lock.release()


def check_at_least(args: argparse.Namespace, minimums: dict[str, float]) -> None:
    """Raise ``ValueError`` (one line) unless every flag of ``minimums`` (``{"--batch-size": 1}``)
    that is set in ``args`` is at least its minimum: checked before any work, not after loading."""
    for flag, low in minimums.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None and value < low:
            raise ValueError(f"{flag} {value}: must be at least {low:g}")


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
