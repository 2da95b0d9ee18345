"""Zero-shot variant effects: mutants, model scores, the family profile, homolog-conditioned scores,
statistics and the ``score-variants`` command.

* :mod:`.mutants` — parse ``H24C:A30G`` mutants and variant CSVs;
* :mod:`.scoring` — model scores read in overlapping windows; BLOSUM62 and unigram baselines;
* :mod:`.profile` — the family's weighted column profile as a scorer;
* :mod:`.context` — a model conditioned on homologs in its window;
* :mod:`.plots` — the DMS heatmap;
* :mod:`.command` — ``protein-performer score-variants``.

Spearman with bootstrap intervals lives in :mod:`protein_performer.stats` (shared with ``score``),
BLOSUM62 in :mod:`protein_performer.analysis.blosum`, windows in :mod:`protein_performer.windows`.
"""

from protein_performer.stats import Correlation, spearman
from protein_performer.variants.command import _read_wild_type, add_arguments, run
from protein_performer.variants.mutants import (
    InvalidVariant,
    Substitution,
    VariantTable,
    apply_mutant,
    parse_mutant,
    read_variants,
)
from protein_performer.variants.plots import plot_substitution_matrix
from protein_performer.variants.scoring import (
    STRATEGIES,
    assign_windows,
    blosum62_scores,
    causal_log_likelihoods,
    masked_log_probs,
    pseudo_log_likelihoods,
    score_mutants,
    substitution_matrix,
    token_windows,
    unigram_scores,
    unmasked_log_probs,
)

__all__ = [
    "InvalidVariant", "Substitution", "VariantTable", "apply_mutant", "parse_mutant", "read_variants",
    "plot_substitution_matrix", "STRATEGIES", "assign_windows", "blosum62_scores", "causal_log_likelihoods",
    "masked_log_probs", "pseudo_log_likelihoods", "score_mutants", "substitution_matrix", "token_windows",
    "unigram_scores", "unmasked_log_probs", "Correlation", "spearman", "add_arguments", "run", "_read_wild_type",
]
