"""``prepare --family``: homolog sets as a dataset, one :class:`~protein_performer.corpus.prepare_inputs.InputKind`.

Each input is a query and its homologs (:mod:`protein_performer.corpus.families`); a ``paralogs``
folder (or its ``families.tsv``) stands for every set its index lists. Members go to the split
:func:`~protein_performer.corpus.families.similarity_splits` assigns (so held-out members are below
the split identity to every training member); each split also holds every member's sequence weight
(``weights.f32``), the index of its set (``family.u32``) and, for alignments, each residue's column
(``positions.u16``). A training member that another set holds out is left out, so overlapping sets
never train on each other's held-out members. The manifest gains a ``family`` entry (one set) or a
``families`` entry (several).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from protein_performer.alphabet import ALPHABET
from protein_performer.corpus.fasta import CleaningPolicy, ReadCounts
from protein_performer.corpus.prepare_inputs import SplitSink, Tokenised
from protein_performer.corpus.shards import FAMILY_FILE, POSITIONS_FILE, SPLITS, WEIGHTS_FILE
from protein_performer.corpus.split_rule import SPLIT_RULE, SplitFractions
from protein_performer.progress import progress_bar

log = logging.getLogger(__name__)

FAMILY_LAYOUT = 3
"""Version of what ``prepare --family`` writes (2: positions.u16, 3: family.u32); a dataset of another is rebuilt."""
GROUP_SPLIT_RULE = ("members joined when either's identity to the other is >= {split_identity}; each connected "
                    "group goes whole to the split that blake2b(salt + its first member's id) picks (test if u < "
                    "test_fraction, valid if u < test_fraction + valid_fraction); the query's group is in train")
"""The split rule of an aligned set, as its manifest entry states it."""


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


@dataclass(frozen=True)
class FamilyInputs:
    """Homolog sets, the input kind of ``prepare --family`` (module docstring)."""

    family: FamilyOptions

    def files(self, inputs: list[Path]) -> list[Path]:
        return family_inputs(inputs)

    def formats(self, files: list[Path]) -> list[str]:
        if len(files) > 1 and self.family.query is not None:
            raise ValueError(f"--query {self.family.query} names one query, but {len(files)} homolog sets were given; "
                             "with several sets each set's first record is its query (leave out --query)")
        return ["family"]  # one entry: the manifest's inputs name the first set only

    def options(self) -> dict:
        return {"family": {**asdict(self.family), "layout": FAMILY_LAYOUT}}

    def tokenise(self, files: list[Path], policy: CleaningPolicy, fractions: SplitFractions,
                 writers: Mapping[str, SplitSink], progress: bool | None) -> Tokenised:
        return tokenise_families(files, self.family, policy, fractions, writers, progress)


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


@dataclass
class _SetWritten:
    """What one homolog set put into the splits: its counts, its manifest entry and, per split, the
    weights and (aligned sets) the residue columns of the members it wrote."""

    counts: ReadCounts
    info: dict
    weights: dict[str, list[float]]
    positions: dict[str, list[np.ndarray]]


def tokenise_families(paths: list[Path], options: FamilyOptions, policy: CleaningPolicy,
                      fractions: SplitFractions, writers: Mapping[str, SplitSink],
                      progress: bool | None = False) -> Tokenised:
    """Each homolog set of ``paths`` in turn (:func:`tokenise_family`); each member is recorded
    with the index of its set. ``progress``: a bar over the sets (reading a set computes its
    sequence weights, quadratic in its members)."""
    read = [read_split_family(path, options, fractions) for path in paths] if len(paths) > 1 else [None]
    held_out = {seq for item in read if item is not None
                for seq, split in zip(item[0].sequences, item[1]) if split != "train"}
    written: list[_SetWritten] = []
    bar = progress_bar(paths, total=len(paths), unit="family", desc="prepare --family", enabled=progress)
    for index, path in enumerate(bar):
        one = tokenise_family(path, options, policy, fractions, writers, quiet=len(paths) > 1, read=read[index],
                              held_out=held_out)
        if written and one.info["aligned"] != written[0].info["aligned"]:
            aligned = written[0].info["aligned"]
            raise ValueError(f"{path}: {'an aligned' if one.info['aligned'] else 'an unaligned'} homolog set among "
                             f"{'aligned' if aligned else 'unaligned'} ones ({paths[0]}); give all sets as "
                             "alignments (A3M, A2M, Stockholm, aligned FASTA) or all as plain FASTA")
        written.append(one)
    bar.close()
    return _merged(paths, written)


def _merged(paths: list[Path], written: list[_SetWritten]) -> Tokenised:
    """The sets' counts, arrays and manifest entries as one dataset's."""
    counts = ReadCounts()
    for one in written:
        counts.records_read += one.counts.records_read
        counts.kept += one.counts.kept
        counts.residues += one.counts.residues
        for why, n in one.counts.skipped.items():
            counts.skipped[why] += n
    aligned = written[-1].info["aligned"]
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for split in SPLITS:
        arrays[split] = {
            WEIGHTS_FILE: np.asarray([w for one in written for w in one.weights[split]], dtype="<f4"),
            FAMILY_FILE: np.asarray([k for k, one in enumerate(written) for _ in one.weights[split]], dtype="<u4")}
        if aligned:
            positions = [p for one in written for p in one.positions[split]]
            arrays[split][POSITIONS_FILE] = (np.concatenate(positions) if positions else np.zeros(0)).astype("<u2")
    sets = [one.info for one in written]
    if len(paths) == 1:
        entries = {"family": sets[0]}
    else:
        neff = {split: round(sum(s["neff_by_split"][split] for s in sets), 3) for split in SPLITS}
        entries = {"families": {"count": len(paths), "neff_by_split": neff, "sets": sets}}
        log.info("%d homolog sets: %d members, Neff %.1f", len(paths), counts.kept, sum(s["neff"] for s in sets))
    return Tokenised(counts, arrays, {**entries, "split_rule": sets[0]["split_rule"]})


def read_split_family(path: Path, options: FamilyOptions, fractions: SplitFractions) -> tuple[object, list[str]]:
    """One homolog set and the split of each member (:func:`similarity_splits`)."""
    from protein_performer.corpus.families import read_family, similarity_splits

    fam = read_family(path, query=options.query, format=options.format, identity=options.identity)
    return fam, similarity_splits(fam, split_identity=options.split_identity, valid_fraction=fractions.valid,
                                  test_fraction=fractions.test, salt=fractions.salt)


def tokenise_family(path: Path, options: FamilyOptions, policy: CleaningPolicy, fractions: SplitFractions,
                    writers: Mapping[str, SplitSink], *, quiet: bool = False, read: tuple | None = None,
                    held_out: set[str] = frozenset()) -> _SetWritten:
    """Write the members of one homolog set to the splits :func:`similarity_splits` assigns. A
    training member that another set holds out (the same sequence; ``held_out``) is left out, so
    overlapping sets never train on each other's held-out members."""
    fam, splits = read if read is not None else read_split_family(path, options, fractions)
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
        "split_rule": (GROUP_SPLIT_RULE.format(split_identity=options.split_identity) if fam.aligned
                       else SPLIT_RULE + " (unaligned set: by id)"),
        "neff_by_split": {split: round(sum(weights[split]), 3) for split in SPLITS},
    }
    log.log(logging.DEBUG if quiet else logging.INFO,
            "%s: family of %d members (%s, query %s, Neff %.1f at %.0f%% identity)", path, len(fam), fam.format,
            fam.ids[fam.query], fam.neff, 100 * options.identity)
    return _SetWritten(counts, info, weights, positions)


__all__ = ["FAMILY_LAYOUT", "FamilyInputs", "FamilyOptions", "family_inputs", "read_split_family",
           "tokenise_families", "tokenise_family"]
