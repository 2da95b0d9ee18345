"""``protein-performer homologs`` on the real E. coli proteome: OmpR (P0AA16) finds its
two-component response-regulator paralogs, and the A3M keeps the query's coordinates."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

pytest.importorskip("pyhmmer")

from protein_performer.cli import main
from protein_performer.corpus.fasta import read_records
from protein_performer.corpus.homologs import (
    SearchOptions,
    a3m_row,
    match_states,
    read_database,
    read_query,
    search_homologs,
)

QUERY = "P0AA16"  # OmpR
PARALOGS = {  # OmpR/PhoB-family response regulators of E. coli K-12
    "P0AFJ5": "PhoB", "P0AE88": "CpxR", "P69228": "BaeR", "P0ACZ8": "CusR", "P0A9Q1": "ArcA",
    "P21866": "KdpE", "P23836": "PhoP", "P30843": "BasR", "P52076": "QseB", "P38684": "TorR",
}
UNRELATED = {"P68187": "MalK", "P0A7Z4": "RpoA", "P0A6F5": "GroEL"}


def read_a3m(path: Path) -> list[tuple[str, str]]:
    records, header = [], None
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            header = line[1:]
        else:
            records.append((header, line))
    return records


def accession(header: str) -> str:
    return header.split("|")[1]


@pytest.fixture(scope="module")
def ecoli(ecoli_fasta):
    """{accession: record} of the proteome."""
    return {r.id: r for r in read_records(ecoli_fasta)}


@pytest.fixture(scope="module")
def query_fasta(ecoli, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("query") / "ompr.fasta"
    record = ecoli[QUERY]
    path.write_text(f">{record.header}\n{record.sequence.lower()}\n")  # lower case is read as upper
    return path


@pytest.fixture(scope="module")
def family(query_fasta, ecoli_fasta, tmp_path_factory) -> Path:
    """The A3M of the default command (3 iterations, E < 1e-3) against the gzip proteome."""
    out = tmp_path_factory.mktemp("family") / "ompr.a3m"
    assert main(["homologs", "--fasta", str(query_fasta), "--db", str(ecoli_fasta), "--out", str(out)]) == 0
    return out


def test_a3m_row_places_matches_insertions_and_flanks():
    # Model of 8 match states; the domain spans states 2-6, inserts "MN" after state 3 and skips state 4.
    row = a3m_row(2, 6, "AC..DEf", "KLMN-QR", model_length=8)
    assert row == "-KLmn-QR--"
    assert match_states(row) == "-KL-QR--" and len(match_states(row)) == 8
    with pytest.raises(ValueError, match="differ in length"):
        a3m_row(1, 2, "AC", "K", model_length=2)
    with pytest.raises(ValueError, match="not within"):
        a3m_row(2, 9, "AC", "KL", model_length=8)


def test_cli_finds_ompr_paralogs(family, ecoli):
    records = read_a3m(family)
    assert records[0] == ("sp|P0AA16|OMPR_ECOLI", ecoli[QUERY].sequence)  # query first, full, upper case
    found = {accession(h) for h, _ in records[1:]}
    assert set(PARALOGS) <= found, {PARALOGS[a] for a in set(PARALOGS) - found}
    assert not found & set(UNRELATED)
    assert QUERY not in found  # the query's own entry is not repeated
    assert len(records) > 20


def test_every_row_is_aligned_to_the_query(family, ecoli):
    (_, query), *hits = read_a3m(family)
    evalues = []
    for header, row in hits:
        match = re.fullmatch(r"(\S+)/(\d+)-(\d+) E=(\S+)", header)
        assert match, header
        name, start, end, evalue = match.group(1), int(match.group(2)), int(match.group(3)), float(match.group(4))
        assert len(match_states(row)) == len(query), header
        assert set(row) <= set("ACDEFGHIKLMNPQRSTVWYXBZUO-acdefghiklmnpqrstvwyxbzuo"), header
        # The row's residues are the hit's residues start..end, in order.
        assert row.replace("-", "").upper() == ecoli[accession(name)].sequence[start - 1:end], header
        evalues.append(evalue)
    assert evalues == sorted(evalues) and evalues[-1] < 1e-3


def test_max_seqs_keeps_the_best_hits(family, query_fasta, ecoli_fasta):
    full = [h for h, _ in read_a3m(family)[1:]]
    search = search_homologs(read_query(query_fasta), read_database(ecoli_fasta), SearchOptions(max_seqs=5))
    assert [h.header for h in search.homologs] == full[:5]
    assert search.over_cap == len(full) - 5 and search.copies_of_query == 1
    assert [c.iteration for c in search.iterations] == list(range(1, len(search.iterations) + 1))


def test_overwrite_is_needed_to_replace_the_output(family, query_fasta, ecoli_fasta, tmp_path, capsys):
    out = tmp_path / "ompr.a3m"
    out.write_text(family.read_text())
    argv = ["homologs", "--fasta", str(query_fasta), "--db", str(ecoli_fasta), "--out", str(out), "--max-seqs", "3"]
    assert main(argv) == 1
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == family.read_text()
    assert main([*argv, "--overwrite", "--iterations", "1"]) == 0
    assert len(read_a3m(out)) == 4 and not list(tmp_path.glob(".*tmp*"))


def test_no_homolog_writes_the_query_alone(ecoli, query_fasta, tmp_path, caplog):
    db = tmp_path / "unrelated.fasta"  # plain FASTA: the query itself and proteins unlike it
    db.write_text("".join(f">{ecoli[a].header}\n{ecoli[a].sequence}\n" for a in [QUERY, *UNRELATED]))
    out = tmp_path / "alone.a3m"
    with caplog.at_level(logging.WARNING):
        assert main(["homologs", "--fasta", str(query_fasta), "--db", str(db), "--out", str(out)]) == 0
    assert [h for h, _ in read_a3m(out)] == ["sp|P0AA16|OMPR_ECOLI"]
    assert "no homolog" in caplog.text


@pytest.mark.parametrize("text, message", [
    (None, "no such file"),
    ("", "empty file"),
    (">q\n\n>r\nMKT\n", "first record has no usable query sequence"),
    (">q\nMKTJLV\n", "character 'J' at position 4 is not an amino-acid code"),
])
def test_bad_query_names_the_file(tmp_path, text, message):
    path = tmp_path / "query.fasta"
    if text is not None:
        path.write_text(text)
    with pytest.raises((ValueError, FileNotFoundError), match=re.escape(str(path)) + ".*" + re.escape(message)):
        read_query(path)


def test_bad_db_and_options_are_refused(query_fasta, tmp_path, capsys):
    empty = tmp_path / "empty.fasta.gz"
    empty.write_bytes(b"")
    assert main(["homologs", "--fasta", str(query_fasta), "--db", str(empty), "--out", str(tmp_path / "x.a3m")]) == 1
    assert f"{empty}: empty file" in capsys.readouterr().err
    headers_only = tmp_path / "headers.fasta"
    headers_only.write_text(">a\n>b\n")
    with pytest.raises(ValueError, match=re.escape(str(headers_only)) + ".*no sequences"):
        read_database(headers_only)
    for bad, flag in [({"iterations": 0}, "--iterations"), ({"evalue": 0.0}, "--evalue"),
                      ({"max_seqs": 0}, "--max-seqs"), ({"cpus": -1}, "--cpus")]:
        with pytest.raises(ValueError, match=flag):
            SearchOptions(**bad)
    assert not (tmp_path / "x.a3m").exists()
