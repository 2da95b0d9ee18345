"""What ``score-variants`` writes from its scorers' results: the scored CSV, the DMS heatmap with its
matrix, and the JSON summary of every scorer's ProteinGym metrics (:mod:`.metrics`), each written
atomically; the summary's metrics are also logged, one line per scorer."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from protein_performer.alphabet import STANDARD_AMINO_ACIDS
from protein_performer.outputs import written_atomically
from protein_performer.variants.metrics import Targets, assay_metrics, format_metric
from protein_performer.variants.mutants import VariantTable
from protein_performer.variants.options import ScoreVariantsOptions
from protein_performer.variants.scorers import Scored, ScoringContext

log = logging.getLogger(__name__)


def write_scores_csv(path: Path, table: VariantTable, scored: Sequence[Scored]) -> None:
    """The input rows verbatim plus a column per scorer but the baselines (empty where it has no
    score), written atomically."""
    columns = {s.column: s.scores for s in scored if s.section != "baselines"}
    with written_atomically(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([*table.header, *columns])
        for k, row in enumerate(table.rows):
            row = row + [""] * (len(table.header) - len(row))
            writer.writerow([*row, *("" if not math.isfinite(c[k]) else f"{c[k]:.6g}" for c in columns.values())])
    log.info("wrote %s (%d rows, %d score columns)", path, len(table.rows), len(columns))


def write_plot(context: ScoringContext, scored: Sequence[Scored], matrix_path: Path) -> dict | None:
    """The DMS heatmap (``--plot``) of the first masked checkpoint: masked marginals of all 19
    substitutions at every position, the matrix to ``matrix_path``. Returns the summary's fields of
    that checkpoint's column (None, with a warning, when every checkpoint is causal)."""
    from protein_performer.variants.plots import plot_substitution_matrix
    from protein_performer.variants.scoring import substitution_matrix

    options = context.options
    first = next((s for s in scored if s.kind == "model" and not context.models.config(s.checkpoint).causal), None)
    if first is None:
        log.warning("--plot needs a masked checkpoint (the heatmap is of masked marginals); none was given")
        return None
    matrix = substitution_matrix(context.models.load(first.checkpoint).model, context.sequence,
                                 window_tokens=options.model.window_tokens, batch_size=options.model.batch_size,
                                 progress=options.progress, positions=context.models.positions(first.checkpoint))
    with written_atomically(matrix_path) as tmp:
        np.savetxt(tmp, matrix, delimiter=",", fmt="%.6f", header=",".join(STANDARD_AMINO_ACIDS), comments="")
    plot_substitution_matrix(matrix, context.sequence, options.offset_idx, options.plot,
                             title=f"{first.column}: masked marginals")
    log.info("wrote %s and its matrix %s", options.plot, matrix_path)
    return {"column": first.column, "plot": str(options.plot), "plot_matrix": str(matrix_path)}


def variant_summary(options: ScoreVariantsOptions, table: VariantTable, targets: Targets, scored: Sequence[Scored],
                    plot: dict | None = None) -> dict:
    """The JSON summary: every scorer's ProteinGym metrics on the rows it scores (and the Spearman
    fields ``spearman``, ``ci95``, ``n``), on the rows that every model and the profile score
    (``metrics_common_rows``), and the baselines'. ``plot``: :func:`write_plot`'s fields."""

    def measure(scores: np.ndarray) -> dict:
        metrics = assay_metrics(scores, targets.measured, targets.label, bootstrap=options.bootstrap, seed=0)
        out = {"metrics": {k: v.as_dict() for k, v in metrics.items()}, "scored": int(np.isfinite(scores).sum())}
        if "spearman" in metrics:
            out.update(spearman=metrics["spearman"].value, ci95=metrics["spearman"].as_dict()["ci95"],
                       n=metrics["spearman"].n)
        return out

    rated = [s for s in scored if s.section != "baselines"]
    common_rows, common = _common_rows(rated, targets)

    def entry(s: Scored) -> dict:
        shown = {k: v for k, v in (plot or {}).items() if k != "column"} if plot and plot["column"] == s.column else {}
        return {**s.info, **shown, **measure(s.scores), **common.get(s.column, {})}

    summary = {
        "variants": str(options.variants), "fasta": str(options.fasta), "score_col": targets.score_col,
        "label_col": targets.label_col, "offset_idx": options.offset_idx, "rows": len(table.rows),
        "invalid_rows": len(table.problems), "models": [entry(s) for s in rated if s.section == "models"],
        "baselines": {s.column: measure(s.scores) for s in scored if s.section == "baselines"},
        "unigram_source": next(s.info["source"] for s in scored if s.kind == "baseline" and "source" in s.info),
    }
    profile = next((s for s in rated if s.section == "profile"), None)
    if profile is not None:
        summary["profile"] = entry(profile)
    if common_rows is not None:
        summary["common_rows"] = common_rows
    return summary


def _common_rows(rated: Sequence[Scored], targets: Targets) -> tuple[int | None, dict[str, dict]]:
    """Every scorer's metrics (no interval) on the rows that all of them score: a region-only
    alignment's profile scores fewer rows than the models, and is compared with them there.
    Returns the number of those rows and, by column, ``{"metrics_common_rows": ...}``."""
    if not rated:
        return None, {}
    keep = np.logical_and.reduce([np.isfinite(s.scores) for s in rated])
    out = {}
    for s in rated:
        metrics = assay_metrics(np.where(keep, s.scores, np.nan), targets.measured, targets.label, bootstrap=0)
        out[s.column] = {"metrics_common_rows": {k: v.as_dict() for k, v in metrics.items()}}
    return int(keep.sum()), out


def write_summary(path: Path, summary: dict) -> None:
    """``summary`` as strict JSON (an undefined metric as null), written atomically; each scorer's
    metrics logged."""
    text = json.dumps(_finite(summary), indent=2, allow_nan=False)
    with written_atomically(path) as tmp:
        tmp.write_text(text + "\n")
    scorers = [(m["column"], m) for m in summary["models"]]
    if "profile" in summary:
        scorers.append(("profile", summary["profile"]))
    scorers += [(f"{k} baseline", v) for k, v in summary["baselines"].items()]
    for name, m in scorers:
        log.info("%s: %s (%d rows scored)", name,
                 ", ".join(f"{k} {format_metric(v)}" for k, v in m["metrics"].items()), m["scored"])
    log.info("wrote %s", path)


def _finite(value):
    """``value`` with every non-finite float (an undefined correlation) as None, for strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = ["variant_summary", "write_plot", "write_scores_csv", "write_summary"]
