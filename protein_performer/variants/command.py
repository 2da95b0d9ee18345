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
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protein_performer.alphabet import ALPHABET, STANDARD_AMINO_ACIDS
from protein_performer.cli_args import deprecated_alias
from protein_performer.outputs import written_atomically
from protein_performer.progress import add_quiet_argument, from_args
from protein_performer.variants.metrics import assay_metrics, check_target
from protein_performer.variants.mutants import (
    VariantTable,
    check_mutated_sequences,
    detect_columns,
    read_labels,
    read_variants,
)
from protein_performer.variants.plots import plot_substitution_matrix
from protein_performer.variants.scoring import (
    STRATEGIES,
    blosum62_scores,
    score_mutants,
    substitution_matrix,
    unigram_scores,
)

log = logging.getLogger(__name__)
PLOT_SUFFIXES = (".png", ".pdf", ".svg")

# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from protein_performer.checkpoint import add_device_argument

    parser.add_argument("--checkpoint", nargs="+", type=Path, default=[],
                        help="ProteinLM checkpoints: one score column each (none: only the profile, with --homologs)")
    from protein_performer.corpus.families import add_family_arguments
    from protein_performer.corpus.fasta import add_unknown_argument

    parser.add_argument("--fasta", required=True, type=Path, help="the wild-type sequence (first record)")
    add_unknown_argument(parser)
    parser.add_argument("--variants", required=True, type=Path, help="CSV with one mutant per row (e.g. a DMS)")
    parser.add_argument("--mutation-col", default=None,
                        help="column of mutants like H24C or H24C:A30G (default: mutant, else mutations)")
    parser.add_argument("--offset-idx", type=int, default=1, help="number of the sequence's first residue (default 1)")
    parser.add_argument("--strategy", default="masked-marginals", choices=STRATEGIES,
                        help="masked models: masked-marginals (default), wt-marginals (one pass) or pseudo-ppl "
                             "(slow); causal models always score the log-likelihood ratio")
    parser.add_argument("--score-col", default=None,
                        help="column of measured scores, higher = fitter (default: DMS_score when the CSV has it): "
                             "Spearman, NDCG and top-10%% recall with 95%% CIs, BLOSUM62 and unigram baselines, "
                             "JSON summary")
    parser.add_argument("--label-col", default=None,
                        help="column of binary labels (default: DMS_score_bin, else a column of ClinVar-style "
                             "benign/pathogenic categories): AUC and MCC with 95%% CIs")
    parser.add_argument("--label-fit", default="auto",
                        help="the --label-col value that means fit / benign (default auto: 1 for numbers, benign "
                             "for clinical categories); e.g. 0 for a column where 1 = pathogenic")
    parser.add_argument("--msa-start", type=int, default=None, metavar="N",
                        help="ProteinGym's MSA_start: the alignment's query is the wild type's residues from N "
                             "(1-based) on; a query found elsewhere is refused")
    deprecated_alias(parser, parser.add_argument(
        "--window-tokens", type=int, default=1024, metavar="N",
        help="tokens per window (<cls> and <eos> included): a longer wild type is read in overlapping windows of "
             "N tokens (default 1024)"), "--max-length")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the intervals (0: none)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="count invalid rows (left unscored) instead of stopping at the first")
    parser.add_argument("--plot", type=Path, default=None,
                        help="draw the DMS heatmap (all 19 substitutions per position, masked marginals of the "
                             "first masked checkpoint) to this PNG; its matrix goes to PLOT's name with .matrix.csv")
    family = parser.add_argument_group("the protein's family (homologs)")
    family.add_argument("--homologs", type=Path, default=None,
                        help="the wild type's homologs (A3M, A2M, Stockholm, aligned or plain FASTA): adds the "
                             "profile scorer, each model with homologs in its window, and the model-profile mix")
    add_family_arguments(family, query_help="id of the family's query record (default: the first)")
    family.add_argument("--contexts", type=int, default=4,
                        help="independent draws of homologs into the window; scores are averaged (default 4)")
    deprecated_alias(family, family.add_argument(
        "--context-tokens", type=int, default=8192, metavar="N",
        help="tokens in a window of homologs plus the wild type (default 8192; 0: no homologs in the window, the "
             "profile and the mix only)"), "--context-length")
    family.add_argument("--pseudocount", type=float, default=0.5, help="of the profile (default 0.5)")
    family.add_argument("--profile-weight", default="auto",
                        help="w in (1 - w) model + w profile: a number in [0, 1], or auto (default): the w that "
                             "best predicts hidden residues of held-out homologs (never the assay)")
    family.add_argument("--seed", type=int, default=0, help="seed of the context draws")
    family.add_argument("--identity", type=float, default=0.8,
                        help="sequence weight = 1 / members within this identity, as given to prepare --family "
                             "(default 0.8)")
    family.add_argument("--split-identity", type=float, default=0.8,
                        help="prepare --family's --split-identity: the mix weight is chosen on the members that "
                             "dataset held out (default 0.8)")
    family.add_argument("--valid-fraction", type=float, default=0.05, help="prepare's --valid-fraction (default 0.05)")
    family.add_argument("--test-fraction", type=float, default=0.05, help="prepare's --test-fraction (default 0.05)")
    add_device_argument(parser)
    add_quiet_argument(parser)
    parser.add_argument("--out", required=True, type=Path, help="the input CSV plus one score column per scorer")
    parser.add_argument("--summary", type=Path, default=None,
                        help="JSON summary (default: --out with .json, written when --score-col is given)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def _read_wild_type(path: Path, unknown: str = "error") -> str:
    from protein_performer.corpus.fasta import CleaningPolicy, read_records

    records = list(read_records(path, CleaningPolicy(unknown=unknown)))
    if not records:
        raise ValueError(f"{path}: no sequence; give the wild type as a FASTA record")
    if len(records) > 1:
        log.warning("%s: %d records; the first (%s) is the wild type", path, len(records), records[0].id)
    return records[0].sequence


def _column_name(path: Path, taken: set[str]) -> str:
    return _unique(path.stem, taken)


def _measured(table: VariantTable, column: str) -> np.ndarray:
    if column not in table.header:
        raise ValueError(f"{table.path}: no column {column!r} for --score-col; columns: {', '.join(table.header[:12])}")
    col = table.header.index(column)
    values, bad = [], []
    for number, row in enumerate(table.rows, start=1):
        text = row[col].strip() if col < len(row) else ""
        try:
            values.append(float(text) if text else math.nan)
        except ValueError:
            values.append(math.nan)
            bad.append((number, text))
    if bad and not np.isfinite(values).any():
        raise ValueError(f"{table.path}: --score-col {column!r} is not numeric (row {bad[0][0]}: {bad[0][1]!r}); "
                         "name the column of measured scores")
    if bad:
        log.warning("%s: %d rows of --score-col %r are not numbers (first: row %d, %r); they are left out of the "
                    "correlations", table.path, len(bad), column, bad[0][0], bad[0][1])
    return np.asarray(values)


def _outputs(args: argparse.Namespace, summary: bool) -> dict[str, Path]:
    """Every file this run writes, checked before any work: none is an input, none repeats another,
    and none exists unless ``--overwrite``."""
    from protein_performer.outputs import check_output

    outputs = {"--out": args.out}
    if summary:
        outputs["--summary"] = args.summary or args.out.with_suffix(".json")
    if args.plot:
        outputs["--plot"] = args.plot
        outputs["--plot's matrix"] = args.plot.with_suffix(".matrix.csv")
    inputs = [args.variants, args.fasta, *args.checkpoint, *([args.homologs] if args.homologs else [])]
    seen: dict[Path, str] = {}
    for flag, path in outputs.items():
        check_output(path, "file", inputs=inputs, flag=flag, existing_ok=args.overwrite)
        key = path.resolve()
        if key in seen or any(key == Path(p).resolve() for p in inputs):
            raise ValueError(f"{flag} {path} is also {seen.get(key, 'an input')}; choose another name")
        seen[key] = flag
    return outputs


def _check_family_arguments(args: argparse.Namespace) -> float | None:
    if not args.checkpoint and not args.homologs:
        raise ValueError("nothing to score: give --checkpoint, --homologs, or both")
    if args.contexts < 1:
        raise ValueError(f"--contexts must be >= 1, got {args.contexts}")
    if args.context_tokens < 0:
        raise ValueError(f"--context-tokens must be >= 0 (0: no homologs in the window), got {args.context_tokens}")
    if args.profile_weight == "auto":
        return None
    try:
        weight = float(args.profile_weight)
    except ValueError:
        raise ValueError(f"--profile-weight must be a number in [0, 1] or auto, got {args.profile_weight!r}") from None
    if not 0 <= weight <= 1:
        raise ValueError(f"--profile-weight must be in [0, 1], got {weight}")
    return weight


@dataclass
class _Targets:
    """What the scores are measured against: a continuous column, a binary label, or both."""

    score_col: str | None
    label_col: str | None
    measured: np.ndarray | None
    label: np.ndarray | None

    @property
    def any(self) -> bool:
        return self.measured is not None or self.label is not None


def _targets(args: argparse.Namespace, table: VariantTable) -> _Targets:
    """The measured column and binary label, named or detected the ProteinGym way, checked before
    any work: a correlation needs two distinct values, AUC both classes, among the scorable rows."""
    detected = detect_columns(table.path, table.header, table.rows)
    score_col = args.score_col or detected["score"]
    label_col = args.label_col or detected["label"]
    for flag, given, found in (("--score-col", args.score_col, score_col), ("--label-col", args.label_col, label_col)):
        if given is None and found:
            log.info("%s: column %r detected for %s (%s names another)", table.path, found, flag, flag)
    scorable = np.array([m is not None for m in table.mutants])
    measured = _measured(table, score_col) if score_col else None
    label = read_labels(table, label_col, args.label_fit) if label_col else None
    if measured is not None:
        check_target(measured[scorable], binary=False, source=f"{table.path}: --score-col {score_col!r}")
    if label is not None:
        check_target(label[scorable], binary=True, source=f"{table.path}: --label-col {label_col!r}")
    return _Targets(score_col, label_col, measured, label)


def _check_numbers(args: argparse.Namespace) -> None:
    """Numeric flags, before any work."""
    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--window-tokens", args.window_tokens, 8),
                             ("--bootstrap", args.bootstrap, 0), ("--seed", args.seed, 0)):
        if value < low:
            raise ValueError(f"{flag} must be >= {low}, got {value}")
    for flag, value in (("--identity", args.identity), ("--split-identity", args.split_identity)):
        if not 0 < value <= 1:
            raise ValueError(f"{flag} must be in (0, 1], got {value}")
    from protein_performer.corpus.families import check_split_fractions

    check_split_fractions(args.valid_fraction, args.test_fraction, ("--valid-fraction", "--test-fraction"))
    if args.msa_start is not None and args.msa_start < 1:
        raise ValueError(f"--msa-start is 1-based, got {args.msa_start}")
    if not math.isfinite(args.pseudocount) or args.pseudocount <= 0:
        raise ValueError(f"--pseudocount must be a positive number, got {args.pseudocount}")
    if args.plot is not None and args.plot.suffix.lower() not in PLOT_SUFFIXES:
        raise ValueError(f"--plot {args.plot}: give a file name ending in {', '.join(PLOT_SUFFIXES)} "
                         "(the figure's format is taken from it)")


