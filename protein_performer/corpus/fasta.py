"""Streaming readers for protein sequence files: FASTA and UniProt (Swiss-Prot) flat files.

No torch. Files may be plain, gzip, bzip2 or xz compressed (detected by magic bytes, not by
extension). FASTA is parsed by a byte-level reader that works on ~1 MiB chunks and uses
``bytes.translate`` with the :data:`~protein_performer.alphabet.ALPHABET` lookup table, so
there is no per-residue Python loop and memory stays bounded by the chunk plus the longest
record. UniProt ``.dat`` files go through Biopython's ``SeqIO.parse(handle, "swiss")``.

Every record passes through one :class:`CleaningPolicy`; every oddity it fixes and every
record it skips is counted per reason in a :class:`ReadCounts` (nothing is dropped silently)::

    counts = ReadCounts()
    for rec in read_records(Path("UP000000625_83333.fasta.gz"), CleaningPolicy(unknown="x"), counts):
        rec.id, rec.tokens            # 'P0A7Z4', uint8 token ids as bytes
    counts.skipped, counts.oddities   # Counter({'empty': 1}), Counter({'lowercase': 2})
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import shutil
import sys
import tempfile
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator, Literal

import numpy as np

from protein_performer.alphabet import ALPHABET

CHUNK_SIZE = 1 << 20
UnknownPolicy = Literal["error", "x", "skip"]
DEFAULT_UNKNOWN: UnknownPolicy = "error"
"""The ``--unknown`` default of every command that reads sequences (prepare, embed, score, similarity)."""
Format = Literal["auto", "fasta", "swiss"]

_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz"}
_WHITESPACE = b" \t\n\r\x0b\x0c"
_GAPS = b"-."
_INVALID = 255
_TOKEN_TABLE = bytes(ALPHABET.lookup_table)  # byte -> token id, 255 for anything else
_X_ID = ALPHABET.index("X")
_FOREIGN_CHAR = "\x80"  # stands for one non-ASCII character while cleaning (never a valid code)
_FOREIGN = _FOREIGN_CHAR.encode("latin-1")
_UNIPROT_FIELD = re.compile(r"\s(OS|OX|GN|PE|SV)=")
_DECOMPRESS_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError, OSError)


@dataclass(frozen=True)
class CleaningPolicy:
    """How raw sequences are cleaned. Lowercase is upper-cased, a trailing ``*`` and the gap
    characters ``-`` / ``.`` are removed (each counted as an oddity)."""

    unknown: UnknownPolicy = DEFAULT_UNKNOWN
    """A character that is no amino-acid code: ``error`` (stop, naming file, record and
    position), ``x`` (map it to ``X``) or ``skip`` (skip the record)."""
    min_length: int = 1
    """Skip records shorter than this (after cleaning)."""
    max_length: int | None = None
    """Skip records longer than this (after cleaning); ``None``: no limit."""

    def __post_init__(self) -> None:
        if self.unknown not in ("error", "x", "skip"):
            raise ValueError(f"unknown={self.unknown!r}; expected 'error', 'x' or 'skip'")
        if self.min_length < 1 or (self.max_length is not None and self.max_length < self.min_length):
            raise ValueError(f"bad length limits min_length={self.min_length} max_length={self.max_length}; "
                             "need 1 <= min_length <= max_length")


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


# ---------------------------------------------------------------------------------------------
# Opening files


def compression_of(path: Path) -> str | None:
    """``gzip`` / ``bz2`` / ``xz`` from the file's magic bytes, ``None`` for plain files."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    if head.startswith(b"PK\x03\x04"):
        raise ValueError(f"{path}: a zip archive, not a sequence file; unzip it and pass the FASTA inside")
    return None


def open_binary(path: Path) -> BinaryIO:
    """Open ``path`` for reading decompressed bytes (compression detected by magic bytes)."""
    kind = compression_of(path)
    if kind == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if kind == "bz2":
        return bz2.open(path, "rb")  # type: ignore[return-value]
    if kind == "xz":
        return lzma.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _corrupt(path: Path, err: BaseException) -> ValueError:
    return ValueError(f"{path}: compressed data is truncated or corrupt ({type(err).__name__}: {err}); "
                      "download or copy the file again")


def sniff_format(path: Path) -> Literal["fasta", "swiss"]:
    """``fasta`` when the first non-blank line starts with ``>``, ``swiss`` for ``ID   …``."""
    try:
        with open_binary(path) as fh:
            head = fh.read(4096)
    except _DECOMPRESS_ERRORS as err:
        raise _corrupt(path, err) from err
    _check_text(path, head)
    first = head.lstrip()
    if first.startswith(b">"):
        return "fasta"
    if first.startswith(b"ID   "):
        return "swiss"
    raise _not_fasta(path, head)


def _check_text(path: Path, head: bytes) -> None:
    if b"\x00" in head:
        raise ValueError(f"{path}: binary data, not a FASTA or UniProt text file; pass a .fasta(.gz) or .dat(.gz) file")


