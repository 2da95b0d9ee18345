"""FASTA / UniProt readers: the real E. coli proteome and every hand-made malformed input."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import numpy as np
import pytest
from Bio import SeqIO

from protein_performer.alphabet import ALPHABET
from protein_performer.corpus import fasta
from protein_performer.corpus.fasta import CleaningPolicy, ReadCounts, read_records

MALFORMED = Path(__file__).parent / "data" / "malformed"


def read(path: Path, **policy) -> tuple[list[fasta.ProteinRecord], ReadCounts]:
    counts = ReadCounts()
    return list(read_records(path, CleaningPolicy(**policy), counts)), counts


@pytest.fixture(scope="module")
def ecoli(ecoli_fasta):
    return read(ecoli_fasta)


def test_ecoli_counts(ecoli):
    records, counts = ecoli
    assert len(records) == counts.kept == counts.records_read == 4352
    assert counts.residues == sum(map(len, records)) == 1_353_365
    assert not counts.skipped and not counts.oddities and counts.duplicate_ids == 0
    tokens = np.frombuffer(b"".join(r.tokens for r in records), dtype=np.uint8)
    histogram = np.bincount(tokens, minlength=len(ALPHABET))
    assert histogram[ALPHABET.index("X")] == 8 and histogram[ALPHABET.index("U")] == 3
    assert histogram[list(ALPHABET.special_indices)].sum() == 0
    assert histogram[[ALPHABET.index(c) for c in "BZO"]].sum() == 0


def test_ecoli_matches_biopython(ecoli, ecoli_fasta):
    records, _ = ecoli
    with gzip.open(ecoli_fasta, "rt") as handle:
        reference = list(SeqIO.parse(handle, "fasta"))
    assert [r.header for r in records] == [ref.description for ref in reference]
    assert all(r.sequence == str(ref.seq) for r, ref in zip(records, reference))
    assert all(ALPHABET.decode(r.token_array()) == r.sequence for r in records[:50])
    assert [r.number for r in records[:3]] == [1, 2, 3] and records[0].source == ecoli_fasta


def test_ecoli_uniprot_fields(ecoli):
    records, _ = ecoli
    first = records[0]  # >sp|A0A385XJ53|INSA9_ECOLI Insertion element IS1 9 protein InsA OS=... SV=1
    assert (first.id, first.name) == ("A0A385XJ53", "INSA9_ECOLI")
    assert first.description.startswith("Insertion element IS1 9 protein InsA OS=")
    assert (first.os, first.ox, first.gn, first.pe, first.sv) == ("Escherichia coli (strain K12)", 83333, "insA9", 3, 1)
    assert all(r.ox == 83333 for r in records)
    assert len({r.id for r in records}) == 4352


@pytest.mark.parametrize("opener,suffix", [(bz2.open, ".bz2"), (lzma.open, ".xz"), (gzip.open, ".dat")])
def test_compression_detected_by_magic_bytes(tmp_path, opener, suffix):
    """bz2 / xz work, and a gzip file with a misleading extension is still decompressed."""
    path = tmp_path / f"x.fasta{suffix}"
    with opener(path, "wb") as fh:
        fh.write((MALFORMED / "lowercase.fasta").read_bytes())
    records, counts = read(path)
    assert [r.sequence for r in records] == ["MKVLAAGIVGKR", "MKV"]


def test_header_without_uniprot_fields():
    records, _ = read(MALFORMED / "lowercase.fasta")
    plain = records[1]
    assert (plain.id, plain.name, plain.description) == ("plain1", "plain1", "all upper")
    assert (plain.os, plain.ox, plain.gn, plain.pe, plain.sv) == (None, None, None, None, None)


# file -> unknown policy -> expected (id, sequence) list, skipped, oddities, duplicates
EXPECTED = {
    "lowercase.fasta": ([("P00001", "MKVLAAGIVGKR"), ("plain1", "MKV")], {}, {"lowercase": 1}, 0),
    "trailing_stop.fasta": ([("stop1", "MKVAAG"), ("stop2", "MKV")], {"empty": 1}, {"trailing_stop": 3}, 0),
    "gaps.fasta": ([("gap1", "MKVAAG"), ("gap2", "MKVA")], {"empty": 1}, {"gap_chars": 3}, 0),
    "empty_record.fasta": ([("full1", "MKV"), ("full2", "AC")], {"empty": 2}, {}, 0),
    "crlf.fasta": ([("crlf1", "MKVAAG"), ("crlf2", "ACDE")], {}, {"files_with_cr_line_endings": 1}, 0),
    "cr.fasta": ([("cr1", "MKVAAG"), ("cr2", "ACDE")], {}, {"files_with_cr_line_endings": 1}, 0),
    "duplicates.fasta": ([("P11111", "MKV"), ("P11111", "MKVA"), ("P22222", "AC"), ("P11111", "M")], {}, {}, 2),
    "lengths.fasta": ([("len3", "MKV"), ("len5", "MKVAA"), ("len8", "MKVAAGIV"), ("len10", "MKVAAGIVGK")], {}, {}, 0),
    "tiny.dat": ([("P99999", "MKVLAAGIVGKR"), ("P99996", "MUACDEFG")], {}, {}, 0),
    "bad_char.fasta": None,  # per-policy tests below
    "not_fasta.csv": None,
}


def test_every_malformed_file_has_an_expectation():
    assert {p.name for p in MALFORMED.iterdir() if p.name != "README.md"} == set(EXPECTED)


@pytest.mark.parametrize("name", [n for n, e in EXPECTED.items() if e is not None])
def test_malformed(name):
    expected, skipped, oddities, duplicates = EXPECTED[name]
    records, counts = read(MALFORMED / name)
    assert [(r.id, r.sequence) for r in records] == expected
    assert dict(counts.skipped) == skipped and dict(counts.oddities) == oddities
    assert counts.duplicate_ids == duplicates
    assert counts.records_read == len(expected) + sum(skipped.values())


def test_bad_char_error_names_file_record_char_and_fix():
    with pytest.raises(ValueError) as err:
        read(MALFORMED / "bad_char.fasta")
    message = str(err.value)
    for part in ("bad_char.fasta", "record 2", "'P99998'", "'J'", "position 3", "--unknown=x", "--unknown=skip"):
        assert part in message


def test_bad_char_mapped_to_x():
    records, counts = read(MALFORMED / "bad_char.fasta", unknown="x")
    assert [r.sequence for r in records] == ["MKVAAG", "MKXVAAG", "ACDEFGHIKLMNPQRSTVWY"]
    assert records[1].tokens[2] == ALPHABET.index("X")
    assert counts.oddities == {"unknown_char_to_X": 1} and not counts.skipped


def test_bad_char_skipped():
    records, counts = read(MALFORMED / "bad_char.fasta", unknown="skip")
    assert [r.id for r in records] == ["P0A7Z4", "P99997"]
    assert counts.skipped == {"unknown_char": 1} and counts.records_read == 3


def test_length_filters():
    records, counts = read(MALFORMED / "lengths.fasta", min_residues=5, max_residues=8)
    assert [r.id for r in records] == ["len5", "len8"]
    assert counts.skipped == {"too_short": 1, "too_long": 1}
    with pytest.raises(ValueError, match="length"):
        CleaningPolicy(min_residues=10, max_residues=5)


def test_not_fasta_names_the_file():
    with pytest.raises(ValueError, match=r"not_fasta\.csv: not a FASTA file.*'ID,sequence'"):
        read(MALFORMED / "not_fasta.csv")


def test_binary_and_empty_files(tmp_path):
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(ValueError, match=r"image\.png: binary data"):
        read(binary)
    empty = tmp_path / "empty.fasta"
    empty.write_bytes(b"\n\n")
    with pytest.raises(ValueError, match=r"empty\.fasta: empty file"):
        read(empty)
    with pytest.raises(FileNotFoundError, match="missing.fasta"):
        read(tmp_path / "missing.fasta")


def test_truncated_gzip_names_the_file(tmp_path, ecoli_fasta):
    data = ecoli_fasta.read_bytes()
    cut = tmp_path / "cut.fasta.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.fasta\.gz: compressed data is truncated or corrupt"):
        read(cut)
    assert fasta.count_fasta_records(ecoli_fasta) == 4352


def test_records_spanning_chunks_and_cr_at_chunk_edge(tmp_path, monkeypatch):
    """Tiny chunks: every record and every \\r\\n straddles a chunk boundary."""
    monkeypatch.setattr(fasta, "CHUNK_SIZE", 7)
    text = b"".join(b">p%d desc\r\n%s\r\n%s\r\n" % (i, b"ACDEFGHIKL"[: i % 10 + 1], b"MKV") for i in range(40))
    path = tmp_path / "chunks.fasta"
    path.write_bytes(text)
    records, counts = read(path)
    assert [r.id for r in records] == [f"p{i}" for i in range(40)]
    assert all(r.sequence == "ACDEFGHIKL"[: i % 10 + 1] + "MKV" for i, r in enumerate(records))
    assert all(r.description == "desc" for r in records)


def test_swiss_fields():
    records, _ = read(MALFORMED / "tiny.dat")
    first = records[0]
    assert (first.id, first.name) == ("P99999", "TSTA_ECOLI")
    assert (first.os, first.ox, first.gn, first.pe, first.sv) == ("Escherichia coli (strain K12)", 83333, "tstA", 1, 2)
    assert records[1].pe == 3 and records[1].sv == 1


def test_forced_format_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"lengths\.fasta: .*not a valid UniProt flat file.*--format fasta"):
        list(read_records(MALFORMED / "lengths.fasta", format="swiss"))
    with pytest.raises(ValueError, match=r"tiny\.dat: not a FASTA file.*--format swiss"):
        list(read_records(MALFORMED / "tiny.dat", format="fasta"))
