"""``protein-performer prepare``: tokenise FASTA / UniProt files into train/valid/test shards.

Writes the layout of :mod:`protein_performer.corpus.shards`. What it reads is one of two input
kinds (:mod:`protein_performer.corpus.prepare_inputs`): proteins, split by the hash of their id
(UniProt accession; :mod:`protein_performer.corpus.split_rule`), so a protein stays in the same
split when the corpus grows and duplicates of an id never leak across splits; or, with
``--family``, homolog sets, split by similarity (:mod:`protein_performer.corpus.prepare_family`).

The dataset is written into a hidden sibling directory and renamed into place at the end,
so an interrupted run never leaves a directory that looks complete (and a later run removes
what a killed one left). Rerunning with inputs of identical checksums and identical options
keeps the existing dataset (logged as up to date) once its shard checksums match the
manifest; anything else, a damaged dataset included, refuses to replace it unless
``overwrite=True`` (``--overwrite``), which replaces only a prepared dataset: a folder holding
files that prepare did not write is refused, and they stay. ``--out`` is checked before any work,
one process at a time writes it, and a full disk leaves nothing (``no space left on <folder>``).
That staging is :mod:`protein_performer.corpus.staging`; the split writers and the manifest are here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

import numpy as np

from protein_performer.alphabet import ALPHABET, ALPHABET_VERSION
from protein_performer.cli_args import deprecated_alias
from protein_performer.corpus.fasta import CleaningPolicy, add_unknown_argument
from protein_performer.corpus.prepare_family import FamilyInputs, FamilyOptions
from protein_performer.corpus.prepare_family import tokenise_families as _tokenise_families  # noqa: F401 (tests)
from protein_performer.corpus.prepare_inputs import InputKind, ProteinInputs
from protein_performer.corpus.shards import (
    IDS_FILE,
    MANIFEST,
    OFFSETS_FILE,
    SPLIT_FILES,
    SPLITS,
    TOKENS_FILE,
    sha256_of,
)
from protein_performer.corpus.split_rule import SPLIT_RULE, SplitFractions
from protein_performer.corpus.staging import (
    check_out_dir,
    remove_dead_partials,
    reusable_manifest,
    scratch_dir,
    swap_into_place,
)
from protein_performer.outputs import disk_full, locked, no_space
from protein_performer.progress import add_quiet_argument, from_args

log = logging.getLogger(__name__)

FLUSH_BYTES = 1 << 18  # per split; larger buffers raise peak memory, not speed


@dataclass
class SplitWriter:
    """Streams one split's ``tokens.u8`` / ``offsets.i64`` / ``ids.txt``; memory is one buffer.
    Each file's sha256 is computed as it is written (for the manifest)."""

    path: Path
    proteins: int = 0
    residues: int = 0
    token_counts: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHABET), dtype=np.int64))
    _tokens: list[bytes] = field(default_factory=list)
    _ids: list[str] = field(default_factory=list)
    _pending: int = 0

    def __post_init__(self) -> None:
        self.path.mkdir(parents=True)
        self._files: dict[str, tuple[BinaryIO, "hashlib._Hash"]] = {
            name: (open(self.path / name, "wb"), hashlib.sha256()) for name in SPLIT_FILES}
        self._write(OFFSETS_FILE, np.zeros(1, dtype="<i8").tobytes())

    def _write(self, name: str, data: bytes) -> None:
        fh, digest = self._files[name]
        fh.write(data)
        digest.update(data)

    def add(self, protein_id: str, tokens: bytes) -> None:
        self._tokens.append(tokens)
        self._ids.append(protein_id)
        self._pending += len(tokens)
        if self._pending >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._tokens:
            return
        lengths = np.fromiter(map(len, self._tokens), dtype=np.int64, count=len(self._tokens))
        block = b"".join(self._tokens)
        self.token_counts += np.bincount(np.frombuffer(block, dtype=np.uint8), minlength=len(ALPHABET))
        self._write(TOKENS_FILE, block)
        self._write(OFFSETS_FILE, (self.residues + np.cumsum(lengths)).astype("<i8").tobytes())
        self._write(IDS_FILE, ("\n".join(self._ids) + "\n").encode("utf-8"))
        self.proteins += len(self._tokens)
        self.residues += len(block)
        self._tokens, self._ids, self._pending = [], [], 0

    def close(self) -> dict:
        self.flush()
        for fh, _ in self._files.values():
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        files = {name: {"bytes": (self.path / name).stat().st_size, "sha256": digest.hexdigest()}
                 for name, (_, digest) in self._files.items()}
        return {"proteins": self.proteins, "residues": self.residues, "token_counts": self.token_counts.tolist(),
                "files": files}

    def abort(self) -> None:
        for fh, _ in self._files.values():
            fh.close()


