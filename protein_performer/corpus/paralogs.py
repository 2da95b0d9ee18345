"""``protein-performer paralogs``: split a proteome into families of paralogs, one A3M each.

Training across many families (``prepare --family A.a3m B.a3m ...``) teaches a model to read a
protein's family from its window instead of holding one family in its weights (PoET's setting).
This command builds such families from any FASTA of proteins, offline, with the same jackhmmer
search as ``protein-performer homologs``:

1. ``--exclude`` (optional): every protein of ``--db`` that a jackhmmer search of an exclude
   record finds (and every exact copy of one) is removed first, so a family held out for
   evaluation (e.g. TEM-1 and its class A beta-lactamase relatives) shares nothing with training.
2. Greedy cover, in ``--db`` order: a protein not yet in a family is a query; jackhmmer searches
   it against the remaining proteins; the query, its included hits and its exact copies (which
   are not written as rows, as in ``homologs``) are marked as covered
   whatever comes next, and the family is written when it has at least ``--min-members``
   members and an effective size (``Neff`` at 80% identity) of at least ``--min-neff``. Queries
   are searched in batches over ``--cpus`` threads; a batch's result for a query covered by an
   earlier query of the same batch is dropped, so the output is that of the one-by-one loop.

Each family is ``<out-dir>/<accession>.a3m`` (query first; rows aligned to the query, as
``homologs`` writes them; :func:`file_name`: unique, visible and at most ~110 characters) and
``<out-dir>/families.tsv`` lists them: file, query, members, Neff, query length. Only each hit's
best domain is a member, so a protein's other domains do not seed families of their own once it
is covered.

The set is built in a hidden staging folder beside ``--out-dir`` and takes its place at the end
(:func:`replace_families`), so a killed or interrupted run leaves the old set (or nothing) and a
full disk leaves nothing partial. ``--overwrite`` replaces only the files the old
``families.tsv`` lists (what an earlier run wrote), never another file of ``--out-dir`` nor an
input. One process at a time writes an ``--out-dir``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from protein_performer.corpus.fasta import CleaningPolicy, ProteinRecord, add_unknown_argument
from protein_performer.corpus.homologs import (
    HomologSearch,
    SearchOptions,
    digitise_database,
    read_database,
    search_many,
    sequence_name,
    write_a3m,
)
from protein_performer.outputs import (
    check_at_least,
    check_output,
    disk_full,
    locked,
    no_space,
    partial_dir,
    remove_dead_partials,
)
from protein_performer.progress import add_quiet_argument, from_args, progress_bar

log = logging.getLogger(__name__)

INDEX = "families.tsv"
INCOMPLETE = ".families.incomplete"
"""In ``--out-dir`` only while a set is replaced beside other files: the names it may hold
(:func:`replace_families`). A folder that holds it is an unfinished set."""
INDEX_COLUMNS = ("file", "query", "members", "neff", "query_length")
BATCH = 64
"""Queries per jackhmmer call (spread over ``--cpus`` threads)."""


@dataclass(frozen=True)
class CoverOptions:
    """Which families are kept (each field is the command-line flag of the same name)."""

    min_members: int = 4
    """Fewest members (the query included) of a family that is written."""
    min_neff: float = 2.0
    """Smallest effective number of members (sequence weights at 80% identity) of a written family."""
    min_residues: int = 30
    """Shortest query (residues); shorter proteins are neither queries nor members."""

    def __post_init__(self) -> None:
        if self.min_members < 2:
            raise ValueError(f"--min-members {self.min_members}: a family needs at least 2 members")
        if not self.min_neff >= 1:
            raise ValueError(f"--min-neff {self.min_neff}: must be at least 1 (one distinct member)")
        if self.min_residues < 1:
            raise ValueError(f"--min-residues {self.min_residues}: must be at least 1 residue")


@dataclass(frozen=True)
class FamilyEntry:
    file: str
    query: str
    members: int
    neff: float
    query_length: int


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
NAME_CHARS = 100
"""Most characters of a family file's name before ``~hash`` and ``.a3m`` (file systems allow 255 bytes)."""


