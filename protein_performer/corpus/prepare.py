"""``protein-performer prepare``: tokenise FASTA / UniProt files into train/valid/test shards.

Writes the layout of :mod:`protein_performer.corpus.shards`. Proteins are split by a hash of
their id (UniProt accession), so a protein stays in the same split when the corpus grows and
duplicates of an id never leak across splits::

    u = int.from_bytes(blake2b(salt + id, digest_size=8), "little") / 2**64
    test if u < test_fraction, valid if u < test_fraction + valid_fraction, else train

The dataset is written into a hidden sibling directory and renamed into place at the end,
so an interrupted run never leaves a directory that looks complete (and a later run removes
what a killed one left). Rerunning with inputs of identical checksums and identical options
keeps the existing dataset (logged as up to date) once its shard checksums match the
manifest; anything else, a damaged dataset included, refuses to replace it unless
``overwrite=True`` (``--overwrite``), which replaces only a prepared dataset: a folder holding
files that prepare did not write is refused, and they stay. ``--out`` is checked before any work,
one process at a time writes it, and a full disk leaves nothing (``no space left on <folder>``).
With ``--family``, an input may be a ``paralogs`` folder (or its ``families.tsv``): the families
its index lists, refused when the index is missing or lists a missing file. That staging is
:mod:`protein_performer.corpus.staging`; the tokenising and the manifest are here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import numpy as np

from protein_performer.alphabet import ALPHABET, ALPHABET_VERSION
from protein_performer.cli_args import deprecated_alias
from protein_performer.corpus.fasta import (
    CleaningPolicy,
    ReadCounts,
    add_unknown_argument,
    read_records,
    sniff_format,
)
from protein_performer.corpus.shards import (
    FAMILY_FILE,
    IDS_FILE,
    MANIFEST,
    OFFSETS_FILE,
    POSITIONS_FILE,
    SPLIT_FILES,
    SPLITS,
    TOKENS_FILE,
    WEIGHTS_FILE,
    sha256_of,
)
from protein_performer.corpus.staging import (
    check_out_dir,
    remove_dead_partials,
    reusable_manifest,
    scratch_dir,
    swap_into_place,
)
from protein_performer.outputs import disk_full, locked, no_space
from protein_performer.progress import add_quiet_argument, from_args, progress_bar

log = logging.getLogger(__name__)

FLUSH_BYTES = 1 << 18  # per split; larger buffers raise peak memory, not speed
SPLIT_RULE = ("u = int.from_bytes(blake2b(salt + id, digest_size=8).digest(), 'little') / 2**64; "
              "test if u < test_fraction, valid if u < test_fraction + valid_fraction, else train")


@dataclass(frozen=True)
class SplitFractions:
    valid: float = 0.05
    test: float = 0.05
    salt: str = ""
    """Mixed into the hash: a different salt draws a different (still deterministic) split."""

    def __post_init__(self) -> None:
        from protein_performer.corpus.families import check_split_fractions

        check_split_fractions(self.valid, self.test)

    def split_of(self, protein_id: str) -> str:
        """The split of ``protein_id`` by :data:`SPLIT_RULE` (integer form: no float rounding)."""
        digest = hashlib.blake2b((self.salt + protein_id).encode(), digest_size=8).digest()
        u = int.from_bytes(digest, "little")
        if u < self._test_below:
            return "test"
        return "valid" if u < self._valid_below else "train"

    @cached_property
    def _test_below(self) -> int:
        return int(self.test * 2**64)

    @cached_property
    def _valid_below(self) -> int:
        return int((self.test + self.valid) * 2**64)


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


FAMILY_LAYOUT = 3
"""Version of what ``prepare --family`` writes (2: positions.u16, 3: family.u32); a dataset of another is rebuilt."""


@dataclass(frozen=True)
class FamilyOptions:
    """``prepare --family``: the input is one homolog set (see :mod:`protein_performer.corpus.families`)."""

    query: str | None = None
    """Id of the query (default: the first record)."""
    format: str = "auto"
    """a3m, a2m, stockholm, aligned-fasta, fasta or auto."""
    identity: float = 0.8
    """Sequence weights: 1 / members within this identity."""
    split_identity: float = 0.8
    """Held-out members are below this identity to every training member."""


def prepare(inputs: list[Path], out: Path, *, policy: CleaningPolicy = CleaningPolicy(),
            valid_fraction: float = 0.05, test_fraction: float = 0.05, salt: str = "",
            format: str = "auto", overwrite: bool = False, progress: bool | None = False,
            family: FamilyOptions | None = None) -> dict:
    """Tokenise ``inputs`` into a prepared dataset at ``out``; returns its manifest.

    ``progress``: ``True`` draws a tqdm bar on stderr, ``None`` only when stderr is a terminal.
    ``family``: the one input is a homolog set; members are split by similarity, their sequence
    weights go to ``<split>/weights.f32`` and the manifest gains a ``family`` entry.
    """
    inputs = [Path(p) for p in inputs]
    out = Path(out)
    fractions = SplitFractions(valid=valid_fraction, test=test_fraction, salt=salt)
    if not inputs:
        raise ValueError("no input files; pass at least one FASTA or UniProt .dat file")
    if family is not None:
        inputs = family_inputs(inputs)
    for path in inputs:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such input file")
    check_out_dir(out, inputs, overwrite)
    if family is not None and len(inputs) > 1 and family.query is not None:
        raise ValueError(f"--query {family.query} names one query, but {len(inputs)} homolog sets were given; "
                         "with several sets each set's first record is its query (leave out --query)")
    if family is not None:
        formats = ["family"]
    else:
        formats = [sniff_format(p) if format == "auto" else format for p in inputs]
    input_info = [{"path": str(p), "bytes": p.stat().st_size, "sha256": sha256_of(p), "format": f}
                  for p, f in zip(inputs, formats)]
    options = {**policy.manifest_options(), "valid_fraction": valid_fraction, "test_fraction": test_fraction, "salt": salt}
    if family is not None:
        options["family"] = {**asdict(family), "layout": FAMILY_LAYOUT}

    with locked(out):
        return _prepare_locked(inputs, out, input_info, options, formats, policy, fractions, overwrite, progress,
                               family)


def _prepare_locked(inputs: list[Path], out: Path, input_info: list[dict], options: dict, formats: list[str],
                    policy: CleaningPolicy, fractions: SplitFractions, overwrite: bool, progress: bool | None,
                    family: FamilyOptions | None) -> dict:
    """:func:`prepare` once ``out`` is checked and this process holds its lock."""
    valid_fraction, test_fraction = fractions.valid, fractions.test
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
        family_info = None
        if family is not None:
            counts, family_info = _tokenise_families(inputs, family, policy, fractions, writers, progress)
        else:
            counts = _tokenise(inputs, formats, policy, fractions, writers, progress)
        if counts.kept == 0:
            raise ValueError(f"no sequences in {', '.join(map(str, inputs))} ({counts.records_read} records read, "
                             f"skipped: {dict(counts.skipped) or 'none'}); check the input file and the filters")
        splits = {split: writers[split].close() for split in SPLITS}
        if family_info is not None:
            for split in SPLITS:
                arrays = {WEIGHTS_FILE: np.asarray(family_info.pop(f"_weights_{split}"), dtype="<f4"),
                          FAMILY_FILE: np.asarray(family_info.pop(f"_families_{split}"), dtype="<u4")}
                positions = family_info.pop(f"_positions_{split}")
                if positions is not None:
                    arrays[POSITIONS_FILE] = (np.concatenate(positions) if positions else np.zeros(0)).astype("<u2")
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
            "split_fractions": {"train": 1 - valid_fraction - test_fraction, "valid": valid_fraction,
                                "test": test_fraction},
            "split_rule": SPLIT_RULE,
        }
        if family_info is not None:
            sets = family_info.pop("sets")
            if len(sets) == 1:
                manifest["family"] = sets[0]
            else:
                manifest["families"] = family_info
                manifest["families"]["sets"] = sets
            manifest["split_rule"] = sets[0]["split_rule"]
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


def _tokenise(inputs: list[Path], formats: list[str], policy: CleaningPolicy, fractions: SplitFractions,
              writers: dict[str, SplitWriter], progress: bool | None) -> ReadCounts:
    counts = ReadCounts()
    split_of = fractions.split_of
    add = {split: writer.add for split, writer in writers.items()}
    start = time.perf_counter()
    with progress_bar(unit="rec", unit_scale=True, enabled=progress, desc="prepare") as bar:
        for path, fmt in zip(inputs, formats):
            n = 0
            for record in read_records(path, policy, counts, format=fmt):  # type: ignore[arg-type]
                add[split_of(record.id)](record.id, record.tokens)
                n += 1
                if n == 2048:
                    bar.update(n)
                    n = 0
                    bar.set_postfix_str(f"{counts.residues / (time.perf_counter() - start):.3g} res/s", refresh=False)
            bar.update(n)
    return counts


def family_inputs(inputs: list[Path]) -> list[Path]:
    """The homolog sets of ``prepare --family``'s inputs: a folder or a ``families.tsv`` written by
    ``paralogs`` stands for the sets its index lists. Refuses a folder without its index (a
    ``paralogs`` run that did not finish), an index that lists a missing file, and any set in a
    folder that a stopped ``paralogs`` run left half replaced."""
    from protein_performer.corpus.paralogs import INCOMPLETE, INDEX, read_index

    sets: list[Path] = []
    for path in inputs:
        folder = path if path.is_dir() else path.parent
        if (folder / INCOMPLETE).exists():
            raise ValueError(f"{path}: {folder} holds an unfinished paralogs set (a run stopped while replacing it, "
                             f"{INCOMPLETE}); run `protein-performer paralogs --out-dir {folder} --overwrite` again")
        if path.is_dir() or path.name == INDEX:
            listed = read_index(folder)
            missing = [p for p in listed if not p.is_file()]
            if missing:
                raise ValueError(f"{folder / INDEX} lists {len(missing)} missing family file(s) ({missing[0].name}"
                                 f"{' ...' if len(missing) > 1 else ''}): the paralogs run that wrote it did not "
                                 f"finish or the files were moved; run `protein-performer paralogs --out-dir {folder} "
                                 "--overwrite` again")
            sets += listed
        else:
            sets.append(path)
    return sets


def _tokenise_families(paths: list[Path], options: FamilyOptions, policy: CleaningPolicy,
                       fractions: SplitFractions, writers: dict[str, SplitWriter],
                       progress: bool | None = False) -> tuple[ReadCounts, dict]:
    """Each homolog set of ``paths`` in turn (:func:`_tokenise_family`); each member is recorded
    with the index of its set. Returns the counts and ``{"sets": [per-set info], "_<array>_<split>": ...}``.
    ``progress``: a bar over the sets (reading a set computes its sequence weights, quadratic in
    its members)."""
    counts = ReadCounts()
    merged: dict = {"sets": []}
    for split in SPLITS:
        merged[f"_weights_{split}"], merged[f"_positions_{split}"], merged[f"_families_{split}"] = [], [], []
    aligned = None
    read = [_read_split_family(path, options, fractions) for path in paths] if len(paths) > 1 else [None]
    held_out = {seq for item in read if item is not None
                for seq, split in zip(item[0].sequences, item[1]) if split != "train"}
    bar = progress_bar(paths, total=len(paths), unit="family", desc="prepare --family", enabled=progress)
    for index, path in enumerate(bar):
        one, info = _tokenise_family(path, options, policy, fractions, writers, quiet=len(paths) > 1,
                                     read=read[index], held_out=held_out)
        if aligned is not None and info["aligned"] != aligned:
            raise ValueError(f"{path}: {'an aligned' if info['aligned'] else 'an unaligned'} homolog set among "
                             f"{'aligned' if aligned else 'unaligned'} ones ({paths[0]}); give all sets as "
                             "alignments (A3M, A2M, Stockholm, aligned FASTA) or all as plain FASTA")
        aligned = info["aligned"]
        for split in SPLITS:
            weights = info.pop(f"_weights_{split}")
            merged[f"_weights_{split}"] += weights
            merged[f"_families_{split}"] += [index] * len(weights)
            if aligned:
                merged[f"_positions_{split}"] += info.pop(f"_positions_{split}")
            else:
                info.pop(f"_positions_{split}")
        merged["sets"].append(info)
        counts.records_read += one.records_read
        counts.kept += one.kept
        counts.residues += one.residues
        for why, n in one.skipped.items():
            counts.skipped[why] += n
    bar.close()
    for split in SPLITS:
        if not aligned:
            merged[f"_positions_{split}"] = None
    if len(paths) > 1:
        merged["count"] = len(paths)
        merged["neff_by_split"] = {split: round(sum(s["neff_by_split"][split] for s in merged["sets"]), 3)
                                   for split in SPLITS}
        log.info("%d homolog sets: %d members, Neff %.1f", len(paths), counts.kept,
                 sum(s["neff"] for s in merged["sets"]))
    return counts, merged


def _read_split_family(path: Path, options: FamilyOptions, fractions: SplitFractions) -> tuple[object, list[str]]:
    """One homolog set and the split of each member (:func:`similarity_splits`)."""
    from protein_performer.corpus.families import read_family, similarity_splits

    fam = read_family(path, query=options.query, format=options.format, identity=options.identity)
    return fam, similarity_splits(fam, split_identity=options.split_identity, valid_fraction=fractions.valid,
                                  test_fraction=fractions.test, salt=fractions.salt)


def _tokenise_family(path: Path, options: FamilyOptions, policy: CleaningPolicy, fractions: SplitFractions,
                     writers: dict[str, SplitWriter], *, quiet: bool = False, read: tuple | None = None,
                     held_out: set[str] = frozenset()) -> tuple[ReadCounts, dict]:
    """Write the members of one homolog set to the splits :func:`similarity_splits` assigns. A
    training member that another set holds out (the same sequence; ``held_out``) is left out, so
    overlapping sets never train on each other's held-out members."""
    fam, splits = read if read is not None else _read_split_family(path, options, fractions)
    counts = ReadCounts()
    weights: dict[str, list[float]] = {split: [] for split in SPLITS}
    positions: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    if fam.aligned and fam.columns.shape[1] > np.iinfo(np.uint16).max:
        raise ValueError(f"{path}: {fam.columns.shape[1]:,} aligned columns; at most 65,535 are supported")
    for k, (name, seq, split) in enumerate(zip(fam.ids, fam.sequences, splits)):
        counts.records_read += 1
        if len(seq) < policy.min_residues or (policy.max_residues is not None and len(seq) > policy.max_residues):
            counts.skipped["length filter"] += 1
            continue
        if split == "train" and seq in held_out:
            counts.skipped["held out in another set"] += 1
            continue
        try:
            tokens = ALPHABET.encode(seq)
        except ValueError as err:
            raise ValueError(f"{path}: record {k + 1} ({name!r}): {err}; fix or remove the record") from None
        writers[split].add(name, tokens.tobytes())
        weights[split].append(float(fam.weights[k]))
        if fam.aligned:
            positions[split].append(fam.residue_positions(k))
        counts.kept += 1
        counts.residues += len(seq)
    info = {
        "path": str(path), "format": fam.format, "query_id": fam.ids[fam.query], "query": fam.query_sequence,
        "members": len(fam), "aligned": fam.aligned, "neff": round(fam.neff, 3),
        "identity": options.identity, "split_identity": options.split_identity,
        "split_rule": (f"members joined when either's identity to the other is >= {options.split_identity}; "
                       "each connected group goes whole to the split that blake2b(salt + its first member's id) "
                       "picks (test if u < test_fraction, valid if u < test_fraction + valid_fraction); the "
                       "query's group is in train") if fam.aligned else SPLIT_RULE + " (unaligned set: by id)",
        "neff_by_split": {split: round(sum(weights[split]), 3) for split in SPLITS},
    }
    for split in SPLITS:
        info[f"_weights_{split}"] = weights[split]
        info[f"_positions_{split}"] = positions[split] if fam.aligned else None
    log.log(logging.DEBUG if quiet else logging.INFO,
            "%s: family of %d members (%s, query %s, Neff %.1f at %.0f%% identity)", path, len(fam), fam.format,
             fam.ids[fam.query], fam.neff, 100 * options.identity)
    return counts, info


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
