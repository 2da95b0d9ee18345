"""``protein-performer homologs``: find a protein's homologs with jackhmmer (pyhmmer) and write an A3M.

The query (the first record of ``--query``) is searched against ``--db`` (FASTA or UniProt
``.dat``, plain or compressed, read by :func:`~protein_performer.corpus.fasta.read_records` and
held in memory as one digitised block) by ``pyhmmer.hmmer.jackhmmer`` for at most
``--iterations`` rounds. A hit is included (and shapes the next round's profile) when its
E-value is below ``--evalue`` (HMMER's ``incE``; ``E``, the reporting threshold, is the same).
The last round's included hits, sorted by E-value and capped at ``--max-seqs``, become the A3M::

    >sp|P0AA16|OMPR_ECOLI                the query: its FASTA id and full sequence
    MQENYKILVVDDDMRLRALLERYLTEQGFQVRSVANAEQMDRLLTRESFHLMVLDLMLPGEDGLSICRRLRSQSNPMPIIMVTAKGEEVDR...
    >sp|P0AFJ5|PHOB_ECOLI/4-226 E=4e-83  a hit: residues 4-226 of PhoB (its best domain)
    -----RILVVEDEAPIREMVCFVLEQNGFQPVEAEDYDSAVNQLNEPWPDLILLDWMLPGGSGIQFIKHLKRESmtRDIPVVMLTARGEEEDR...

Every hit row is aligned to the query: one upper-case residue or ``-`` per query position (so
each row has exactly ``len(query)`` of them) and lower-case residues where the hit inserts
between two query positions. Residues of the hit outside its best domain are left out, so the
query positions before and after the domain are ``-``. jackhmmer builds each round's profile
with the "hand" architecture on the previous round's consensus columns, so match state ``k`` is
query position ``k`` in every round; both the model length and every row are checked.

Choices: a hit whose whole sequence is the query's (the query's own entry in ``--db``, or an
exact copy) is not repeated. When nothing else is found the A3M holds the query alone and a warning
says so: an orphan protein is a result, and a one-sequence A3M is valid input downstream. Only
each hit's best domain is written (a second copy of a repeat is not a second row). pyhmmer
parallelises over queries, so one query runs on one thread whatever ``--cpus`` says.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from protein_performer.corpus.fasta import (
    CleaningPolicy,
    ProteinRecord,
    ReadCounts,
    add_unknown_argument,
    read_records,
)
from protein_performer.outputs import check_output

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchOptions:
    """How jackhmmer searches (each field is the command-line flag of the same name)."""

    iterations: int = 3
    """Most jackhmmer rounds (fewer when the search converges)."""
    evalue: float = 1e-3
    """Inclusion (and reporting) E-value threshold of a hit."""
    max_seqs: int | None = None
    """Most hits written after the query (the lowest E-values); ``None``: all included hits."""
    cpus: int = 1
    """pyhmmer threads (0: all cores); one query uses one."""

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"--iterations {self.iterations}: need at least 1 jackhmmer round")
        if not self.evalue > 0:
            raise ValueError(f"--evalue {self.evalue}: the E-value threshold must be positive, e.g. 1e-3")
        if self.max_seqs is not None and self.max_seqs < 1:
            raise ValueError(f"--max-seqs {self.max_seqs}: need at least 1 (leave it out to keep every hit)")
        if self.cpus < 0:
            raise ValueError(f"--cpus {self.cpus}: need 0 (all cores) or a positive number of threads")


@dataclass(frozen=True)
class Homolog:
    """One hit, as an A3M record."""

    name: str
    start: int
    """First residue of the hit's best domain (1-based, in the hit's own sequence)."""
    end: int
    """Last residue of that domain (inclusive)."""
    evalue: float
    row: str
    """The domain aligned to the query (upper case and ``-``: query positions; lower case: insertions)."""

    @property
    def header(self) -> str:
        return f"{self.name}/{self.start}-{self.end} E={self.evalue:.2g}"


@dataclass(frozen=True)
class IterationCount:
    iteration: int
    hits: int
    """Hits reported (E-value below the threshold)."""
    included: int
    """Hits included in the profile (the sequence and its domain pass the inclusion thresholds)."""


@dataclass(frozen=True)
class HomologSearch:
    """What :func:`search_homologs` found: the query and its homologs, best first."""

    query_name: str
    query: str
    homologs: list[Homolog]
    iterations: list[IterationCount]
    converged: bool
    copies_of_query: int
    """Included hits left out because their sequence is the query's."""
    over_cap: int
    """Included hits left out by ``max_seqs``."""

    def to_a3m(self) -> str:
        records = [(self.query_name, self.query), *((h.header, h.row) for h in self.homologs)]
        return "".join(f">{header}\n{row}\n" for header, row in records)