def file_name(query: ProteinRecord | str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """``<accession>.a3m`` for the family of ``query`` (a record or its id): the id itself when it
    is made of letters, digits, ``.``, ``_`` and ``-``, does not start with ``.`` and has at most
    :data:`NAME_CHARS` characters; otherwise the id cleaned (others as ``_``, leading dots
    dropped, cut to :data:`NAME_CHARS`) plus ``~`` and a hash of the id, so that distinct ids
    never share a file (``A/B`` and ``A_B``) and no name is hidden or too long. A name already in
    ``taken`` (a repeated id) gets ``~2``, ``~3``, ... before ``.a3m``."""
    protein_id = query if isinstance(query, str) else query.id
    stem = _UNSAFE.sub("_", protein_id).lstrip(".")[:NAME_CHARS] or "_"
    if stem != protein_id:
        stem += "~" + hashlib.blake2b(protein_id.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    name, k = f"{stem}.a3m", 1
    while name in taken:
        k += 1
        name = f"{stem}~{k}.a3m"
    return name


def exclude_homologs(database: list[ProteinRecord], exclude: list[ProteinRecord], options: SearchOptions,
                     ) -> tuple[list[ProteinRecord], list[str]]:
    """``database`` without every protein a jackhmmer search of an ``exclude`` record finds or that
    is an exact copy of one: (kept, names removed)."""
    if not exclude:
        return database, []
    targets = digitise_database(database)
    found: set[str] = set()
    for search in search_many(exclude, database, options, targets=targets, quiet=True):
        found.update(h.name for h in search.homologs)
    copies = {r.residues for r in exclude}
    removed = [sequence_name(r) for r in database if sequence_name(r) in found or r.residues in copies]
    gone = set(removed)
    return [r for r in database if sequence_name(r) not in gone], removed


def _neff(search: HomologSearch, identity: float = 0.8) -> float:
    """Effective members of ``search`` (EVcouplings weights over the query's columns)."""
    import numpy as np

    from protein_performer.corpus.families import _CODE, Family, sequence_weights
    from protein_performer.corpus.homologs import match_states

    rows = [search.query, *(h.row for h in search.homologs)]
    columns = np.stack([_CODE[np.frombuffer(match_states(row).encode(), dtype=np.uint8)] for row in rows])
    names = [search.query_name, *(h.name for h in search.homologs)]
    family = Family(Path(search.query_name), "a3m", names, names, 0, columns=columns, weights=np.ones(len(rows)))
    return float(sequence_weights(family, identity).sum())


def cover(database: list[ProteinRecord], out_dir: Path, options: SearchOptions, cover_options: CoverOptions,
          *, progress: bool | None = False) -> list[FamilyEntry]:
    """Write the families of ``database`` to ``out_dir`` (see the module docstring); their index rows."""
    database = [r for r in database if len(r) >= cover_options.min_residues]
    targets = digitise_database(database)
    copies: dict[bytes, list[str]] = {}
    for record in database:
        copies.setdefault(record.residues, []).append(sequence_name(record))
    covered: set[str] = set()
    taken: set[str] = {INDEX}
    entries: list[FamilyEntry] = []
    searched = 0
    started = time.perf_counter()
    with progress_bar(total=len(database), desc="paralogs", unit="protein", enabled=progress) as bar:
        start = 0
        while start < len(database):
            batch: list[ProteinRecord] = []
            stop = start
            while stop < len(database) and len(batch) < BATCH:
                if sequence_name(database[stop]) not in covered:
                    batch.append(database[stop])
                stop += 1
            for search in search_many(batch, database, options, targets=targets, quiet=True):
                searched += 1
                if search.query_name in covered:  # found by an earlier query of this batch
                    continue
                query = next(r for r in batch if sequence_name(r) == search.query_name)
                covered.add(search.query_name)
                covered.update(h.name for h in search.homologs)
                covered.update(copies.get(query.residues, ()))  # exact copies: not rows, but this family's
                members = 1 + len(search.homologs)
                if members < cover_options.min_members:
                    continue
                neff = _neff(search)
                if neff < cover_options.min_neff:
                    continue
                name = file_name(query, taken)
                taken.add(name)
                write_a3m(out_dir / name, search)
                entries.append(FamilyEntry(name, query.id, members, round(neff, 2), len(query)))
            bar.update(stop - start)
            bar.set_postfix_str(f"{len(entries)} families", refresh=False)
            start = stop
    log.info("%d queries searched in %.0f s; %d families of >= %d members and Neff >= %g (%d members in all)",
             searched, time.perf_counter() - started, len(entries), cover_options.min_members,
             cover_options.min_neff, sum(e.members for e in entries))
    return entries


def write_index(path: Path, entries: list[FamilyEntry]) -> None:
    """``families.tsv``: one row per family, written last (a set without it is incomplete)."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(INDEX_COLUMNS)
        for e in entries:
            writer.writerow([e.file, e.query, e.members, e.neff, e.query_length])


def read_index(out_dir: Path) -> list[Path]:
    """The A3M files ``families.tsv`` of ``out_dir`` lists, in its order."""
    index = Path(out_dir) / INDEX
    if not index.is_file():
        raise FileNotFoundError(f"{index}: no family index; run `protein-performer paralogs --out-dir {out_dir}` first")
    with open(index, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [Path(out_dir) / row["file"] for row in rows]


def own_files(out_dir: Path) -> set[str]:
    """Names of the files an earlier run wrote in ``out_dir``: those its ``families.tsv`` lists and
    the index itself, and those an unfinished replacement recorded in :data:`INCOMPLETE` (plain
    names only)."""
    out_dir = Path(out_dir)
    names: set[str] = set()
    if (out_dir / INDEX).is_file():
        names |= {p.name for p in read_index(out_dir) if p.parent == out_dir} | {INDEX}
    if (out_dir / INCOMPLETE).is_file():
        names |= set((out_dir / INCOMPLETE).read_text().split("\n")) | {INCOMPLETE}
    return {name for name in names if name and "/" not in name and name not in (".", "..")}


def replace_families(stage: Path, out_dir: Path, inputs: list[Path]) -> None:
    """Put the set built in ``stage`` in place of ``out_dir``'s. A new ``out_dir``, or one that
    holds only an earlier run's files, is swapped whole (renames: old or new, never a mix).
    Otherwise the other files stay and the set is replaced file by file: first :data:`INCOMPLETE`
    records every name the old and new sets use (``prepare`` refuses a folder that holds it, and
    a rerun knows those files as its own), then the old index and families go, the new ones move
    in, the index last, and the record goes. Nothing an earlier run did not write, and no input,
    is removed or replaced."""
    from protein_performer.corpus.staging import swap_into_place

    if not out_dir.exists():
        stage.rename(out_dir)
        return
    inputs_here = {p.name for p in inputs if p.exists() and p.resolve().parent == out_dir.resolve()}
    own = own_files(out_dir) - inputs_here
    new = sorted(p.name for p in stage.iterdir())
    clash = [name for name in new if (out_dir / name).exists() and name not in own]
    if clash:
        raise ValueError(f"--out-dir {out_dir}: the new family file {clash[0]} would replace {out_dir / clash[0]}, "
                         "which paralogs did not write (or an input); move it away or choose another --out-dir")
    if all(p.name in own for p in out_dir.iterdir()):
        swap_into_place(stage, out_dir)
        return
    marker = out_dir / INCOMPLETE
    marker.write_text("".join(f"{name}\n" for name in sorted((own | set(new)) - {INCOMPLETE})))
    (out_dir / INDEX).unlink(missing_ok=True)
    for name in own - {INCOMPLETE}:
        (out_dir / name).unlink(missing_ok=True)
    for name in new:
        if name != INDEX:
            os.replace(stage / name, out_dir / name)
    os.replace(stage / INDEX, out_dir / INDEX)
    marker.unlink()
    stage.rmdir()


# ---------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, type=Path,
                        help="the proteins to split into families: FASTA (or UniProt .dat), plain or compressed")
    parser.add_argument("--out-dir", required=True, type=Path,
                        help="folder for <accession>.a3m per family and families.tsv (new, or with --overwrite)")
    parser.add_argument("--exclude", type=Path, default=None,
                        help="FASTA of proteins whose homologs in --db are removed first (a held-out family)")
    parser.add_argument("--min-members", type=int, default=CoverOptions.min_members,
                        help=f"fewest members of a written family, the query included (default {CoverOptions.min_members})")
    parser.add_argument("--min-neff", type=float, default=CoverOptions.min_neff,
                        help=f"smallest Neff (80%% identity weights) of a written family (default {CoverOptions.min_neff:g})")
    parser.add_argument("--min-residues", type=int, default=CoverOptions.min_residues,
                        help=f"shortest protein searched or kept, in residues (default {CoverOptions.min_residues})")
    parser.add_argument("--iterations", type=int, default=SearchOptions.iterations,
                        help=f"most jackhmmer rounds per query (default {SearchOptions.iterations}, as `homologs`)")
    parser.add_argument("--evalue", type=float, default=SearchOptions.evalue,
                        help=f"E-value threshold for including a hit (default {SearchOptions.evalue:g}, as `homologs`)")
    parser.add_argument("--cpus", type=int, default=SearchOptions.cpus, help="pyhmmer threads (0: all cores; default 1)")
    add_unknown_argument(parser)
    add_quiet_argument(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace the families of an existing --out-dir")


def run(args: argparse.Namespace) -> int:
    inputs = [args.db] + ([args.exclude] if args.exclude else [])
    check_output(args.out_dir, "dir", inputs=inputs, flag="--out-dir")
    check_at_least(args, {"--iterations": 1, "--cpus": 0})
    if not args.evalue > 0:
        raise ValueError(f"--evalue {args.evalue}: must be above 0")
    if args.out_dir.exists() and any(args.out_dir.iterdir()) and not args.overwrite:
        raise ValueError(f"--out-dir {args.out_dir} is not empty; pass --overwrite to replace its families "
                         "(only the files its families.tsv lists) or choose another --out-dir")
    options = SearchOptions(iterations=args.iterations, evalue=args.evalue, cpus=args.cpus)
    cover_options = CoverOptions(min_members=args.min_members, min_neff=args.min_neff, min_residues=args.min_residues)
    with locked(args.out_dir, "--out-dir"):
        policy = CleaningPolicy(unknown=args.unknown)
        database = read_database(args.db, policy)
        if args.exclude is not None:
            exclude = read_database(args.exclude, policy, flag="--exclude")
            database, removed = exclude_homologs(database, exclude, options)
            log.info("--exclude %s: removed %d protein(s) of %s: %s", args.exclude, len(removed), args.db,
                     ", ".join(removed[:20]) + (" ..." if len(removed) > 20 else "") if removed else "none found")
        args.out_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_partials(args.out_dir)
        stage = partial_dir(args.out_dir, "partial")
        stage.mkdir()
        try:
            entries = cover(database, stage, options, cover_options, progress=from_args(args))
            write_index(stage / INDEX, entries)
            replace_families(stage, args.out_dir, inputs)
        except BaseException as err:
            shutil.rmtree(stage, ignore_errors=True)
            if disk_full(err):
                raise no_space(args.out_dir) from err
            raise
    if not entries:
        log.warning("no family of >= %d members and Neff >= %g in %s; lower --min-members / --min-neff or raise --evalue",
                    cover_options.min_members, cover_options.min_neff, args.db)
    log.info("wrote %d families to %s (index %s)", len(entries), args.out_dir, INDEX)
    return 0