def run(args: argparse.Namespace) -> int:
    from protein_performer.outputs import locked

    _check_numbers(args)
    fixed_weight = _check_family_arguments(args)
    sequence = _read_wild_type(args.fasta, args.unknown)
    table = read_variants(args.variants, sequence, mutation_col=args.mutation_col, offset=args.offset_idx,
                          skip_invalid=args.skip_invalid)
    checked = check_mutated_sequences(table, sequence)
    if checked:
        log.info("%s: mutated_sequence agrees with the wild type and the mutant on %d rows", args.variants, checked)
    targets = _targets(args, table)
    outputs = _outputs(args, summary=targets.any)
    with locked(args.out, "--out"):
        return _score_all(args, sequence, table, targets, outputs, fixed_weight)


def _score_all(args, sequence: str, table: VariantTable, targets: _Targets, outputs: dict[str, Path],
               fixed_weight: float | None) -> int:
    from protein_performer.baselines import unigram_probabilities
    from protein_performer.checkpoint import default_device, load_checkpoint

    family = profile = None
    if args.homologs:
        family, profile = _family_scores(args, sequence, table)
    device = args.device or default_device()
    taken, columns, models, unigram = set(table.header), {}, [], None
    if profile is not None:
        columns[_unique("profile", taken)] = profile["scores"]
    for path in args.checkpoint:
        loaded = load_checkpoint(path)
        model = loaded.model.to(device)
        causal = loaded.config.causal
        name = _column_name(path, taken)
        strategy = "log-likelihood-ratio" if causal else args.strategy
        log.info("%s: scoring %d mutants (%s)", path, sum(m is not None for m in table.mutants), strategy)
        positions = _frame_positions(path, loaded.config, family, sequence, model, args.msa_start)
        columns[name] = score_mutants(model, sequence, table.mutants, causal=causal, strategy=args.strategy,
                                      max_length=args.window_tokens, batch_size=args.batch_size,
                                      progress=from_args(args), positions=positions)
        models.append({"checkpoint": str(path), "column": name, "objective": loaded.objective, "strategy": strategy})
        if family is not None:
            _family_columns(args, model, family, sequence, table, name, columns, models, profile, fixed_weight, taken)
        if unigram is None:
            unigram = unigram_probabilities(loaded.train_token_counts)
        if args.plot and not causal and not any(m.get("plot") for m in models):
            _plot(args, model, sequence, positions, outputs, name, models)
    if args.plot and not any(m.get("plot") for m in models):
        log.warning("--plot needs a masked checkpoint (the heatmap is of masked marginals); none was given")
    _write_csv(args.out, table, columns)
    log.info("wrote %s (%d rows, %d score columns)", args.out, len(table.rows), len(columns))
    if targets.any:
        _write_summary(args, table, targets, columns, models, profile, unigram, sequence, outputs["--summary"])
    return 0


