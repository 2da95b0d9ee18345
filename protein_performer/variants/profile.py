"""The family profile as a variant scorer, and the map from a wild type to the family's columns.

The profile is the weighted frequency of each residue in each of the query's columns
(:func:`~protein_performer.corpus.families.column_profile`: sequence weights 1 / neighbours within
80% identity, a pseudocount). A substitution scores ``log P[c, mt] - log P[c, wt]`` at its column c,
summed over a multi-mutant (an independent-sites model, as EVmutation's "independent").

The wild type of a variants file need not be the family's query. It is placed on the query's
residues (equal; one inside the other, e.g. a region-only alignment as ProteinGym's ``MSA_start``;
otherwise Biopython's ``PairwiseAligner``, global with free end gaps, BLOSUM62, gaps -10 / -1), and
each query residue on its column through the alignment (:meth:`Family.residue_columns`): the query's
own insert residues (A2M/A3M lower case) and residues facing a query gap have no column. A wild-type
residue without a column has no profile score (NaN, counted, never guessed). A wild type below 50%
identity to the query is refused (not this family's protein), and one that another member equals
names that member for ``--query``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from protein_performer.alphabet import STANDARD_AMINO_ACIDS
from protein_performer.analysis.blosum import blosum62_matrix
from protein_performer.corpus.families import GAP, Family, column_profile
from protein_performer.variants.mutants import Substitution

log = logging.getLogger(__name__)

_AA = {a: i for i, a in enumerate(STANDARD_AMINO_ACIDS)}


MIN_IDENTITY = 0.5
"""Below this identity between the wild type and the family's query (over the residues they align),
the wild type is not this family's protein: refused."""
WARN_IDENTITY = 0.9


@dataclass(frozen=True)
class ColumnMap:
    """Where each wild-type residue sits in the family's alignment."""

    columns: np.ndarray
    """(n,) the query column of each wild-type residue, -1 where none (a query insert, a residue the
    query lacks, or outside the aligned region)."""
    query_residues: np.ndarray
    """(n,) the query residue each wild-type residue is matched to, -1 where none."""
    identity: float
    """Share of the matched residues that are identical."""
    how: str
    """``equal``, ``wild type inside the query``, ``query inside the wild type`` or ``aligned``."""

    @property
    def in_columns(self) -> int:
        return int((self.columns >= 0).sum())


def _query_match(query: str, sequence: str, region_start: int | None) -> tuple[np.ndarray, str]:
    """(n,) the query residue of each wild-type residue (-1: none) and how it was found."""
    n = len(sequence)
    out = np.full(n, -1, dtype=np.int64)
    if sequence == query:
        return np.arange(n), "equal"
    if query in sequence:
        lo = sequence.find(query)
        if region_start is not None and sequence[region_start - 1 : region_start - 1 + len(query)] == query:
            lo = region_start - 1  # ProteinGym's MSA_start: the query is the target's residues from there
        out[lo : lo + len(query)] = np.arange(len(query))
        return out, "query inside the wild type"
    if sequence in query:
        lo = query.find(sequence)
        return np.arange(lo, lo + n), "wild type inside the query"
    from Bio import Align

    aligner = Align.PairwiseAligner(mode="global", open_gap_score=-10, extend_gap_score=-1, end_gap_score=0)
    aligner.substitution_matrix = blosum62_matrix()
    alignment = aligner.align(sequence, query)[0]
    for (a0, a1), (b0, b1) in zip(*alignment.aligned):
        out[a0:a1] = np.arange(b0, b1)
    return out, "aligned"