def _not_fasta(path: Path, head: bytes) -> ValueError:
    line = head.lstrip().splitlines()[0][:60] if head.strip() else b""
    if not line:
        return ValueError(f"{path}: empty file, no FASTA records; check the path or the download")
    return ValueError(f"{path}: not a FASTA file: the first line {line.decode('ascii', 'replace')!r} does not start "
                      "with '>'; pass FASTA (or a UniProt .dat file with --format swiss)")


# ---------------------------------------------------------------------------------------------
# Cleaning


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _clean(seq: bytes, policy: CleaningPolicy, counts: ReadCounts, where: tuple[Path, int, str]
           ) -> tuple[bytes, bytes]:
    """Cleaned residues and token ids of ``seq`` (whitespace already removed); raises ``_Skip``.
    ``where`` is (file, record number, id) for error messages."""
    tokens = seq.translate(_TOKEN_TABLE)
    if seq.isupper() and _INVALID not in tokens:  # the fast path: nothing to fix
        return seq, tokens
    if not seq:
        raise _Skip("empty")
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
        raise _Skip("empty")
    tokens = seq.translate(_TOKEN_TABLE)
    bad = tokens.find(_INVALID)
    if bad >= 0:
        if policy.unknown == "error":
            char = foreign[seq[:bad].count(_FOREIGN)] if seq[bad] == _FOREIGN[0] else chr(seq[bad])
            file, number, rid = where
            raise ValueError(f"{file}: record {number} ({rid!r}): character {char!r} at position {bad + 1} "
                             "is not an amino-acid code; use --unknown=x to map it to X "
                             "or --unknown=skip to skip the record")
        if policy.unknown == "skip":
            raise _Skip("unknown_char")
        ids = np.frombuffer(tokens, dtype=np.uint8).copy()
        res = np.frombuffer(seq, dtype=np.uint8).copy()
        mask = ids == _INVALID
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


def _accept(record: ProteinRecord, policy: CleaningPolicy, counts: ReadCounts) -> bool:
    """Length filters and duplicate counting; updates ``counts``."""
    n = len(record.tokens)
    if n < policy.min_length:
        counts.skip("too_short", record.number, record.id)
        return False
    if policy.max_length is not None and n > policy.max_length:
        counts.skip("too_long", record.number, record.id)
        return False
    if record.id in counts.seen_ids:
        counts.duplicate_ids += 1
    else:
        counts.seen_ids.add(record.id)
    counts.kept += 1
    counts.residues += n
    return True


# ---------------------------------------------------------------------------------------------
# FASTA


def _raw_fasta(path: Path, counts: ReadCounts) -> Iterator[list[bytes]]:
    """Yield lists of records (header line, newline, sequence lines; no leading ``>``), one list
    per chunk of the decompressed file."""
    try:
        with open_binary(path) as fh:
            carry = b""
            first = True
            saw_cr = False
            while True:
                chunk = fh.read(CHUNK_SIZE)
                eof = not chunk
                buf = carry + chunk
                if first:
                    _check_text(path, buf[:4096])
                    buf = buf.lstrip()
                    if not buf and not eof:
                        continue
                    if not buf.startswith(b">"):
                        raise _not_fasta(path, buf[:4096])
                    first = False
                if not eof and buf.endswith(b"\r"):  # a \r\n may straddle two chunks
                    buf, chunk_tail = buf[:-1], b"\r"
                else:
                    chunk_tail = b""
                if b"\r" in buf:
                    saw_cr = True
                    buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                if eof:
                    if buf:
                        yield buf[1:].split(b"\n>")
                    break
                cut = buf.rfind(b"\n>")
                if cut < 0:
                    carry = buf + chunk_tail
                    continue
                yield buf[1:cut].split(b"\n>")
                carry = buf[cut + 1 :] + chunk_tail
            if saw_cr:
                counts.oddities["files_with_cr_line_endings"] += 1
    except _DECOMPRESS_ERRORS as err:
        raise _corrupt(path, err) from err


def _parse_header(header: str) -> tuple[str, str, str]:
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