def _plot(args, model, sequence: str, positions, outputs: dict[str, Path], name: str, models: list[dict]) -> None:
    matrix = substitution_matrix(model, sequence, max_length=args.window_tokens, batch_size=args.batch_size,
                                 progress=from_args(args), positions=positions)
    _write_matrix(outputs["--plot's matrix"], matrix)
    plot_substitution_matrix(matrix, sequence, args.offset_idx, args.plot, title=f"{name}: masked marginals")
    log.info("wrote %s and its matrix %s", args.plot, outputs["--plot's matrix"])
    models[-1]["plot"] = str(args.plot)
    models[-1]["plot_matrix"] = str(outputs["--plot's matrix"])


def _write_summary(args, table: VariantTable, targets: _Targets, columns: dict[str, np.ndarray], models: list[dict],
                   profile: dict | None, unigram, sequence: str, path: Path) -> None:
    """The JSON summary: every scorer's ProteinGym metrics (and Spearman fields, as before) and the
    baselines'."""
    from protein_performer.baselines import unigram_probabilities

    unigram_source = "training split of the first checkpoint"
    if unigram is None:
        counts = np.bincount(ALPHABET.encode(sequence), minlength=len(ALPHABET))
        unigram, unigram_source = unigram_probabilities(counts), "wild-type composition (no training counts)"
    baselines = {"blosum62": blosum62_scores(table.mutants), "unigram": unigram_scores(table.mutants, unigram)}

    def measure(scores: np.ndarray) -> dict:
        metrics = assay_metrics(scores, targets.measured, targets.label, bootstrap=args.bootstrap, seed=0)
        out = {"metrics": {k: v.as_dict() for k, v in metrics.items()}, "scored": int(np.isfinite(scores).sum())}
        if "spearman" in metrics:
            out.update(spearman=metrics["spearman"].value, ci95=metrics["spearman"].as_dict()["ci95"],
                       n=metrics["spearman"].n)
        return out

    for m in models:
        m.update(measure(columns[m["column"]]))
    summary = {
        "variants": str(args.variants), "fasta": str(args.fasta), "score_col": targets.score_col,
        "label_col": targets.label_col, "offset_idx": args.offset_idx, "rows": len(table.rows),
        "invalid_rows": len(table.problems), "models": models,
        "baselines": {name: measure(s) for name, s in baselines.items()},
        "unigram_source": unigram_source,
    }
    if profile is not None:
        summary["profile"] = {**{k: v for k, v in profile.items() if k != "scores"}, **measure(profile["scores"])}
    _common_rows(summary, columns, profile, targets)
    text = json.dumps(_finite(summary), indent=2, allow_nan=False)
    with written_atomically(path) as tmp:
        tmp.write_text(text + "\n")
    scorers = [(m["column"], m) for m in models]
    if profile is not None:
        scorers.append(("profile", summary["profile"]))
    scorers += [(f"{k} baseline", v) for k, v in summary["baselines"].items()]
    for name, m in scorers:
        log.info("%s: %s (%d rows scored)", name, ", ".join(f"{k} {_fmt(v)}" for k, v in m["metrics"].items()),
                 m["scored"])
    log.info("wrote %s", path)