# ---------------------------------------------------------------------------------------------
# A3M rows


def match_states(row: str) -> str:
    """The characters of an A3M row at query positions (upper case and ``-``; insertions dropped)."""
    return "".join(c for c in row if c == "-" or c.isupper())


def a3m_row(hmm_from: int, hmm_to: int, hmm_line: str, target_line: str, model_length: int) -> str:
    """A hit's domain as an A3M row over a model of ``model_length`` match states.

    ``hmm_from``/``hmm_to`` (1-based, inclusive) are the domain's first and last match states;
    ``hmm_line`` and ``target_line`` are the two aligned lines of HMMER's alignment display, where
    ``.`` in ``hmm_line`` is a residue the target inserts and ``-`` in ``target_line`` a match
    state the target skips. Match columns become upper case or ``-``, inserted residues lower case,
    and the match states outside ``hmm_from..hmm_to`` are ``-``.
    """
    if len(hmm_line) != len(target_line):
        raise ValueError(f"alignment lines differ in length ({len(hmm_line)} vs {len(target_line)})")
    if not 1 <= hmm_from <= hmm_to <= model_length:
        raise ValueError(f"domain {hmm_from}-{hmm_to} is not within the model's {model_length} match states")
    body = "".join(t.lower() if h == "." else t.upper() for h, t in zip(hmm_line, target_line))
    return "-" * (hmm_from - 1) + body + "-" * (model_length - hmm_to)


# ---------------------------------------------------------------------------------------------
# Inputs


def sequence_name(record: ProteinRecord) -> str:
    """The record's FASTA id: the first word of its header (``sp|P0AA16|OMPR_ECOLI``)."""
    words = record.header.split(None, 1)
    return words[0] if words else record.id


def read_query(path: Path, policy: CleaningPolicy | None = None) -> ProteinRecord:
    """The first record of ``path``; warns when more follow."""
    path, policy = Path(path), policy or CleaningPolicy()
    if not path.is_file():
        raise FileNotFoundError(f"--query {path}: no such file; give the query protein as a FASTA file")
    counts = ReadCounts()
    records = list(itertools.islice(read_records(path, policy, counts), 2))
    if not records or records[0].number != 1:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(counts.skipped.items())) or "no sequence"
        raise ValueError(f"{path}: the first record has no usable query sequence ({reasons}); "
                         "put the query protein first, as a FASTA record with its residues")
    if len(records) > 1:
        log.warning("%s holds more than one record; the first (%s) is the query", path, records[0].id)
    return records[0]


def read_database(path: Path, policy: CleaningPolicy | None = None, flag: str = "--db") -> list[ProteinRecord]:
    """Every record of ``path`` (FASTA or UniProt ``.dat``, plain or compressed); errors name ``flag``,
    the option that gave ``path``."""
    path, policy = Path(path), policy or CleaningPolicy()
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path}: no such file; give the sequences as a FASTA file")
    counts = ReadCounts()
    records = list(read_records(path, policy, counts))
    if not records:
        raise ValueError(f"{path}: no sequences (read {counts.records_read} records, skipped "
                         f"{dict(counts.skipped)}); pass a FASTA file of proteins as {flag}")
    log.info("%s: %d sequences, %d residues%s", path, len(records), counts.residues,
             f" (skipped {dict(counts.skipped)})" if counts.skipped else "")
    return records