def read_fasta(path: Path, policy: CleaningPolicy = CleaningPolicy(), counts: ReadCounts | None = None
               ) -> Iterator[ProteinRecord]:
    """Stream cleaned records of a (compressed) FASTA file; oddities go to ``counts``.

    The loop is the hot path of ``prepare``: the common case (an upper-case record of valid
    codes) costs a few bytes methods and no per-residue Python work.
    """
    path = Path(path)
    counts = ReadCounts() if counts is None else counts
    seen = counts.seen_ids
    min_length, max_length = policy.min_length, policy.max_length or sys.maxsize
    number = 0
    for block in _raw_fasta(path, counts):
        for raw in block:
            number += 1
            counts.records_read += 1
            head, _, body = raw.partition(b"\n")
            header = head.decode("utf-8", "replace").strip()
            rid, name, description = _parse_header(header)
            if not rid:
                counts.skip("no_id", number, rid)
                continue
            seq = body.translate(None, _WHITESPACE)
            tokens = seq.translate(_TOKEN_TABLE)
            if not (seq.isupper() and _INVALID not in tokens):
                try:
                    seq, tokens = _clean(seq, policy, counts, (path, number, rid))
                except _Skip as skip:
                    counts.skip(skip.reason, number, rid)
                    continue
            n = len(tokens)
            if n < min_length:
                counts.skip("too_short", number, rid)
                continue
            if n > max_length:
                counts.skip("too_long", number, rid)
                continue
            if rid in seen:
                counts.duplicate_ids += 1
            else:
                seen.add(rid)
            counts.kept += 1
            counts.residues += n
            yield ProteinRecord(rid, name, description, header, seq, tokens, number, path)


# ---------------------------------------------------------------------------------------------
# UniProt flat files


def read_swiss(path: Path, policy: CleaningPolicy = CleaningPolicy(), counts: ReadCounts | None = None
               ) -> Iterator[ProteinRecord]:
    """Stream cleaned records of a UniProt/Swiss-Prot flat file (``.dat``), via Biopython."""
    from Bio import SeqIO

    path = Path(path)
    counts = ReadCounts() if counts is None else counts
    with open_binary(path) as fh, io.TextIOWrapper(fh, encoding="utf-8", errors="replace") as text:
        records = SeqIO.parse(text, "swiss")
        number = 0
        while True:
            try:
                rec = next(records)
            except StopIteration:
                break
            except _DECOMPRESS_ERRORS as err:
                raise _corrupt(path, err) from err
            except ValueError as err:
                raise ValueError(f"{path}: after record {number}: not a valid UniProt flat file ({err}); "
                                 "check the file or use --format fasta") from err
            number += 1
            counts.records_read += 1
            try:
                residues, tokens = _clean(str(rec.seq).encode("utf-8").translate(None, _WHITESPACE),
                                          policy, counts, (path, number, rec.id))
            except _Skip as skip:
                counts.skip(skip.reason, number, rec.id)
                continue
            record = ProteinRecord(rec.id, rec.name, rec.description, f"{rec.name} {rec.description}",
                                   residues, tokens, number, path, _swiss_fields(rec.annotations))
            if _accept(record, policy, counts):
                yield record


def _swiss_fields(ann: dict) -> UniProtFields:
    taxid = ann.get("ncbi_taxid") or [None]
    genes = ann.get("gene_name") or []
    gene = genes[0].get("Name") if genes and isinstance(genes[0], dict) else None
    organism = (ann.get("organism") or "").rstrip(".") or None
    pe, sv = ann.get("protein_existence"), ann.get("sequence_version")
    return UniProtFields(os=organism, ox=int(taxid[0]) if taxid[0] else None, gn=gene,
                         pe=int(pe) if pe not in (None, "") else None, sv=int(sv) if sv not in (None, "") else None)


def read_records(path: Path, policy: CleaningPolicy = CleaningPolicy(), counts: ReadCounts | None = None,
                 format: Format = "auto") -> Iterator[ProteinRecord]:
    """Stream records of a FASTA or UniProt flat file; ``format="auto"`` sniffs the content."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise ValueError(f"{path}: not a regular file (a folder, a pipe or standard input); this command reads "
                         "files only: save the sequences to a file and pass that")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    kind = sniff_format(path) if format == "auto" else format
    if kind == "fasta":
        return read_fasta(path, policy, counts)
    if kind == "swiss":
        return read_swiss(path, policy, counts)
    raise ValueError(f"format={format!r}; expected 'auto', 'fasta' or 'swiss'")


@contextmanager
def input_file(path: Path) -> Iterator[Path]:
    """``path`` itself when it is a regular file; for ``-`` (standard input) and pipes such as
    ``/dev/stdin`` a temporary copy of what they hold, removed afterwards (the readers open a file
    more than once: to detect compression and format, then to read it)."""
    path = Path(path)
    if str(path) != "-" and (path.is_file() or not path.exists()):
        yield path
        return
    if path.is_dir():
        raise ValueError(f"{path}: a folder, not a sequence file")
    with tempfile.NamedTemporaryFile(prefix="protein_performer_stdin_", suffix=".fasta") as copy:
        if str(path) == "-":
            shutil.copyfileobj(sys.stdin.buffer, copy, CHUNK_SIZE)
        else:
            with open(path, "rb") as source:
                shutil.copyfileobj(source, copy, CHUNK_SIZE)
        copy.flush()
        yield Path(copy.name)


def count_fasta_records(path: Path) -> int:
    """Number of records of a (compressed) FASTA file, without cleaning (for download checks)."""
    return sum(len(block) for block in _raw_fasta(Path(path), ReadCounts()))