def _common_rows(summary: dict, columns: dict[str, np.ndarray], profile: dict | None, targets: _Targets) -> None:
    """Add every scorer's metrics (no interval) on the rows that all of them score: a region-only
    alignment's profile scores fewer rows than the models, and is compared with them there."""
    entries = [(m, columns[m["column"]]) for m in summary["models"]]
    if profile is not None:
        entries.append((summary["profile"], profile["scores"]))
    if not entries:
        return
    keep = np.logical_and.reduce([np.isfinite(scores) for _, scores in entries])
    summary["common_rows"] = int(keep.sum())
    for entry, scores in entries:
        metrics = assay_metrics(np.where(keep, scores, np.nan), targets.measured, targets.label, bootstrap=0)
        entry["metrics_common_rows"] = {k: v.as_dict() for k, v in metrics.items()}


def _fmt(metric: dict) -> str:
    if metric["value"] is None:
        return "undefined"
    ci = metric["ci95"]
    return f"{metric['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _frame_positions(path: Path, config, family, sequence: str, model, region_start: int | None = None
                     ) -> np.ndarray | None:
    """The wild type's positions in the family's frame for a model trained with ``aligned_positions``
    (its FAVOR+ features see absolute positions, so it must read the wild type where training put
    that site), else None."""
    if not config.aligned_positions:
        return None
    if family is None or not family.aligned:
        raise ValueError(f"{path}: this model counts positions in its family's alignment (aligned_positions), so "
                         "the wild type must be placed in that frame: give --homologs with the aligned family "
                         "it was trained on (A3M, A2M, Stockholm or aligned FASTA)")
    from protein_performer.variants.context import wild_type_positions

    return wild_type_positions(family, sequence, model, region_start=region_start)