# ---------------------------------------------------------------------------------------------
# The search


def _pyhmmer():
    try:
        import pyhmmer
    except ImportError as err:
        raise RuntimeError("pyhmmer is not installed; `pip install pyhmmer` to run protein-performer homologs") from err
    return pyhmmer


def _digitise(record: ProteinRecord, accession: str = ""):
    pyhmmer = _pyhmmer()
    return pyhmmer.easel.TextSequence(name=sequence_name(record), accession=accession,
                                      sequence=record.sequence).digitize(pyhmmer.easel.Alphabet.amino())


def digitise_database(database: Sequence[ProteinRecord]):
    """``database`` as one pyhmmer ``DigitalSequenceBlock`` (what :func:`search_homologs` searches);
    build it once to search it with many queries. Each sequence's accession is its index in
    ``database``: a hit is told by it, not by its name (names may repeat)."""
    pyhmmer = _pyhmmer()
    return pyhmmer.easel.DigitalSequenceBlock(pyhmmer.easel.Alphabet.amino(),
                                              [_digitise(r, str(i)) for i, r in enumerate(database)])


def _target_index(hit) -> int:
    """The index in the database of a hit's sequence (its accession, set by :func:`digitise_database`)."""
    accession = hit.accession.decode() if isinstance(hit.accession, bytes) else hit.accession
    if not (accession or "").isdigit():
        raise ValueError("targets must be built by digitise_database (each accession its index in the database)")
    return int(accession)


def search_homologs(query: ProteinRecord, database: Sequence[ProteinRecord],
                    options: SearchOptions | None = None, *, targets=None) -> HomologSearch:
    """Run jackhmmer with ``query`` against ``database``; the last round's included hits, best first.
    ``targets``: ``database`` already digitised (:func:`digitise_database`)."""
    return next(search_many([query], database, options, targets=targets))


def search_many(queries: Sequence[ProteinRecord], database: Sequence[ProteinRecord],
                options: SearchOptions | None = None, *, targets=None, quiet: bool = False) -> Iterator[HomologSearch]:
    """:func:`search_homologs` for each of ``queries``, in their order; pyhmmer spreads the queries
    over ``options.cpus`` threads. ``quiet``: log each round at DEBUG, not INFO."""
    options = options or SearchOptions()
    pyhmmer = _pyhmmer()
    level = logging.DEBUG if quiet else logging.INFO
    started = time.perf_counter()
    if targets is None:
        targets = digitise_database(database)
    elif len(targets) != len(database):
        raise ValueError(f"targets hold {len(targets)} sequences, the database {len(database)}")
    searches = pyhmmer.hmmer.jackhmmer(
        [_digitise(q) for q in queries], targets, max_iterations=options.iterations, checkpoints=True,
        cpus=options.cpus, E=options.evalue, incE=options.evalue)
    for query, rounds in zip(queries, searches, strict=True):
        name = rounds[-1].hits.query.name
        name, expected = name.decode() if isinstance(name, bytes) else name, sequence_name(query)
        # rounds after the first are named after the query with jackhmmer's suffix "-i<round>"; the
        # query's own name may end like one ("P1-i2"), so only the expected name is taken off
        if name != expected and not re.fullmatch(re.escape(expected) + r"-i\d+", name):
            raise RuntimeError(f"jackhmmer answered for {name!r} where {expected!r} was expected")
        yield _homolog_search(query, database, rounds, options, level, started)
        started = time.perf_counter()


