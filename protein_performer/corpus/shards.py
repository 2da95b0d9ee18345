"""On-disk layout of a prepared dataset, and its reader (numpy only, no torch).

A prepared dataset is a directory::

    DIR/manifest.json            inputs, checksums, counts, alphabet version, splits
    DIR/<split>/tokens.u8        uint8 token ids of every protein of the split, back to back
    DIR/<split>/offsets.i64      int64[n + 1]: protein i is tokens[offsets[i]:offsets[i + 1]]
    DIR/<split>/ids.txt          one protein id per line, in the same order
    DIR/<split>/weights.f32      family datasets only: float32 sequence weight of each member
    DIR/<split>/positions.u16    aligned families only: each residue's column in the query's frame
    DIR/<split>/family.u32       family datasets only: which homolog set (0, 1, ...) each member is of

Splits are ``train``, ``valid`` and ``test``. Tokens hold residues only (no special tokens):
datasets add separators, ``<cls>`` and padding when they serve batches. The manifest records
each split file's size and sha256 (``splits.<split>.files``: every file above). :func:`open_split`
checks the sizes, the offsets against the token file, that every token is a residue id, and every
file's sha256: bytes changed in place (a residue for another, offsets that still increase,
positions or family indices) are caught before a model sees them. Hashing runs once per file
version: a verified file is recorded (size, mtime_ns, inode and sha256) in a stamp under
:func:`cache_dir`, outside the dataset, and re-opening it unchanged reads only the stamp.
:func:`verify_checksums` hashes every byte of every split regardless (``prepare`` does, before it
calls a dataset up to date). A damaged dataset raises :class:`DamagedDataset`, naming the file;
``prepare --overwrite`` rebuilds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from protein_performer.alphabet import ALPHABET, ALPHABET_VERSION

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.json"
TOKENS_FILE = "tokens.u8"
OFFSETS_FILE = "offsets.i64"
IDS_FILE = "ids.txt"
SPLIT_FILES = (TOKENS_FILE, OFFSETS_FILE, IDS_FILE)
WEIGHTS_FILE = "weights.f32"
"""Family datasets only (``prepare --family``): float32[n], each member's sequence weight."""
POSITIONS_FILE = "positions.u16"
"""Aligned family datasets only: uint16 per residue (as ``tokens.u8``), its column in the query's frame."""
FAMILY_FILE = "family.u32"
"""Family datasets only: uint32[n], the index of each member's homolog set among ``prepare --family``'s inputs."""
OPTIONAL_FILES = (WEIGHTS_FILE, POSITIONS_FILE, FAMILY_FILE)
CACHE_ENV = "PROTEIN_PERFORMER_CACHE"
"""Environment variable naming the folder of checksum stamps (default ``$XDG_CACHE_HOME/protein_performer``
or ``~/.cache/protein_performer``)."""


