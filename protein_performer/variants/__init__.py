"""Zero-shot variant effects: mutants, model scores, the family profile, homolog-conditioned scores,
statistics and the ``score-variants`` command.

* :mod:`.mutants` — parse ``H24C:A30G`` mutants and variant CSVs, their measurements and labels;
* :mod:`.scoring` — model scores read in overlapping windows; BLOSUM62 and unigram baselines;
* :mod:`.profile` — the family's weighted column profile as a scorer;
* :mod:`.context` — a model conditioned on homologs in its window; :mod:`.mixing` — its mix with
  the profile; :mod:`.heldout` — does a model read a family from its window;
* :mod:`.metrics` — ProteinGym's metrics with bootstrap intervals, and the targets they measure;
* :mod:`.scorers` — every scorer of ``score-variants`` behind one interface (:class:`.scorers.Scorer`),
  with :mod:`.checkpoints` (the models, one in memory at a time);
* :mod:`.options` — a run's typed options; :mod:`.report` — its CSV, heatmap and JSON summary;
* :mod:`.plots` — the DMS heatmap;
* :mod:`.command` — ``protein-performer score-variants``: options -> inputs -> scorers -> metrics -> files.

Spearman with bootstrap intervals lives in :mod:`protein_performer.stats` (shared with ``score``),
BLOSUM62 in :mod:`protein_performer.analysis.blosum`, windows in :mod:`protein_performer.windows`.
"""

from protein_performer.stats import Correlation, spearman
from protein_performer.variants.command import add_arguments, read_wild_type, run, score_variants
from protein_performer.variants.mutants import (
    InvalidVariant,
    Substitution,
    VariantTable,
    apply_mutant,
    parse_mutant,
    read_labels,
    read_measurements,
    read_variants,
)
from protein_performer.variants.options import HomologOptions, ModelOptions, ScoreVariantsOptions
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
    "InvalidVariant", "Substitution", "VariantTable", "apply_mutant", "parse_mutant", "read_labels",
    "read_measurements", "read_variants", "HomologOptions", "ModelOptions", "ScoreVariantsOptions",
    "plot_substitution_matrix", "STRATEGIES", "assign_windows", "blosum62_scores", "causal_log_likelihoods",
    "masked_log_probs", "pseudo_log_likelihoods", "score_mutants", "substitution_matrix", "token_windows",
    "unigram_scores", "unmasked_log_probs", "Correlation", "spearman", "add_arguments", "read_wild_type", "run",
    "score_variants",
]