def column_map(family: Family, sequence: str, *, region_start: int | None = None, source: str = "--fasta") -> ColumnMap:
    """Map the wild type through the query's residues to the family's columns (module docstring).

    The query's own residues outside the match columns (A2M/A3M lower case, or a query with gaps)
    map to none. ``region_start`` (1-based, ProteinGym's ``MSA_start``): the alignment's query is
    the wild type's residues from there on; a query found elsewhere is refused.

    Raises ``ValueError`` when the wild type is not the family's protein (identity below
    :data:`MIN_IDENTITY`), naming a member that is the wild type when the query is another.
    """
    query = family.query_sequence
    qname = family.ids[family.query]
    matched, how = _query_match(query, sequence, region_start)
    if region_start is not None and (how == "aligned" or (how == "equal" and region_start != 1) or (
            how == "query inside the wild type" and matched[region_start - 1 :][:1].tolist() != [0])):
        raise ValueError(f"{family.path}: the query {qname!r} ({len(query)} residues) is not the wild type's "
                         f"residues from MSA_start {region_start} on; check MSA_start / MSA_end against target_seq "
                         "and the alignment's query")
    hit = matched >= 0
    same = np.array([sequence[i] == query[j] for i, j in zip(np.nonzero(hit)[0], matched[hit])], dtype=bool)
    identity = float(same.mean()) if hit.any() else 0.0
    if identity < WARN_IDENTITY:
        exact = [k for k, s in enumerate(family.sequences) if k != family.query and sequence in s]
        if exact:
            k = exact[0]
            raise ValueError(f"{family.path}: the wild type of {source} is record {k + 1} ({family.ids[k]!r}), but "
                             f"the query is {qname!r} ({identity:.0%} identical to it); pass --query "
                             f"{family.ids[k]} (or put the wild type first in the alignment)")
    if identity < MIN_IDENTITY or same.sum() < min(10, len(sequence) // 2):
        raise ValueError(f"{family.path}: the wild type of {source} ({len(sequence)} residues) does not match the "
                         f"family's query {qname!r} ({int(same.sum())} identical of {int(hit.sum())} aligned "
                         f"residues, {identity:.0%}); give the homologs of this protein, or the assay's own wild type")
    if identity < WARN_IDENTITY:
        log.warning("%s: the wild type is %.0f%% identical to the query %s over %d aligned residues; check that "
                    "%s is this family's protein", family.path, 100 * identity, qname, int(hit.sum()), source)
    query_columns = family.residue_columns(family.query)  # (len(query),) -1 for the query's inserts
    columns = np.where(hit, query_columns[np.maximum(matched, 0)], -1)
    gaps = int((family.columns[family.query] == GAP).sum()) if family.columns is not None else 0
    if gaps:
        log.warning("%s: the query %s has gaps (or non-standard residues) in %d of %d columns; no wild-type "
                    "residue maps there", family.path, qname, gaps, family.columns.shape[1])
    result = ColumnMap(columns=columns, query_residues=matched, identity=identity, how=how)
    log.info("%s: wild type (%d residues) vs query %s: %s, %.1f%% identical; %d residues in the alignment's "
             "columns, %d outside", family.path, len(sequence), qname, how, 100 * identity, result.in_columns,
             len(sequence) - result.in_columns)
    return result


def wild_type_columns(family: Family, sequence: str, *, region_start: int | None = None) -> np.ndarray:
    """(n,) the query column of each wild-type residue, -1 where none (:func:`column_map`)."""
    return column_map(family, sequence, region_start=region_start).columns


def profile_log_probs(family: Family, *, pseudocount: float = 0.5, members: np.ndarray | None = None) -> np.ndarray:
    """(C, 20) log of the weighted column profile (``members``: a boolean subset of the family)."""
    return np.log(column_profile(family, pseudocount=pseudocount, members=members))


def profile_scores(log_profile: np.ndarray, columns: np.ndarray,
                   mutants: Sequence[tuple[Substitution, ...] | None]) -> np.ndarray:
    """``sum log P[c, mt] - log P[c, wt]`` per mutant; NaN for None or a residue without a column."""
    out = np.full(len(mutants), np.nan)
    for k, subs in enumerate(mutants):
        if subs is None or any(columns[s.index] < 0 for s in subs):
            continue
        out[k] = float(sum(log_profile[columns[s.index], _AA[s.mt]] - log_profile[columns[s.index], _AA[s.wt]]
                           for s in subs))
    return out