class DamagedDataset(ValueError):
    """A prepared dataset whose files do not match each other or its manifest."""

    def __init__(self, file: Path, problem: str) -> None:
        data_dir = file.parent.parent if file.parent.name in SPLITS else file.parent
        super().__init__(f"{file}: damaged prepared dataset ({problem}); rebuild it with "
                         f"`protein-performer prepare INPUT... --out {data_dir} --overwrite`")
        self.file = file


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Shard:
    """One split of a prepared dataset, memory-mapped (``path``: a split folder, str or Path)."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @cached_property
    def tokens(self) -> np.ndarray:
        file = self.path / TOKENS_FILE
        if file.stat().st_size == 0:
            return np.zeros(0, dtype=np.uint8)
        return np.memmap(file, dtype=np.uint8, mode="r")

    @cached_property
    def offsets(self) -> np.ndarray:
        return np.fromfile(self.path / OFFSETS_FILE, dtype="<i8")

    @cached_property
    def ids(self) -> list[str]:
        ids = (self.path / IDS_FILE).read_text().splitlines()
        if len(ids) != len(self):
            raise DamagedDataset(self.path / IDS_FILE, f"{len(ids)} ids for {len(self)} proteins")
        return ids

    def check(self, manifest_split: dict | None = None) -> None:
        """Raise :class:`DamagedDataset` unless the files agree with each other and ``manifest_split``
        (the manifest's entry for this split): sizes and offsets only, no checksums."""
        for name, info in (manifest_split or {}).get("files", {}).items():
            file = self.path / name
            size = file.stat().st_size if file.is_file() else None
            if size != info["bytes"]:
                raise DamagedDataset(file, "missing" if size is None else
                                     f"{size:,} bytes, the manifest says {info['bytes']:,}")
        offsets_file = self.path / OFFSETS_FILE
        if offsets_file.stat().st_size % 8 or offsets_file.stat().st_size < 8:
            raise DamagedDataset(offsets_file, f"{offsets_file.stat().st_size} bytes, not a whole int64 array")
        offsets, tokens_file = self.offsets, self.path / TOKENS_FILE
        if offsets[0] != 0 or (len(offsets) > 1 and np.any(np.diff(offsets) < 0)):
            raise DamagedDataset(offsets_file, "offsets do not start at 0 and increase")
        size = tokens_file.stat().st_size if tokens_file.is_file() else 0
        if size != offsets[-1]:
            raise DamagedDataset(tokens_file, f"{size:,} bytes, the offsets end at {offsets[-1]:,}")
        for key, have in (("proteins", len(self)), ("residues", int(offsets[-1]))):
            want = (manifest_split or {}).get(key)
            if want is not None and want != have:
                raise DamagedDataset(offsets_file, f"{have:,} {key}, the manifest says {want:,}")
        self._check_token_range()

    def _check_token_range(self, block: int = 1 << 24) -> None:
        """Raise :class:`DamagedDataset` naming the first token that is no residue id (corrupted bytes
        of the right size would otherwise reach the model's embedding as out-of-range indices)."""
        low, high = min(ALPHABET.amino_acid_indices), max(ALPHABET.amino_acid_indices)
        tokens = self.tokens
        for start in range(0, len(tokens), block):
            chunk = tokens[start : start + block]
            if chunk.min() < low or chunk.max() > high:
                at = start + int(np.flatnonzero((chunk < low) | (chunk > high))[0])
                protein = int(np.searchsorted(self.offsets, at, side="right")) - 1
                raise DamagedDataset(self.path / TOKENS_FILE,
                                     f"byte {at:,} (protein {protein + 1}) holds {int(tokens[at])}, not a residue id "
                                     f"({low}-{high}); the file is corrupted")

    @cached_property
    def weights(self) -> np.ndarray | None:
        """(n,) float64 sequence weights of a family dataset; None for a plain corpus."""
        file = self.path / WEIGHTS_FILE
        if not file.is_file():
            return None
        weights = np.fromfile(file, dtype="<f4").astype(np.float64)
        if len(weights) != len(self) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise DamagedDataset(file, f"{len(weights)} weights for {len(self)} members, or a weight that is "
                                       "negative or not finite")
        return weights

    @cached_property
    def positions(self) -> np.ndarray | None:
        """uint16 per residue (as :attr:`tokens`): its column in the family query's frame; None
        unless this is an aligned family dataset."""
        file = self.path / POSITIONS_FILE
        if not file.is_file():
            return None
        positions = np.fromfile(file, dtype="<u2")
        if len(positions) != int(self.offsets[-1]):
            raise DamagedDataset(file, f"{len(positions)} positions for {int(self.offsets[-1])} residues")
        return positions

    @cached_property
    def families(self) -> np.ndarray | None:
        """(n,) int64 index of each member's homolog set (``prepare --family A B ...``); None for a
        plain corpus or a family dataset written before several sets were supported (one set)."""
        file = self.path / FAMILY_FILE
        if not file.is_file():
            return None
        families = np.fromfile(file, dtype="<u4").astype(np.int64)
        if len(families) != len(self):
            raise DamagedDataset(file, f"{len(families)} family indices for {len(self)} members")
        return families

    def member_positions(self, i: int) -> np.ndarray | None:
        positions = self.positions
        return None if positions is None else positions[self.offsets[i] : self.offsets[i + 1]]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def protein(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]


def read_manifest(data_dir: str | Path) -> dict:
    """Read and check ``manifest.json``; errors say what to do."""
    data_dir = Path(data_dir)
    file = data_dir / MANIFEST
    if not file.is_file():
        raise FileNotFoundError(
            f"{data_dir}: no {MANIFEST}; this is not a prepared dataset "
            f"(run `protein-performer prepare FASTA --out {data_dir}`)"
        )
    try:
        manifest = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DamagedDataset(file, f"not valid JSON: {err}") from err
    version = manifest.get("alphabet_version")
    if version != ALPHABET_VERSION:
        raise ValueError(
            f"{file}: alphabet version {version} but this protein_performer uses {ALPHABET_VERSION}; "
            "prepare the data again with this version"
        )
    return manifest


def open_split(data_dir: str | Path, split: str) -> Shard:
    """Open one split (``train`` / ``valid`` / ``test``) of a prepared dataset."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    manifest = read_manifest(data_dir)
    path = Path(data_dir) / split
    if not (path / OFFSETS_FILE).is_file():
        raise DamagedDataset(path / OFFSETS_FILE, f"split {split!r} is missing")
    shard = Shard(path)
    info = manifest.get("splits", {}).get(split)
    shard.check(info)
    verify_split(path, info or {})
    return shard


def cache_dir() -> Path:
    """Where checksum stamps are kept: ``$PROTEIN_PERFORMER_CACHE``, else ``$XDG_CACHE_HOME/protein_performer``,
    else ``~/.cache/protein_performer``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "protein_performer"


def verify_split(path: Path, manifest_split: dict) -> None:
    """Raise :class:`DamagedDataset` unless every file of the split folder ``path`` has the sha256
    the manifest's entry for it records, and every optional file there is listed. A file whose
    size, mtime and inode are those of its last successful check is not read again (the stamp of
    the split under :func:`cache_dir`). Datasets whose manifest records no checksums (written by
    hand, or before checksums) are checked by size only."""
    files = manifest_split.get("files")
    if not files:
        return
    path = Path(path)
    for name in OPTIONAL_FILES:
        if name not in files and (path / name).is_file():
            raise DamagedDataset(path / name, "a file the manifest does not list (another dataset's?)")
    try:
        stamp_file = cache_dir() / "verified" / f"{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]}.json"
    except RuntimeError:  # no home folder to hold the cache: every open hashes
        stamp_file = None
    stamp = _read_stamp(stamp_file) if stamp_file else {}
    checked = {}
    for name, record in sorted(files.items()):
        file = path / name
        st = file.stat()
        key = [st.st_size, st.st_mtime_ns, st.st_ino, record["sha256"]]
        if stamp.get(name) != key:
            if sha256_of(file) != record["sha256"]:
                raise DamagedDataset(file, "its sha256 differs from the manifest's: its bytes changed after "
                                           "`prepare` wrote it")
            log.debug("%s: sha256 verified", file)
        checked[name] = key
    if stamp_file and checked != stamp:
        _write_stamp(stamp_file, checked)


def _read_stamp(file: Path) -> dict:
    try:
        stamp = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _write_stamp(file: Path, stamp: dict) -> None:
    """Write ``stamp`` atomically; a cache that cannot be written only costs the next open a re-check."""
    tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(stamp))
        os.replace(tmp, file)
    except OSError as err:
        log.debug("cannot write the checksum stamp %s (%s); the files are hashed again next time", file, err)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def verify_checksums(data_dir: str | Path, manifest: dict) -> None:
    """Check every split's files against each other and the manifest's sizes and sha256
    (reads all the data); raises :class:`DamagedDataset`."""
    for split in SPLITS:
        path, info = Path(data_dir) / split, manifest.get("splits", {}).get(split, {})
        if not (path / OFFSETS_FILE).is_file():
            raise DamagedDataset(path / OFFSETS_FILE, f"split {split!r} is missing")
        Shard(path).check(info)
        for name, record in info.get("files", {}).items():
            if sha256_of(path / name) != record["sha256"]:
                raise DamagedDataset(path / name, "its sha256 differs from the manifest's")
