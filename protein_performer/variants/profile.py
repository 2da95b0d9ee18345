"""The family profile as a variant scorer, and the map from a wild type to the family's columns.

The profile is the weighted frequency of each residue in each of the query's columns
(:func:`~protein_performer.corpus.families.column_profile`: sequence weights 1 / neighbours within
80% identity, a pseudocount). A substitution scores ``log P[c, mt] - log P[c, wt]`` at its column c,
summed over a multi-mutant (an independent-sites model, as EVmutation's "independent").

The wild type of a variants file need not be the family's query: it is aligned to the query
(Biopython's ``PairwiseAligner``, global with free end gaps, BLOSUM62, gaps -10 / -1; an exact substring is used as
is), and a wild-type residue that no query column matches has no profile score (NaN, counted).
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from protein_performer.alphabet import STANDARD_AMINO_ACIDS
from protein_performer.analysis.blosum import blosum62_matrix
from protein_performer.corpus.families import Family, column_profile
from protein_performer.variants.mutants import Substitution

log = logging.getLogger(__name__)

_AA = {a: i for i, a in enumerate(STANDARD_AMINO_ACIDS)}


def wild_type_columns(family: Family, sequence: str) -> np.ndarray:
    """(n,) the query column of each wild-type residue, -1 where none matches."""
    query = family.query_sequence
    start = query.find(sequence)
    if start >= 0:
        return np.arange(start, start + len(sequence))
    from Bio import Align

    aligner = Align.PairwiseAligner(mode="global", open_gap_score=-10, extend_gap_score=-1, end_gap_score=0)
    aligner.substitution_matrix = blosum62_matrix()
    alignment = aligner.align(sequence, query)[0]
    out = np.full(len(sequence), -1, dtype=np.int64)
    for (a0, a1), (b0, b1) in zip(*alignment.aligned):
        out[a0:a1] = np.arange(b0, b1)
    log.info("%s: the wild type (%d residues) is not part of the query %s; aligned, %d residues map to its "
             "columns", family.path, len(sequence), family.ids[family.query], int((out >= 0).sum()))
    return out


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
