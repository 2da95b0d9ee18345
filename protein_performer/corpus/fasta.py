"""Streaming readers for protein sequence files: FASTA and UniProt (Swiss-Prot) flat files.

No torch. Files may be plain, gzip, bzip2 or xz compressed (detected by magic bytes, not by
extension). FASTA is parsed by a byte-level reader that works on ~1 MiB chunks and uses
``bytes.translate`` with the :data:`~protein_performer.alphabet.ALPHABET` lookup table, so
there is no per-residue Python loop and memory stays bounded by the chunk plus the longest
record. UniProt ``.dat`` files go through Biopython's ``SeqIO.parse(handle, "swiss")``.

Every record passes through one :class:`CleaningPolicy`; every oddity it fixes and every
record it skips is counted per reason in a :class:`ReadCounts` (nothing is dropped silently).
Those, :class:`ProteinRecord` and header parsing are defined in :mod:`.records` and importable
from here::

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
import shutil
import sys
import tempfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Literal

# The record types, the cleaning policy and header parsing live in records.py; they are re-exported
# here because every caller reads them together with the readers.
from protein_performer.corpus.records import (
    DEFAULT_UNKNOWN,
    INVALID_TOKEN,
    TOKEN_TABLE,
    WHITESPACE,
    CleaningPolicy,
    ProteinRecord,
    ReadCounts,
    SkipRecord,
    UniProtFields,
    UnknownPolicy,
    accept_record,
    add_unknown_argument,
    clean_sequence,
    parse_header,
    parse_uniprot_fields,
)

__all__ = [
    "CHUNK_SIZE", "DEFAULT_UNKNOWN", "CleaningPolicy", "Format", "ProteinRecord", "ReadCounts", "UniProtFields",
    "UnknownPolicy", "add_unknown_argument", "compression_of", "count_fasta_records", "input_file", "open_binary",
    "parse_uniprot_fields", "read_fasta", "read_records", "read_swiss", "sniff_format",
]

CHUNK_SIZE = 1 << 20
Format = Literal["auto", "fasta", "swiss"]

_MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz"}
UTF8_BOM = b"\xef\xbb\xbf"
"""The byte-order mark some editors (Notepad, Excel exports) put first in a UTF-8 file: skipped."""
_DECOMPRESS_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError, OSError)


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
    first = head.removeprefix(UTF8_BOM).lstrip()
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
                    buf = buf.removeprefix(UTF8_BOM).lstrip()
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


def read_fasta(path: Path, policy: CleaningPolicy = CleaningPolicy(), counts: ReadCounts | None = None
               ) -> Iterator[ProteinRecord]:
    """Stream cleaned records of a (compressed) FASTA file; oddities go to ``counts``.

    The loop is the hot path of ``prepare``: the common case (an upper-case record of valid
    codes) costs a few bytes methods and no per-residue Python work.
    """
    path = Path(path)
    counts = ReadCounts() if counts is None else counts
    seen = counts.seen_ids
    min_residues, max_residues = policy.min_residues, policy.max_residues or sys.maxsize
    number = 0
    for block in _raw_fasta(path, counts):
        for raw in block:
            number += 1
            counts.records_read += 1
            head, _, body = raw.partition(b"\n")
            header = head.decode("utf-8", "replace").strip()
            rid, name, description = parse_header(header)
            if not rid:
                counts.skip("no_id", number, rid)
                continue
            seq = body.translate(None, WHITESPACE)
            tokens = seq.translate(TOKEN_TABLE)
            if not (seq.isupper() and INVALID_TOKEN not in tokens):
                try:
                    seq, tokens = clean_sequence(seq, policy, counts, (path, number, rid))
                except SkipRecord as skip:
                    counts.skip(skip.reason, number, rid)
                    continue
            n = len(tokens)
            if n < min_residues:
                counts.skip("too_short", number, rid)
                continue
            if n > max_residues:
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
                residues, tokens = clean_sequence(str(rec.seq).encode("utf-8").translate(None, WHITESPACE),
                                          policy, counts, (path, number, rec.id))
            except SkipRecord as skip:
                counts.skip(skip.reason, number, rec.id)
                continue
            record = ProteinRecord(rec.id, rec.name, rec.description, f"{rec.name} {rec.description}",
                                   residues, tokens, number, path, _swiss_fields(rec.annotations))
            if accept_record(record, policy, counts):
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