def _homolog_search(query: ProteinRecord, database: Sequence[ProteinRecord], rounds, options: SearchOptions,
                    level: int, started: float) -> HomologSearch:
    counts = []
    for result in rounds:
        counts.append(IterationCount(result.iteration, len(result.hits), sum(h.included for h in result.hits)))
        log.log(level, "iteration %d: %d hits, %d included", result.iteration, counts[-1].hits, counts[-1].included)
    last = rounds[-1]
    log.log(level, "jackhmmer: %d iterations%s in %.1f s", last.iteration, ", converged" if last.converged else "",
            time.perf_counter() - started)

    length = len(query)
    if last.hmm.M != length:
        raise RuntimeError(f"jackhmmer's profile has {last.hmm.M} match states for a query of {length} residues; "
                           "its match states no longer stand for query positions (a pyhmmer change?)")
    query_row = query.sequence
    homologs, copies = [], 0
    included = [(hit, _target_index(hit)) for hit in last.hits if hit.included]
    for hit, index in sorted(included, key=lambda h: (h[0].evalue, h[0].name, h[1])):
        ali = hit.best_domain.alignment
        row = a3m_row(ali.hmm_from, ali.hmm_to, ali.hmm_sequence, ali.target_sequence, length)
        if len(match_states(row)) != length:
            raise RuntimeError(f"{hit.name}: its A3M row has {len(match_states(row))} query positions, "
                               f"not {length}; the alignment of domain {ali.hmm_from}-{ali.hmm_to} is malformed")
        if database[index].residues == query.residues:  # by sequence: a homolog may share the query's name
            copies += 1
            continue
        homologs.append(Homolog(hit.name, ali.target_from, ali.target_to, hit.evalue, row))
    over_cap = max(0, len(homologs) - options.max_seqs) if options.max_seqs is not None else 0
    return HomologSearch(sequence_name(query), query_row, homologs[:len(homologs) - over_cap], counts,
                         bool(last.converged), copies, over_cap)


# ---------------------------------------------------------------------------------------------
# Output


def write_a3m(path: Path, search: HomologSearch) -> None:
    """Write ``search`` to ``path`` atomically (a temporary file beside it, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(search.to_a3m())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from protein_performer.cli_args import deprecated_alias

    deprecated_alias(parser, parser.add_argument("--fasta", type=Path, default=None,
                                                 help="FASTA file; its first record is the query (required)"),
                     "--query")
    parser.add_argument("--db", required=True, type=Path,
                        help="the sequences to search: FASTA (or UniProt .dat), plain or gzip/bz2/xz")
    parser.add_argument("--out", required=True, type=Path, help="the A3M to write (query first)")
    parser.add_argument("--iterations", type=int, default=SearchOptions.iterations,
                        help="most jackhmmer rounds (default 3; fewer when it converges)")
    parser.add_argument("--evalue", type=float, default=SearchOptions.evalue,
                        help="E-value threshold for including a hit (default 1e-3)")
    parser.add_argument("--max-seqs", type=int, default=None,
                        help="write at most N hits after the query, those of lowest E-value (default: all)")
    parser.add_argument("--cpus", type=int, default=SearchOptions.cpus,
                        help="pyhmmer threads (0: all cores; default 1); pyhmmer splits work by query, "
                             "so one query uses one thread")
    add_unknown_argument(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> int:
    if args.fasta is None:
        raise ValueError("--fasta is required: the FASTA file whose first record is the query")
    check_output(args.out, "file", inputs=[args.fasta, args.db])
    if args.out.exists() and not args.overwrite:
        raise ValueError(f"--out {args.out} already exists; pass --overwrite to replace it or choose another --out")
    options = SearchOptions(iterations=args.iterations, evalue=args.evalue, max_seqs=args.max_seqs, cpus=args.cpus)
    policy = CleaningPolicy(unknown=args.unknown)
    query = read_query(args.fasta, policy)
    database = read_database(args.db, policy)
    log.info("query %s: %d residues; searching %d sequences", query.id, len(query), len(database))
    search = search_homologs(query, database, options)
    if search.copies_of_query:
        log.info("left out %d hit(s) whose sequence is the query's (its own entry or an exact copy)",
                 search.copies_of_query)
    if search.over_cap:
        log.info("left out %d hit(s) beyond --max-seqs %d", search.over_cap, options.max_seqs)
    if not search.homologs:
        log.warning("no homolog of %s in %s at E < %g; %s holds the query alone (raise --evalue or search "
                    "a larger --db)", query.id, args.db, options.evalue, args.out)
    write_a3m(args.out, search)
    log.info("wrote %s: the query and %d homologs", args.out, len(search.homologs))
    return 0