def prepare(inputs: list[Path], out: Path, *, policy: CleaningPolicy = CleaningPolicy(),
            valid_fraction: float = 0.05, test_fraction: float = 0.05, salt: str = "",
            format: str = "auto", overwrite: bool = False, progress: bool | None = False,
            family: FamilyOptions | None = None) -> dict:
    """Tokenise ``inputs`` into a prepared dataset at ``out``; returns its manifest.

    ``progress``: ``True`` draws a tqdm bar on stderr, ``None`` only when stderr is a terminal.
    ``family``: the inputs are homolog sets (:mod:`protein_performer.corpus.prepare_family`);
    members are split by similarity, their sequence weights go to ``<split>/weights.f32`` and the
    manifest gains a ``family`` entry. Else they are proteins, split by id (``format``:
    fasta, swiss or auto).
    """
    kind: InputKind = FamilyInputs(family) if family is not None else ProteinInputs(format)
    inputs = [Path(p) for p in inputs]
    out = Path(out)
    fractions = SplitFractions(valid=valid_fraction, test=test_fraction, salt=salt)
    if not inputs:
        raise ValueError("no input files; pass at least one FASTA or UniProt .dat file")
    files = kind.files(inputs)
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such input file")
    check_out_dir(out, files, overwrite)
    formats = kind.formats(files)
    input_info = [{"path": str(p), "bytes": p.stat().st_size, "sha256": sha256_of(p), "format": f}
                  for p, f in zip(files, formats)]
    options = {**policy.manifest_options(), "valid_fraction": valid_fraction, "test_fraction": test_fraction, "salt": salt,
               **kind.options()}
    with locked(out):
        return _prepare_locked(kind, files, out, input_info, options, policy, fractions, overwrite, progress)


