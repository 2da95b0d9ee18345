"""On-disk layout of a prepared dataset, and its reader (numpy only, no torch).

A prepared dataset is a directory::

    DIR/manifest.json            inputs, checksums, counts, alphabet version, splits
    DIR/<split>/tokens.u8        uint8 token ids of every protein of the split, back to back
    DIR/<split>/offsets.i64      int64[n + 1]: protein i is tokens[offsets[i]:offsets[i + 1]]
    DIR/<split>/ids.txt          one protein id per line, in the same order

Splits are ``train``, ``valid`` and ``test``. Tokens hold residues only (no special tokens):
datasets add separators, ``<cls>`` and padding when they serve batches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from protein_performer.alphabet import ALPHABET_VERSION

SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.json"
TOKENS_FILE = "tokens.u8"
OFFSETS_FILE = "offsets.i64"
IDS_FILE = "ids.txt"


@dataclass
class Shard:
    """One split of a prepared dataset, memory-mapped."""

    path: Path

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
        return (self.path / IDS_FILE).read_text().splitlines()

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
    manifest = json.loads(file.read_text())
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
    read_manifest(data_dir)
    path = Path(data_dir) / split
    if not (path / OFFSETS_FILE).is_file():
        raise FileNotFoundError(f"{path}: split missing from the prepared dataset")
    return Shard(path)
