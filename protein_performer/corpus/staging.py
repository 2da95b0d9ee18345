"""Where ``prepare`` builds a dataset and how it takes the place of ``--out``.

The dataset is written into a hidden sibling of ``--out`` named after the process
(:func:`scratch_dir`) and renamed into place at the end (:func:`swap_into_place`), so an interrupted
run never leaves a directory that looks complete; a later run removes what a killed one left
(:func:`remove_dead_partials`). :func:`check_out_dir` refuses, before any work, an ``--out`` that
cannot become the dataset; :func:`reusable_manifest` keeps an up-to-date dataset and refuses to
replace anything else without ``--overwrite``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from protein_performer.corpus.shards import (
    FAMILY_FILE,
    MANIFEST,
    POSITIONS_FILE,
    SPLIT_FILES,
    WEIGHTS_FILE,
    DamagedDataset,
    read_manifest,
    verify_checksums,
)
from protein_performer.outputs import check_output, partial_dir, remove_dead_partials  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


def _existing_manifest(out: Path) -> dict | None:
    try:
        return read_manifest(out)
    except (FileNotFoundError, ValueError):
        return None


def reusable_manifest(out: Path, input_info: list[dict], options: dict, overwrite: bool) -> dict | None:
    """The manifest at ``out`` if it was made from the same inputs (sha256, format) and options
    and its files still match their checksums; raises if ``out`` holds anything else (or a
    damaged dataset) and ``overwrite`` is false, and even with ``overwrite`` when ``out`` holds
    files that are not part of a prepared dataset (:func:`foreign_files`): those are never deleted."""
    existing = _existing_manifest(out)
    key = [(i["sha256"], i["format"]) for i in input_info]
    if existing is not None and existing.get("options") == options and \
            [(i.get("sha256"), i.get("format")) for i in existing.get("inputs", [])] == key:
        try:
            verify_checksums(out, existing)
            return existing
        except DamagedDataset:
            if not overwrite:
                raise
            log.warning("%s is damaged; rebuilding it (--overwrite)", out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        what = "a prepared dataset of other inputs or options" if existing else "files that are not a prepared dataset"
        raise ValueError(f"{out} already holds {what}; use --overwrite to replace it or choose another --out")
    if out.exists():
        foreign = foreign_files(out, existing)
        if foreign:
            raise ValueError(f"--out {out} holds {len(foreign)} file(s) that prepare did not write ({', '.join(foreign[:3])}"
                             f"{' ...' if len(foreign) > 3 else ''}); --overwrite replaces only a prepared dataset: "
                             "move them away or choose another --out")
    return None


def foreign_files(out: Path, manifest: dict | None) -> list[str]:
    """Files under ``out`` (names relative to it) that are not part of the prepared dataset its
    ``manifest`` describes: every file when there is no manifest."""
    if manifest is None:
        own: set[str] = set()
    else:
        names = (*SPLIT_FILES, WEIGHTS_FILE, POSITIONS_FILE, FAMILY_FILE)
        own = {MANIFEST, *(f"{split}/{name}" for split in manifest.get("splits", {}) for name in names)}
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                  if not p.is_dir() and p.relative_to(out).as_posix() not in own)


def check_out_dir(out: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse, before any work, an ``--out`` that cannot become the dataset directory (it is
    built in a hidden sibling and renamed into place, so the folder above must be writable)."""
    check_output(out, "dir")
    if out.exists() and not os.access(out.parent.resolve(), os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: cannot write in {out.parent} (permission denied or read-only file system), "
                         "where the new dataset is built; choose a writable --out")
    resolved, cwd = out.resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise ValueError(f"--out {out} is the current directory or holds it; the dataset is written beside "
                         "--out and renamed into place, so choose a new folder, e.g. --out data/prepared/NAME")
    if overwrite and any(resolved in p.resolve().parents for p in inputs):
        raise ValueError(f"--out {out} holds an input file; --overwrite would delete it. Choose another --out")


def scratch_dir(out: Path, kind: str) -> Path:
    """A hidden sibling of ``out`` named after this process (see :func:`remove_dead_partials`)."""
    return partial_dir(out, kind)


def swap_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an old ``out`` is moved aside first and removed after."""
    old = None
    if out.exists():
        old = scratch_dir(out, "old")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old)
