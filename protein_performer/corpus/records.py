"""What the sequence readers (:mod:`protein_performer.corpus.fasta`) yield and how raw text becomes it.

No torch. A :class:`ProteinRecord` is one cleaned protein; its id comes from the header
(:func:`parse_header`: the UniProt accession of ``>sp|ACC|NAME`` / ``>tr|…`` headers, otherwise the
first word), and the ``OS= OX= GN= PE= SV=`` fields are parsed on first use
(:func:`parse_uniprot_fields`). Every record passes through one :class:`CleaningPolicy`
(:func:`clean_sequence`, :func:`accept_record`); every oddity it fixes and every record it skips is
counted per reason in a :class:`ReadCounts`, so nothing is dropped silently.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from protein_performer.alphabet import ALPHABET

UnknownPolicy = Literal["error", "x", "skip"]
DEFAULT_UNKNOWN: UnknownPolicy = "error"
"""The ``--unknown`` default of every command that reads sequences (prepare, embed, score, similarity)."""

WHITESPACE = b" \t\n\r\x0b\x0c"
"""Bytes removed from sequence lines."""
INVALID_TOKEN = 255
TOKEN_TABLE = bytes(ALPHABET.lookup_table)
"""``bytes.translate`` table: byte -> token id, :data:`INVALID_TOKEN` for anything else."""
_GAPS = b"-."
_X_ID = ALPHABET.index("X")
_FOREIGN_CHAR = "\x80"  # stands for one non-ASCII character while cleaning (never a valid code)
_FOREIGN = _FOREIGN_CHAR.encode("latin-1")
_UNIPROT_FIELD = re.compile(r"\s(OS|OX|GN|PE|SV)=")


@dataclass(frozen=True)
class CleaningPolicy:
    """How raw sequences are cleaned. Lowercase is upper-cased, a trailing ``*`` and the gap
    characters ``-`` / ``.`` are removed (each counted as an oddity)."""

    unknown: UnknownPolicy = DEFAULT_UNKNOWN
    """A character that is no amino-acid code: ``error`` (stop, naming file, record and
    position), ``x`` (map it to ``X``) or ``skip`` (skip the record)."""
    min_residues: int = 1
    """Skip records of fewer residues than this (after cleaning)."""
    max_residues: int | None = None
    """Skip records of more residues than this (after cleaning); ``None``: no limit."""

    def __post_init__(self) -> None:
        if self.unknown not in ("error", "x", "skip"):
            raise ValueError(f"unknown={self.unknown!r}; expected 'error', 'x' or 'skip'")
        if self.min_residues < 1 or (self.max_residues is not None and self.max_residues < self.min_residues):
            raise ValueError(f"bad length limits min_residues={self.min_residues} max_residues={self.max_residues}; "
                             "need 1 <= min_residues <= max_residues")

    def manifest_options(self) -> dict:
        """The policy as a prepared dataset's manifest records it (``options``), under the keys that
        manifests have always used, so that a dataset prepared before the rename is still reused."""
        return {"unknown": self.unknown, "min_length": self.min_residues, "max_length": self.max_residues}


@dataclass
class ReadCounts:
    """What the readers saw. ``skipped`` and ``oddities`` count records per reason."""

    records_read: int = 0
    kept: int = 0
    residues: int = 0
    unknown_to_x: int = 0
    """Characters mapped to ``X`` by ``unknown="x"`` (one per character, not per record)."""
    duplicate_ids: int = 0
    skipped: Counter = field(default_factory=Counter)
    oddities: Counter = field(default_factory=Counter)
    seen_ids: set[str] = field(default_factory=set, repr=False)
    """Ids of kept records, to count duplicates (memory grows with unique ids, not residues)."""
    first_skipped: dict[str, str] = field(default_factory=dict, repr=False)
    """Per reason, the first record skipped for it (``record 3 ('P0A7Z4')``), for messages."""

    def skip(self, reason: str, number: int, rid: str) -> None:
        """Count record ``number`` (id ``rid``) as skipped for ``reason``."""
        self.skipped[reason] += 1
        self.first_skipped.setdefault(reason, f"record {number}" + (f" ({rid!r})" if rid else ""))

    def to_dict(self) -> dict:
        return {
            "records_read": self.records_read,
            "kept": self.kept,
            "residues": self.residues,
            "unknown_to_x": self.unknown_to_x,
            "skipped": dict(sorted(self.skipped.items())),
            "oddities": dict(sorted(self.oddities.items())),
            "duplicate_ids": self.duplicate_ids,
        }


@dataclass(frozen=True)
class UniProtFields:
    """The ``OS= OX= GN= PE= SV=`` fields of a UniProt header (``None`` when absent)."""

    os: str | None = None
    ox: int | None = None
    gn: str | None = None
    pe: int | None = None
    sv: int | None = None


def add_unknown_argument(parser) -> None:
    """``--unknown``, with the same choices, default and help in every command that reads sequences."""
    parser.add_argument("--unknown", choices=("error", "x", "skip"), default=DEFAULT_UNKNOWN,
                        help="characters that are not amino-acid codes: stop with an error (default), "
                             "map each one to X (counted in the log), or skip the record")


def parse_uniprot_fields(description: str) -> UniProtFields:
    """Parse ``... OS=Escherichia coli (strain K12) OX=83333 GN=insA9 PE=3 SV=1``."""
    parts = _UNIPROT_FIELD.split(" " + description)
    values = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}

    def as_int(key: str) -> int | None:
        value = values.get(key)
        return int(value) if value and value.isdigit() else None

    return UniProtFields(os=values.get("OS"), ox=as_int("OX"), gn=values.get("GN"), pe=as_int("PE"), sv=as_int("SV"))


@dataclass(slots=True)
class ProteinRecord:
    """One cleaned protein. ``id`` is the UniProt accession for ``>sp|ACC|NAME`` / ``>tr|…``
    headers, otherwise the first word of the header."""

    id: str
    name: str
    """UniProt entry name (``INSA9_ECOLI``); the id when the header has none."""
    description: str
    """Header text after the first word."""
    header: str
    """The full header line, without ``>``."""
    residues: bytes
    """Cleaned residues, upper-case ASCII."""
    tokens: bytes
    """``residues`` as :data:`ALPHABET` token ids (one uint8 per residue)."""
    number: int
    """1-based record number within ``source``."""
    source: Path
    uniprot: UniProtFields | None = field(default=None, repr=False)

    @property
    def sequence(self) -> str:
        return self.residues.decode("ascii")

    def token_array(self) -> np.ndarray:
        return np.frombuffer(self.tokens, dtype=np.uint8)

    def _fields(self) -> UniProtFields:
        if self.uniprot is None:  # parsed on first use: most pipelines never ask
            self.uniprot = parse_uniprot_fields(self.description)
        return self.uniprot

    @property
    def os(self) -> str | None:
        return self._fields().os

    @property
    def ox(self) -> int | None:
        return self._fields().ox

    @property
    def gn(self) -> str | None:
        return self._fields().gn

    @property
    def pe(self) -> int | None:
        return self._fields().pe

    @property
    def sv(self) -> int | None:
        return self._fields().sv

    def __len__(self) -> int:
        return len(self.tokens)


def parse_header(header: str) -> tuple[str, str, str]:
    """``(id, entry name, description)`` of a header (without ``>``)."""
    words = header.split(None, 1)
    if not words:
        return "", "", ""
    first, description = words[0], (words[1] if len(words) > 1 else "")
    if first.startswith(("sp|", "tr|")):
        parts = first.split("|")
        if len(parts) >= 3 and parts[1]:
            return parts[1], parts[2], description
    return first, first, description


class SkipRecord(Exception):
    """Raised by :func:`clean_sequence` for a record to skip; ``reason`` is its key in ``ReadCounts.skipped``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def clean_sequence(seq: bytes, policy: CleaningPolicy, counts: ReadCounts, where: tuple[Path, int, str]
                   ) -> tuple[bytes, bytes]:
    """Cleaned residues and token ids of ``seq`` (whitespace already removed); raises :class:`SkipRecord`.
    ``where`` is (file, record number, id) for error messages."""
    tokens = seq.translate(TOKEN_TABLE)
    if seq.isupper() and INVALID_TOKEN not in tokens:  # the fast path: nothing to fix
        return seq, tokens
    if not seq:
        raise SkipRecord("empty")
    seq, foreign = _one_byte_per_character(seq)
    if seq != seq.upper():
        seq = seq.upper()
        counts.oddities["lowercase"] += 1
    if seq.endswith(b"*"):
        seq = seq.rstrip(b"*")
        counts.oddities["trailing_stop"] += 1
    stripped = seq.translate(None, _GAPS)
    if len(stripped) != len(seq):
        seq = stripped
        counts.oddities["gap_chars"] += 1
    if not seq:
        raise SkipRecord("empty")
    tokens = seq.translate(TOKEN_TABLE)
    bad = tokens.find(INVALID_TOKEN)
    if bad >= 0:
        if policy.unknown == "error":
            char = foreign[seq[:bad].count(_FOREIGN)] if seq[bad] == _FOREIGN[0] else chr(seq[bad])
            file, number, rid = where
            raise ValueError(f"{file}: record {number} ({rid!r}): character {char!r} at position {bad + 1} "
                             "is not an amino-acid code; use --unknown=x to map it to X "
                             "or --unknown=skip to skip the record")
        if policy.unknown == "skip":
            raise SkipRecord("unknown_char")
        ids = np.frombuffer(tokens, dtype=np.uint8).copy()
        res = np.frombuffer(seq, dtype=np.uint8).copy()
        mask = ids == INVALID_TOKEN
        ids[mask], res[mask] = _X_ID, ord("X")
        tokens, seq = ids.tobytes(), res.tobytes()
        counts.oddities["unknown_char_to_X"] += 1
        counts.unknown_to_x += int(mask.sum())
    return seq, tokens


def _one_byte_per_character(seq: bytes) -> tuple[bytes, list[str]]:
    """``seq`` with every non-ASCII character (a UTF-8 sequence of 2-4 bytes, or an undecodable
    byte) replaced by the single invalid byte ``_FOREIGN``, so one character becomes one ``X``;
    also the replaced characters, in order (for error messages)."""
    if seq.isascii():
        return seq, []
    text = seq.decode("utf-8", "replace")
    foreign = [c for c in text if not c.isascii()]
    return "".join(c if c.isascii() else _FOREIGN_CHAR for c in text).encode("latin-1"), foreign


def accept_record(record: ProteinRecord, policy: CleaningPolicy, counts: ReadCounts) -> bool:
    """Length filters and duplicate counting; updates ``counts``."""
    n = len(record.tokens)
    if n < policy.min_residues:
        counts.skip("too_short", record.number, record.id)
        return False
    if policy.max_residues is not None and n > policy.max_residues:
        counts.skip("too_long", record.number, record.id)
        return False
    if record.id in counts.seen_ids:
        counts.duplicate_ids += 1
    else:
        counts.seen_ids.add(record.id)
    counts.kept += 1
    counts.residues += n
    return True
