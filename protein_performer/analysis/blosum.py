"""BLOSUM62 in one place: Biopython's copy (no download), as the 20 x 20 array that the similarity
analysis compares with and the ``score-variants`` baseline sums, and as Biopython's own matrix for
its aligner. numpy and Biopython only: ``variants`` imports it without the rest of ``analysis``."""

from __future__ import annotations

import numpy as np

from protein_performer.alphabet import STANDARD_AMINO_ACIDS


def blosum62_matrix():
    """Biopython's BLOSUM62 (``Bio.Align.substitution_matrices.Array``), e.g. for ``PairwiseAligner``."""
    from Bio.Align import substitution_matrices

    return substitution_matrices.load("BLOSUM62")


def blosum62() -> np.ndarray:
    """(20, 20) BLOSUM62 scores in ``STANDARD_AMINO_ACIDS`` order, float64."""
    m = blosum62_matrix()
    return np.array([[m[a][b] for b in STANDARD_AMINO_ACIDS] for a in STANDARD_AMINO_ACIDS], dtype=np.float64)