def _family_scores(args: argparse.Namespace, sequence: str, table: VariantTable) -> tuple[object, dict | None]:
    """Read the family; the profile column when it is aligned."""
    from protein_performer.corpus.families import read_family
    from protein_performer.variants.profile import (
        profile_log_probs,
        profile_scores,
        wild_type_columns,
    )

    family = read_family(args.homologs, query=args.query, format=args.family_format, identity=args.identity)
    log.info("%s: %d homologs (%s), Neff %.1f", args.homologs, len(family), family.format, family.neff)
    if not family.aligned:
        log.warning("%s: unaligned homologs: no profile scorer (align them with `protein-performer homologs`)",
                    args.homologs)
        return family, None
    columns = wild_type_columns(family, sequence, region_start=args.msa_start)
    outside = sum(1 for subs in table.mutants if subs is not None and any(columns[x.index] < 0 for x in subs))
    if outside:
        log.warning("%s: %d mutants touch a residue outside the alignment's columns: no profile score (the model "
                    "alone scores them, and the mix takes the model's score there)", args.homologs, outside)
    scores = profile_scores(profile_log_probs(family, pseudocount=args.pseudocount), columns, table.mutants)
    info = {"homologs": str(args.homologs), "members": len(family), "neff": round(family.neff, 3),
            "pseudocount": args.pseudocount, "wild_type_residues_in_columns": int((columns >= 0).sum()),
            "mutants_outside_columns": outside,
            "scores": scores}
    return family, info


