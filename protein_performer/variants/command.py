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
from dataclasses import asdict
from pathlib import Path

import numpy as np

from protein_performer.alphabet import ALPHABET, STANDARD_AMINO_ACIDS
from protein_performer.cli_args import deprecated_alias
from protein_performer.outputs import written_atomically
from protein_performer.progress import add_quiet_argument, from_args
from protein_performer.stats import spearman
from protein_performer.variants.mutants import VariantTable, read_variants
from protein_performer.variants.plots import plot_substitution_matrix
from protein_performer.variants.scoring import (
    STRATEGIES,
    blosum62_scores,
    score_mutants,
    substitution_matrix,
    unigram_scores,
)

log = logging.getLogger(__name__)

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
    parser.add_argument("--mutation-col", default="mutant", help="column of mutants like H24C or H24C:A30G")
    parser.add_argument("--offset-idx", type=int, default=1, help="number of the sequence's first residue (default 1)")
    parser.add_argument("--strategy", default="masked-marginals", choices=STRATEGIES,
                        help="masked models: masked-marginals (default), wt-marginals (one pass) or pseudo-ppl "
                             "(slow); causal models always score the log-likelihood ratio")
    parser.add_argument("--score-col", default=None, help="column of measured scores: Spearman with 95%% CIs, "
                                                          "BLOSUM62 and unigram baselines, JSON summary")
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


def _outputs(args: argparse.Namespace) -> dict[str, Path]:
    """Every file this run writes, checked before any work: none is an input, none repeats another,
    and none exists unless ``--overwrite``."""
    from protein_performer.outputs import check_output

    outputs = {"--out": args.out}
    if args.score_col:
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


def run(args: argparse.Namespace) -> int:
    from protein_performer.baselines import unigram_probabilities
    from protein_performer.checkpoint import default_device, load_checkpoint

    fixed_weight = _check_family_arguments(args)
    outputs = _outputs(args)
    sequence = _read_wild_type(args.fasta, args.unknown)
    table = read_variants(args.variants, sequence, mutation_col=args.mutation_col, offset=args.offset_idx,
                          skip_invalid=args.skip_invalid)
    measured = _measured(table, args.score_col) if args.score_col else None
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
        positions = _frame_positions(path, loaded.config, family, sequence, model)
        columns[name] = score_mutants(model, sequence, table.mutants, causal=causal, strategy=args.strategy,
                                      max_length=args.window_tokens, batch_size=args.batch_size,
                                      progress=from_args(args), positions=positions)
        models.append({"checkpoint": str(path), "column": name, "objective": loaded.objective, "strategy": strategy})
        if family is not None:
            _family_columns(args, model, family, sequence, table, name, columns, models, profile, fixed_weight, taken)
        if unigram is None:
            unigram = unigram_probabilities(loaded.train_token_counts)
        if args.plot and not causal and not any(m.get("plot") for m in models):
            matrix = substitution_matrix(model, sequence, max_length=args.window_tokens, batch_size=args.batch_size,
                                         progress=from_args(args), positions=positions)
            _write_matrix(outputs["--plot's matrix"], matrix)
            plot_substitution_matrix(matrix, sequence, args.offset_idx, args.plot, title=f"{name}: masked marginals")
            log.info("wrote %s and its matrix %s", args.plot, outputs["--plot's matrix"])
            models[-1]["plot"] = str(args.plot)
            models[-1]["plot_matrix"] = str(outputs["--plot's matrix"])
    if args.plot and not any(m.get("plot") for m in models):
        log.warning("--plot needs a masked checkpoint (the heatmap is of masked marginals); none was given")
    _write_csv(args.out, table, columns)
    log.info("wrote %s (%d rows, %d score columns)", args.out, len(table.rows), len(columns))
    if measured is None:
        return 0
    unigram_source = "training split of the first checkpoint"
    if unigram is None:
        counts = np.bincount(ALPHABET.encode(sequence), minlength=len(ALPHABET))
        unigram, unigram_source = unigram_probabilities(counts), "wild-type composition (no training counts)"
    baselines = {"blosum62": blosum62_scores(table.mutants), "unigram": unigram_scores(table.mutants, unigram)}
    kw = dict(bootstrap=args.bootstrap, seed=0)

    def corr(scores: np.ndarray) -> dict:
        return {k: v for k, v in asdict(spearman(scores, measured, **kw)).items() if k != "name"}

    for m in models:
        m.update(corr(columns[m["column"]]))
    summary = {
        "variants": str(args.variants), "fasta": str(args.fasta), "score_col": args.score_col,
        "offset_idx": args.offset_idx, "rows": len(table.rows), "invalid_rows": len(table.problems),
        "models": models,
        "baselines": {name: corr(s) for name, s in baselines.items()},
        "unigram_source": unigram_source,
    }
    if profile is not None:
        summary["profile"] = {**{k: v for k, v in profile.items() if k != "scores"}, **corr(profile["scores"])}
    text = json.dumps(_finite(summary), indent=2, allow_nan=False)
    with written_atomically(outputs["--summary"]) as tmp:
        tmp.write_text(text + "\n")
    for m in models:
        log.info("%s: Spearman %s (95%% CI %s) on %d rows", m["column"], m["spearman"], m["ci95"], m["n"])
    if profile is not None:
        log.info("profile: Spearman %s (95%% CI %s)", summary["profile"]["spearman"], summary["profile"]["ci95"])
    for name, b in summary["baselines"].items():
        log.info("%s baseline: Spearman %s (95%% CI %s)", name, b["spearman"], b["ci95"])
    log.info("wrote %s", outputs["--summary"])
    return 0


def _frame_positions(path: Path, config, family, sequence: str, model) -> np.ndarray | None:
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

    return wild_type_positions(family, sequence, model)


def _family_scores(args: argparse.Namespace, sequence: str, table: VariantTable) -> tuple[object, dict | None]:
    """Read the family; the profile column when it is aligned."""
    from protein_performer.corpus.families import read_family
    from protein_performer.variants.profile import (
        profile_log_probs,
        profile_scores,
        wild_type_columns,
    )

    family = read_family(args.homologs, query=args.query, format=args.family_format)
    log.info("%s: %d homologs (%s), Neff %.1f", args.homologs, len(family), family.format, family.neff)
    if not family.aligned:
        log.warning("%s: unaligned homologs: no profile scorer (align them with `protein-performer homologs`)",
                    args.homologs)
        return family, None
    columns = wild_type_columns(family, sequence)
    scores = profile_scores(profile_log_probs(family, pseudocount=args.pseudocount), columns, table.mutants)
    info = {"homologs": str(args.homologs), "members": len(family), "neff": round(family.neff, 3),
            "pseudocount": args.pseudocount, "wild_type_residues_in_columns": int((columns >= 0).sum()),
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
                                       pseudocount=args.pseudocount, progress=from_args(args))
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