def _prepare_locked(kind: InputKind, files: list[Path], out: Path, input_info: list[dict], options: dict,
                    policy: CleaningPolicy, fractions: SplitFractions, overwrite: bool, progress: bool | None) -> dict:
    """:func:`prepare` once ``out`` is checked and this process holds its lock."""
    existing = reusable_manifest(out, input_info, options, overwrite)
    if existing is not None:
        log.info("%s is up to date (same input checksums and options, shard checksums verified); keeping it",
                 out)
        return existing

    remove_dead_partials(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_dir(out, "partial")
    tmp.mkdir()
    writers: dict[str, SplitWriter] = {}
    try:
        writers = {split: SplitWriter(tmp / split) for split in SPLITS}
        written = kind.tokenise(files, policy, fractions, writers, progress)
        counts = written.counts
        if counts.kept == 0:
            raise ValueError(f"no sequences in {', '.join(map(str, files))} ({counts.records_read} records read, "
                             f"skipped: {dict(counts.skipped) or 'none'}); check the input file and the filters")
        splits = {split: writers[split].close() for split in SPLITS}
        for split, arrays in written.arrays.items():
            for name, array in arrays.items():
                (tmp / split / name).write_bytes(array.tobytes())
                splits[split]["files"][name] = {"bytes": array.nbytes, "sha256": sha256_of(tmp / split / name)}
        manifest = {
            "alphabet_version": ALPHABET_VERSION,
            "alphabet": list(ALPHABET.tokens),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "inputs": input_info,
            "options": options,
            "counts": counts.to_dict(),
            "residues": counts.residues,
            "splits": splits,
            "split_fractions": {"train": 1 - fractions.valid - fractions.test, "valid": fractions.valid,
                                "test": fractions.test},
            "split_rule": SPLIT_RULE,
            **written.manifest,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")  # last: marks it complete
        swap_into_place(tmp, out)
    except BaseException as err:
        for writer in writers.values():
            writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        if disk_full(err):
            raise no_space(out) from err
        raise
    log.info("prepared %s: %d proteins, %d residues (train %d / valid %d / test %d)", out, counts.kept,
             counts.residues, *(splits[s]["proteins"] for s in SPLITS))
    return manifest


# ---------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from protein_performer.corpus.families import add_family_arguments

    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                        help="FASTA or UniProt .dat files (plain, .gz, .bz2 or .xz); with --family, homolog sets, "
                             "or a `paralogs` --out-dir (or its families.tsv) for every family it lists")
    parser.add_argument("--out", type=Path, required=True, help="output directory of the prepared dataset")
    deprecated_alias(parser, parser.add_argument("--input-format", choices=("auto", "fasta", "swiss"), default="auto",
                                                 help="input format (auto: sniffed from the content)"), "--format")
    add_unknown_argument(parser)
    deprecated_alias(parser, parser.add_argument("--min-residues", type=int, default=1, metavar="N",
                                                 help="skip proteins of fewer than N residues (default 1)"),
                     "--min-length")
    deprecated_alias(parser, parser.add_argument("--max-residues", type=int, default=None, metavar="N",
                                                 help="skip proteins of more than N residues (default: none)"),
                     "--max-length")
    parser.add_argument("--valid-fraction", type=float, default=0.05)
    parser.add_argument("--test-fraction", type=float, default=0.05)
    parser.add_argument("--split-salt", default="", help="salt of the id hash that assigns splits")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing, different dataset")
    family = parser.add_argument_group("families (one homolog set per dataset)")
    family.add_argument("--family", action="store_true",
                        help="each input is a query and its homologs (A3M, A2M, Stockholm, aligned or plain FASTA): "
                             "sequence weights, similarity splits, the query recorded; several inputs (e.g. "
                             "`paralogs` output, families/*.a3m) make one dataset whose windows each hold one family")
    add_family_arguments(family, query_help="id of the query record (default: the first record)")
    family.add_argument("--identity", type=float, default=0.8,
                        help="sequence weight = 1 / members within this identity (default 0.8)")
    family.add_argument("--split-identity", type=float, default=0.8,
                        help="held-out members are below this identity to every training member (default 0.8)")
    deprecated_alias(parser, add_quiet_argument(parser), "--no-progress")


def run(args: argparse.Namespace) -> int:
    policy = CleaningPolicy(unknown=args.unknown, min_residues=args.min_residues, max_residues=args.max_residues)
    family = None
    if args.family:
        family = FamilyOptions(query=args.query, format=args.family_format, identity=args.identity,
                               split_identity=args.split_identity)
    elif args.query or args.family_format != "auto":
        raise ValueError("--query and --family-format describe a homolog set; add --family")
    manifest = prepare(args.inputs, args.out, policy=policy, valid_fraction=args.valid_fraction,
                       test_fraction=args.test_fraction, salt=args.split_salt, format=args.input_format,
                       overwrite=args.overwrite, progress=from_args(args), family=family)
    print_summary(manifest)
    return 0


def print_summary(manifest: dict) -> None:
    """The end-of-run table (rich, on stderr)."""
    from rich.console import Console
    from rich.table import Table

    counts = manifest["counts"]
    table = Table(title="prepared dataset", show_header=True)
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("records read", f"{counts['records_read']:,}")
    table.add_row("kept", f"{counts['kept']:,}")
    for reason, n in counts["skipped"].items():
        table.add_row(f"skipped: {reason}", f"{n:,}")
    for reason, n in counts["oddities"].items():
        table.add_row(f"fixed: {reason}", f"{n:,}")
    table.add_row("duplicate ids (kept)", f"{counts['duplicate_ids']:,}")
    table.add_row("residues", f"{manifest['residues']:,}")
    for split in SPLITS:
        info = manifest["splits"][split]
        table.add_row(f"{split}", f"{info['proteins']:,} proteins / {info['residues']:,} residues")
    Console(stderr=True).print(table)