def _family_columns(args, model, family, sequence, table, name, columns, models, profile, fixed_weight,
                    taken) -> None:
    """Add ``NAME+homologs`` (the model with homologs in its window) and the mix with the profile."""
    from protein_performer.variants.context import (
        ContextOptions,
        causal_context_scores,
        masked_context_scores,
    )
    from protein_performer.variants.mixing import choose_profile_weight, mix_scores

    base = name
    context_length = args.context_tokens or None
    if context_length and model.config.segment_attention:
        log.info("%s: per-protein attention (segment_attention): homologs in the window cannot reach the wild type, "
                 "so there is no NAME+homologs column; the profile is mixed with the model alone", name)
        context_length = None
    if context_length:
        options = ContextOptions(context_length=context_length, contexts=args.contexts, seed=args.seed,
                                 batch_size=args.batch_size)
        fn = causal_context_scores if model.config.causal else masked_context_scores
        base = _unique(f"{name}+homologs", taken)
        columns[base] = fn(model, family, sequence, table.mutants, options, progress=from_args(args))
        models.append({"column": base, "checkpoint": models[-1]["checkpoint"], "objective": models[-1]["objective"],
                       "strategy": models[-1]["strategy"] + " with homologs in the window",
                       "contexts": args.contexts, "context_length": context_length})
    if profile is None:
        return
    if fixed_weight is None:
        choice = choose_profile_weight(model, family, context_length=context_length, seed=args.seed,
                                       pseudocount=args.pseudocount, progress=from_args(args),
                                       split=dict(split_identity=args.split_identity,
                                                  valid_fraction=args.valid_fraction,
                                                  test_fraction=args.test_fraction))
        weight, rule = choice.weight, {"rule": "held-out homologs' hidden residues (variants.mixing)",
                                       "residues": choice.residues, "members": choice.members,
                                       "log_likelihood": {str(k): round(v, 5) for k, v in
                                                          choice.log_likelihood.items()}}
    else:
        weight, rule = fixed_weight, {"rule": "--profile-weight"}
    mixed = _unique(f"{base}+profile", taken)
    columns[mixed] = mix_scores(columns[base], profile["scores"], weight)
    models.append({"column": mixed, "checkpoint": models[-1]["checkpoint"], "objective": models[-1]["objective"],
                   "strategy": f"(1 - w) {base} + w profile", "profile_weight": weight, "profile_weight_choice": rule})


def _unique(name: str, taken: set[str]) -> str:
    out, k = name, 2
    while out in taken:
        out, k = f"{name}_{k}", k + 1
    taken.add(out)
    return out


def _write_matrix(path: Path, matrix: np.ndarray) -> None:
    with written_atomically(path) as tmp:
        np.savetxt(tmp, matrix, delimiter=",", fmt="%.6f", header=",".join(STANDARD_AMINO_ACIDS), comments="")


def _finite(value):
    """``value`` with every non-finite float (an undefined correlation) as None, for strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_csv(path: Path, table: VariantTable, columns: dict[str, np.ndarray]) -> None:
    """The input rows verbatim plus the score columns (empty for skipped rows), written atomically."""
    with written_atomically(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([*table.header, *columns])
        for k, row in enumerate(table.rows):
            row = row + [""] * (len(table.header) - len(row))
            writer.writerow([*row, *("" if not math.isfinite(c[k]) else f"{c[k]:.6g}" for c in columns.values())])
