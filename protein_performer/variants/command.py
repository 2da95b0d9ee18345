"""``protein-performer score-variants``: zero-shot variant-effect scores (ESM-1v / ProteinGym style).

Mutants are written as in ESM's ``predict.py``: ``H24C`` is wild-type H at position 24 replaced by
C, positions numbered from ``--offset-idx`` (the number of the sequence's first residue);
``H24C:A30G`` is a multi-mutant, scored as the sum over its substitutions (as ProteinGym does).

Scores (higher = predicted fitter), by model kind and strategy:

* masked, ``masked-marginals`` (default): mask each mutated position in the wild type and sum
  ``log p(mutant letter) - log p(wild-type letter)`` there (one forward per mutated position);
* masked, ``wt-marginals``: the same differences read from one unmasked pass over the wild type;
* masked, ``pseudo-ppl``: pseudo-log-likelihood (every position masked in turn) of the mutant
  sequence minus the wild type's; one forward per residue per mutant, so slow; only on request;
* causal: ``log p(mutant sequence) - log p(wild type)``, every token after ``<cls>`` (and ``<eos>``)
  predicted from its prefix.

Proteins longer than ``--window-tokens`` tokens are cut into overlapping windows (stride half a
window) and every position is read from the window that gives it the most context (masked: the
one it is nearest the centre of; causal: the one with the longest prefix), never truncated.

Baselines: BLOSUM62 (``B[wt, mut]`` summed over a multi-mutant) and the unigram log-ratio
(``log u(mut) - log u(wt)`` with u the residue frequencies of the checkpoint's training split, or
of the wild type when the checkpoint does not record them). With ``--score-col`` every score gets
a Spearman correlation with the measurements and a 95% percentile-bootstrap interval over rows.

With ``--homologs`` (the wild type's family): the ``profile`` column (:mod:`.profile`), for each
checkpoint ``NAME+homologs``, the model with homologs in its window (:mod:`.context`), and
``NAME+homologs+profile``, its mix with the profile (:mod:`.mixing`; the weight chosen on held-out
homologs unless ``--profile-weight`` fixes it).

Every output (``--out``, ``--summary``, ``--plot`` and its ``.matrix.csv``) is checked before any
work: none may be an input or another output, and an existing one is replaced only with
``--overwrite``. On a terminal a progress bar follows each scorer and the ``--plot`` matrix
(``--quiet``: none).

A run flows one way (:func:`score_variants`): the flags become typed options
(:mod:`.options`) and are checked; the wild type, the variants and their measurements are read and
checked; the family is read; the scorers (:mod:`.scorers`) are built once and run in turn, each
reading the run's context and the results before it; then the heatmap, the metrics and the files
(:mod:`.report`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from protein_performer.cli_args import deprecated_alias
from protein_performer.corpus.families import Family, read_family
from protein_performer.variants.metrics import Targets, read_targets
from protein_performer.variants.mutants import VariantTable, check_mutated_sequences, detect_columns, read_variants
from protein_performer.variants.options import HomologOptions, ModelOptions, ScoreVariantsOptions
from protein_performer.variants.scoring import STRATEGIES

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``score-variants``; their defaults are :class:`~.options.ScoreVariantsOptions`'."""
    from protein_performer.checkpoint import add_device_argument
    from protein_performer.corpus.fasta import add_unknown_argument
    from protein_performer.progress import add_quiet_argument

    defaults, model = ScoreVariantsOptions, ModelOptions
    parser.add_argument("--checkpoint", nargs="+", type=Path, default=[],
                        help="ProteinLM checkpoints: one score column each (none: only the profile, with --homologs)")
    parser.add_argument("--fasta", required=True, type=Path, help="the wild-type sequence (first record)")
    add_unknown_argument(parser)
    parser.add_argument("--variants", required=True, type=Path, help="CSV with one mutant per row (e.g. a DMS)")
    parser.add_argument("--mutation-col", default=None,
                        help="column of mutants like H24C or H24C:A30G (default: mutant, else mutations)")
    parser.add_argument("--offset-idx", type=int, default=defaults.offset_idx,
                        help=f"number of the sequence's first residue (default {defaults.offset_idx})")
    parser.add_argument("--strategy", default=model.strategy, choices=STRATEGIES,
                        help="masked models: masked-marginals (default), wt-marginals (one pass) or pseudo-ppl "
                             "(slow); causal models always score the log-likelihood ratio")
    parser.add_argument("--score-col", default=None,
                        help="column of measured scores, higher = fitter (default: DMS_score when the CSV has it): "
                             "Spearman, NDCG and top-10%% recall with 95%% CIs, BLOSUM62 and unigram baselines, "
                             "JSON summary")
    parser.add_argument("--label-col", default=None,
                        help="column of binary labels (default: DMS_score_bin, else a column of ClinVar-style "
                             "benign/pathogenic categories): AUC and MCC with 95%% CIs")
    parser.add_argument("--label-fit", default=defaults.label_fit,
                        help="the --label-col value that means fit / benign (default auto: 1 for numbers, benign "
                             "for clinical categories); e.g. 0 for a column where 1 = pathogenic")
    parser.add_argument("--msa-start", type=int, default=None, metavar="N",
                        help="ProteinGym's MSA_start: the alignment's query is the wild type's residues from N "
                             "(1-based) on; a query found elsewhere is refused")
    deprecated_alias(parser, parser.add_argument(
        "--window-tokens", type=int, default=model.window_tokens, metavar="N",
        help="tokens per window (<cls> and <eos> included): a longer wild type is read in overlapping windows of "
             f"N tokens (default {model.window_tokens})"), "--max-length")
    parser.add_argument("--batch-size", type=int, default=model.batch_size)
    parser.add_argument("--bootstrap", type=int, default=defaults.bootstrap,
                        help="bootstrap resamples for the intervals (0: none)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="count invalid rows (left unscored) instead of stopping at the first")
    parser.add_argument("--plot", type=Path, default=None,
                        help="draw the DMS heatmap (all 19 substitutions per position, masked marginals of the "
                             "first masked checkpoint) to this PNG; its matrix goes to PLOT's name with .matrix.csv")
    _add_family_arguments(parser.add_argument_group("the protein's family (homologs)"))
    add_device_argument(parser)
    add_quiet_argument(parser)
    parser.add_argument("--out", required=True, type=Path, help="the input CSV plus one score column per scorer")
    parser.add_argument("--summary", type=Path, default=None,
                        help="JSON summary (default: --out with .json, written when --score-col is given)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def _add_family_arguments(family: argparse._ArgumentGroup) -> None:
    """The flags of :class:`~.options.HomologOptions`."""
    from protein_performer.corpus.families import add_family_arguments

    fam = HomologOptions
    family.add_argument("--homologs", type=Path, default=None,
                        help="the wild type's homologs (A3M, A2M, Stockholm, aligned or plain FASTA): adds the "
                             "profile scorer, each model with homologs in its window, and the model-profile mix")
    add_family_arguments(family, query_help="id of the family's query record (default: the first)")
    family.add_argument("--contexts", type=int, default=fam.contexts,
                        help=f"independent draws of homologs into the window; scores are averaged (default "
                             f"{fam.contexts})")
    deprecated_alias(family, family.add_argument(
        "--context-tokens", type=int, default=fam.context_tokens, metavar="N",
        help=f"tokens in a window of homologs plus the wild type (default {fam.context_tokens}; 0: no homologs in "
             "the window, the profile and the mix only)"), "--context-length")
    family.add_argument("--pseudocount", type=float, default=fam.pseudocount,
                        help=f"of the profile (default {fam.pseudocount})")
    family.add_argument("--profile-weight", default=fam.profile_weight,
                        help="w in (1 - w) model + w profile: a number in [0, 1], or auto (default): the w that "
                             "best predicts hidden residues of held-out homologs (never the assay)")
    family.add_argument("--seed", type=int, default=fam.seed, help="seed of the context draws")
    family.add_argument("--identity", type=float, default=fam.identity,
                        help="sequence weight = 1 / members within this identity, as given to prepare --family "
                             f"(default {fam.identity})")
    family.add_argument("--split-identity", type=float, default=fam.split_identity,
                        help="prepare --family's --split-identity: the mix weight is chosen on the members that "
                             f"dataset held out (default {fam.split_identity})")
    family.add_argument("--valid-fraction", type=float, default=fam.valid_fraction,
                        help=f"prepare's --valid-fraction (default {fam.valid_fraction})")
    family.add_argument("--test-fraction", type=float, default=fam.test_fraction,
                        help=f"prepare's --test-fraction (default {fam.test_fraction})")


def run(args: argparse.Namespace) -> int:
    return score_variants(ScoreVariantsOptions.from_args(args))


def score_variants(options: ScoreVariantsOptions) -> int:
    """One ``score-variants`` run (module docstring); raises ``ValueError`` naming the input and
    the fix for anything refused, before any model work where it can be seen early."""
    from protein_performer.checkpoint import default_device
    from protein_performer.outputs import locked
    from protein_performer.variants.checkpoints import CheckpointModels
    from protein_performer.variants.report import variant_summary, write_plot, write_scores_csv, write_summary
    from protein_performer.variants.scorers import ScoringContext, build_scorers, run_scorers

    options.check()
    sequence = read_wild_type(options.fasta, options.unknown)
    table = read_variants(options.variants, sequence, mutation_col=options.mutation_col, offset=options.offset_idx,
                          skip_invalid=options.skip_invalid)
    checked = check_mutated_sequences(table, sequence)
    if checked:
        log.info("%s: mutated_sequence agrees with the wild type and the mutant on %d rows", options.variants, checked)
    targets = _targets(options, table)
    outputs = options.output_paths(summary=targets.any)
    with locked(options.out, "--out"):
        family = _read_family(options.family)
        models = CheckpointModels(options.model.device or default_device(), family, sequence, options.msa_start)
        context = ScoringContext(options, sequence, table, family, models)
        scored = run_scorers(build_scorers(options, family), context)
        plot = write_plot(context, scored, outputs["--plot's matrix"]) if options.plot else None
        summary = variant_summary(options, table, targets, scored, plot) if targets.any else None
        write_scores_csv(options.out, table, scored)
        if summary is not None:
            write_summary(outputs["--summary"], summary)
    return 0


def read_wild_type(path: Path, unknown: str = "error") -> str:
    """The first record of a FASTA file (``unknown``: :class:`~protein_performer.corpus.fasta.CleaningPolicy`'s)."""
    from protein_performer.corpus.fasta import CleaningPolicy, read_records

    records = list(read_records(path, CleaningPolicy(unknown=unknown)))
    if not records:
        raise ValueError(f"{path}: no sequence; give the wild type as a FASTA record")
    if len(records) > 1:
        log.warning("%s: %d records; the first (%s) is the wild type", path, len(records), records[0].id)
    return records[0].sequence


def _targets(options: ScoreVariantsOptions, table: VariantTable) -> Targets:
    """The measured column and binary label, named or detected the ProteinGym way, checked before
    any work: a correlation needs two distinct values, AUC both classes, among the scorable rows."""
    detected = detect_columns(table.path, table.header, table.rows)
    score_col = options.score_col or detected["score"]
    label_col = options.label_col or detected["label"]
    for flag, given, found in (("--score-col", options.score_col, score_col),
                               ("--label-col", options.label_col, label_col)):
        if given is None and found:
            log.info("%s: column %r detected for %s (%s names another)", table.path, found, flag, flag)
    return read_targets(table, score_col, label_col, options.label_fit)


def _read_family(options: HomologOptions) -> Family | None:
    """The wild type's family (``--homologs``), None without one."""
    if options.path is None:
        return None
    family = read_family(options.path, query=options.query, format=options.format, identity=options.identity)
    log.info("%s: %d homologs (%s), Neff %.1f", options.path, len(family), family.format, family.neff)
    return family
