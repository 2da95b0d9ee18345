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

Proteins longer than ``--max-length`` tokens are cut into overlapping windows (stride half a
window) and every position is read from the window that gives it the most context (masked: the
one it is nearest the centre of; causal: the one with the longest prefix), never truncated.

Baselines: BLOSUM62 (``B[wt, mut]`` summed over a multi-mutant) and the unigram log-ratio
(``log u(mut) - log u(wt)`` with u the residue frequencies of the checkpoint's training split, or
of the wild type when the checkpoint does not record them). With ``--score-col`` every score gets
a Spearman correlation with the measurements and a 95% percentile-bootstrap interval over rows.
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
from protein_performer.variants.mutants import VariantTable, read_variants
from protein_performer.variants.plots import plot_substitution_matrix
from protein_performer.variants.scoring import (
    STRATEGIES,
    blosum62_scores,
    score_mutants,
    substitution_matrix,
    unigram_scores,
)
from protein_performer.variants.stats import spearman

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from protein_performer.checkpoint import add_device_argument

    parser.add_argument("--checkpoint", required=True, nargs="+", type=Path,
                        help="one or more ProteinLM checkpoints: one score column each")
    parser.add_argument("--fasta", required=True, type=Path, help="the wild-type sequence (first record)")
    parser.add_argument("--variants", required=True, type=Path, help="CSV with one mutant per row (e.g. a DMS)")
    parser.add_argument("--mutation-col", default="mutant", help="column of mutants like H24C or H24C:A30G")
    parser.add_argument("--offset-idx", type=int, default=1, help="number of the sequence's first residue (default 1)")
    parser.add_argument("--strategy", default="masked-marginals", choices=STRATEGIES,
                        help="masked models: masked-marginals (default), wt-marginals (one pass) or pseudo-ppl "
                             "(slow); causal models always score the log-likelihood ratio")
    parser.add_argument("--score-col", default=None, help="column of measured scores: Spearman with 95%% CIs, "
                                                          "BLOSUM62 and unigram baselines, JSON summary")
    parser.add_argument("--max-length", type=int, default=1024,
                        help="window length in tokens; longer proteins are read in overlapping windows (default 1024)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the intervals (0: none)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="count invalid rows (left unscored) instead of stopping at the first")
    parser.add_argument("--plot", type=Path, default=None,
                        help="draw the DMS heatmap (all 19 substitutions per position, masked marginals of the "
                             "first masked checkpoint) to this PNG; its matrix goes beside it as CSV")
    add_device_argument(parser)
    parser.add_argument("--out", required=True, type=Path, help="the input CSV plus one score column per checkpoint")
    parser.add_argument("--summary", type=Path, default=None,
                        help="JSON summary (default: --out with .json, written when --score-col is given)")


def _read_wild_type(path: Path) -> str:
    from protein_performer.corpus.fasta import read_records

    records = list(read_records(path))
    if not records:
        raise ValueError(f"{path}: no sequence; give the wild type as a FASTA record")
    if len(records) > 1:
        log.warning("%s: %d records; the first (%s) is the wild type", path, len(records), records[0].id)
    return records[0].sequence


def _column_name(path: Path, taken: set[str]) -> str:
    name, k = path.stem, 2
    while name in taken:
        name, k = f"{path.stem}_{k}", k + 1
    taken.add(name)
    return name


def _measured(table: VariantTable, column: str) -> np.ndarray:
    if column not in table.header:
        raise ValueError(f"{table.path}: no column {column!r} for --score-col; columns: {', '.join(table.header[:12])}")
    col = table.header.index(column)
    values = []
    for row in table.rows:
        try:
            values.append(float(row[col]) if col < len(row) and row[col].strip() else math.nan)
        except ValueError:
            values.append(math.nan)
    return np.asarray(values)


def run(args: argparse.Namespace) -> int:
    from protein_performer.baselines import unigram_probabilities
    from protein_performer.checkpoint import default_device, load_checkpoint
    from protein_performer.outputs import check_output

    summary_path = args.summary or args.out.with_suffix(".json")
    check_output(args.out, "file", inputs=[args.variants, args.fasta, *args.checkpoint])
    if args.score_col:
        check_output(summary_path, "file", inputs=[args.variants, args.out], flag="--summary")
    sequence = _read_wild_type(args.fasta)
    table = read_variants(args.variants, sequence, mutation_col=args.mutation_col, offset=args.offset_idx,
                          skip_invalid=args.skip_invalid)
    measured = _measured(table, args.score_col) if args.score_col else None
    device = args.device or default_device()
    taken, columns, models, unigram = set(table.header), {}, [], None
    for path in args.checkpoint:
        loaded = load_checkpoint(path)
        model = loaded.model.to(device)
        causal = loaded.config.causal
        name = _column_name(path, taken)
        strategy = "log-likelihood-ratio" if causal else args.strategy
        log.info("%s: scoring %d mutants (%s)", path, sum(m is not None for m in table.mutants), strategy)
        columns[name] = score_mutants(model, sequence, table.mutants, causal=causal, strategy=args.strategy,
                                      max_length=args.max_length, batch_size=args.batch_size)
        models.append({"checkpoint": str(path), "column": name, "objective": loaded.objective, "strategy": strategy})
        if unigram is None:
            unigram = unigram_probabilities(loaded.train_token_counts)
        if args.plot and not causal and not any(m.get("plot") for m in models):
            matrix = substitution_matrix(model, sequence, max_length=args.max_length, batch_size=args.batch_size)
            np.savetxt(args.plot.with_suffix(".csv"), matrix, delimiter=",", fmt="%.6f",
                       header=",".join(STANDARD_AMINO_ACIDS), comments="")
            plot_substitution_matrix(matrix, sequence, args.offset_idx, args.plot, title=f"{name}: masked marginals")
            models[-1]["plot"] = str(args.plot)
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
    for m in models:
        m.update({k: v for k, v in asdict(spearman(columns[m["column"]], measured, **kw)).items() if k != "name"})
    summary = {
        "variants": str(args.variants), "fasta": str(args.fasta), "score_col": args.score_col,
        "offset_idx": args.offset_idx, "rows": len(table.rows), "invalid_rows": len(table.problems),
        "models": models,
        "baselines": {name: {k: v for k, v in asdict(spearman(s, measured, **kw)).items() if k != "name"}
                      for name, s in baselines.items()},
        "unigram_source": unigram_source,
    }
    text = json.dumps(_finite(summary), indent=2, allow_nan=False)
    summary_path.write_text(text + "\n")
    for m in models:
        log.info("%s: Spearman %s (95%% CI %s) on %d rows", m["column"], m["spearman"], m["ci95"], m["n"])
    for name, b in summary["baselines"].items():
        log.info("%s baseline: Spearman %s (95%% CI %s)", name, b["spearman"], b["ci95"])
    return 0


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
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([*table.header, *columns])
        for k, row in enumerate(table.rows):
            row = row + [""] * (len(table.header) - len(row))
            writer.writerow([*row, *("" if not math.isfinite(c[k]) else f"{c[k]:.6g}" for c in columns.values())])
    tmp.replace(path)
