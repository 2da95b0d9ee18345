"""ProteinGym's metrics of a variant scorer, each with a 95% bootstrap interval over rows.

As ProteinGym defines them (Notin et al. 2023, its ``performance_DMS_benchmarks`` code), with
higher score = predicted fitter and higher ``DMS_score`` = fitter:

* ``spearman``: Spearman's rho of score and measurement;
* ``auc``: ROC AUC of the score for the binary label (1 = fit / benign, 0 = unfit / pathogenic);
* ``mcc``: Matthews correlation of the label with the score cut at its median (``score > median``);
* ``ndcg``: NDCG of the top 10% of the scorer's ranking, gains the min-max scaled measurement (a
  row of gain 0 contributes nothing);
* ``top10_recall``: of the rows in the measurement's top 10% (``>=`` its 90th percentile), the share
  that are also in the score's top 10%.

Each metric is computed on the rows where both the score and its target are finite; ``n`` says how
many. The interval resamples those rows (:func:`protein_performer.stats.bootstrap_draws`), the same
resamples for every metric of one scorer. A metric is None where it is undefined (one class only,
a constant score, fewer than 3 rows).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from protein_performer.stats import bootstrap_draws, interval95
from protein_performer.variants.mutants import VariantTable, read_labels, read_measurements

log = logging.getLogger(__name__)

METRICS = ("spearman", "auc", "mcc", "ndcg", "top10_recall")
CONTINUOUS = ("spearman", "ndcg", "top10_recall")
"""Metrics of a continuous measurement."""
BINARY = ("auc", "mcc")
"""Metrics of a binary label."""
TOP = 10.0
"""Percent of rows in the top sets of NDCG and recall."""


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)


def spearman_rho(score: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """(..., n) -> (...,) Spearman's rho (NaN for a constant row)."""
    ra, rb = _ranks(score), _ranks(measured)
    ra, rb = ra - ra.mean(-1, keepdims=True), rb - rb.mean(-1, keepdims=True)
    den = np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))
    return np.where(den > 0, (ra * rb).sum(-1) / np.where(den > 0, den, 1), np.nan)


def roc_auc(score: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(..., n) -> (...,) ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half; NaN
    when a row holds one class only. Equals scikit-learn's ``roc_auc_score``."""
    label = label.astype(bool)
    pos = label.sum(-1)
    neg = label.shape[-1] - pos
    ranks = _ranks(score)
    u = (ranks * label).sum(-1) - pos * (pos + 1) / 2
    ok = (pos > 0) & (neg > 0)
    return np.where(ok, u / np.where(ok, pos * neg, 1), np.nan)


def mcc_at_median(score: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(..., n) -> (...,) Matthews correlation of ``label`` with ``score > median(score)``."""
    label = label.astype(bool)
    predicted = score > np.median(score, axis=-1, keepdims=True)
    tp = (predicted & label).sum(-1).astype(float)
    tn = (~predicted & ~label).sum(-1).astype(float)
    fp = (predicted & ~label).sum(-1).astype(float)
    fn = (~predicted & label).sum(-1).astype(float)
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return np.where(den > 0, (tp * tn - fp * fn) / np.where(den > 0, den, 1), 0.0)


def _top_k(n: int) -> int:
    return max(1, int(math.floor(n * TOP / 100)))


def ndcg_top(score: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """(..., n) -> (...,) NDCG over the top 10% (module docstring)."""
    score, measured = np.atleast_2d(score), np.atleast_2d(measured)
    n = score.shape[-1]
    k = _top_k(n)
    lo, hi = measured.min(-1, keepdims=True), measured.max(-1, keepdims=True)
    gains = np.where(hi > lo, (measured - lo) / np.where(hi > lo, hi - lo, 1), 0.0)  # (R, n)
    discount = 1.0 / np.log2(np.arange(2, k + 2))  # (k,)
    order = np.argsort(-score, axis=-1, kind="stable")[:, :k]  # the scorer's top k
    dcg = (np.take_along_axis(gains, order, -1) * discount).sum(-1)
    ideal = (-np.sort(-gains, axis=-1)[:, :k] * discount).sum(-1)
    out = np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1), np.nan)
    return out if out.shape[0] > 1 else out.reshape(np.shape(out)[1:] or ())


def top_recall(score: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """(..., n) -> (...,) recall of the measurement's top 10% in the score's top 10%."""
    true_top = measured >= np.percentile(measured, 100 - TOP, axis=-1, keepdims=True)
    model_top = score >= np.percentile(score, 100 - TOP, axis=-1, keepdims=True)
    hits = (true_top & model_top).sum(-1)
    count = true_top.sum(-1)
    return np.where(count > 0, hits / np.maximum(count, 1), np.nan)


_FUNCTIONS = {"spearman": spearman_rho, "auc": roc_auc, "mcc": mcc_at_median, "ndcg": ndcg_top,
              "top10_recall": top_recall}


@dataclass
class Metric:
    """One metric of one scorer on one assay."""

    value: float | None
    ci95: tuple[float, float] | None
    n: int

    def as_dict(self) -> dict:
        return {"value": self.value, "ci95": list(self.ci95) if self.ci95 else None, "n": self.n}


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def assay_metrics(score: np.ndarray, measured: np.ndarray | None = None, label: np.ndarray | None = None, *,
                  bootstrap: int = 2000, seed: int = 0) -> dict[str, Metric]:
    """Every metric the targets allow: Spearman, NDCG and top-10% recall from ``measured``; AUC and
    MCC from ``label`` (1 = fit / benign). Rows with a non-finite score or target are left out."""
    score = np.asarray(score, dtype=float)
    out: dict[str, Metric] = {}
    groups = []
    if measured is not None:
        groups.append((CONTINUOUS, np.asarray(measured, dtype=float)))
    if label is not None:
        groups.append((BINARY, np.asarray(label, dtype=float)))
    for names, target in groups:
        keep = np.isfinite(score) & np.isfinite(target)
        x, y = score[keep], target[keep]
        n = len(x)
        if n < 3:
            out.update({name: Metric(None, None, n) for name in names})
            continue
        values = {name: _finite_or_none(float(np.asarray(_FUNCTIONS[name](x, y)))) for name in names}
        if bootstrap <= 0:
            out.update({name: Metric(values[name], None, n) for name in names})
            continue
        draws = bootstrap_draws(lambda idx: tuple(np.asarray(_FUNCTIONS[name](x[idx], y[idx])).reshape(len(idx))
                                                  for name in names), n, bootstrap, seed)
        for name, d in zip(names, draws):
            d = d[np.isfinite(d)]
            ci = interval95(d) if values[name] is not None and len(d) >= 0.5 * bootstrap else None
            out[name] = Metric(values[name], ci, n)
    return out


def check_target(values: np.ndarray, *, binary: bool, source: str) -> None:
    """Refuse, before any work, a target no metric can use: fewer than two distinct values, or a
    binary label with one class only."""
    finite = values[np.isfinite(values)]
    distinct = np.unique(finite)
    if binary and (len(distinct) < 2):
        raise ValueError(f"{source}: every scorable row has the label {distinct.tolist() or 'missing'}; AUC and MCC "
                         "need both classes (fit/benign and unfit/pathogenic) among the scored rows")
    if not binary and len(distinct) < 2:
        raise ValueError(f"{source}: the measurements take {len(distinct)} distinct value(s) over the scorable rows; "
                         "a correlation needs at least two: name the column of measured scores")


@dataclass(frozen=True)
class Targets:
    """What the scores are measured against: a continuous column, a binary label, or both."""

    score_col: str | None
    label_col: str | None
    measured: np.ndarray | None
    """(rows,) the measurement, higher = fitter (NaN where missing)."""
    label: np.ndarray | None
    """(rows,) 1.0 = fit / benign, 0.0 = unfit / pathogenic (NaN where missing)."""

    @property
    def any(self) -> bool:
        return self.measured is not None or self.label is not None


def read_targets(table: VariantTable, score_col: str | None, label_col: str | None, label_fit: str = "auto", *,
                 flags: tuple[str, str] | None = ("--score-col", "--label-col")) -> Targets:
    """The measurement of ``score_col`` and the binary label of ``label_col`` (either may be None),
    refused before any work where no metric can use them (:func:`check_target`, over the scorable
    rows). ``flags``: how the messages name the two columns' options (None: by the column alone)."""
    scorable = np.array([m is not None for m in table.mutants])
    measured = read_measurements(table, score_col) if score_col else None
    label = read_labels(table, label_col, label_fit) if label_col else None
    score_flag, label_flag = (f"{f} " for f in flags) if flags else ("", "")
    if measured is not None:
        check_target(measured[scorable], binary=False, source=f"{table.path}: {score_flag}{score_col!r}")
    if label is not None:
        check_target(label[scorable], binary=True, source=f"{table.path}: {label_flag}{label_col!r}")
    return Targets(score_col, label_col, measured, label)


def format_metric(metric: dict, undefined: str = "undefined") -> str:
    """A metric of :meth:`Metric.as_dict` as text: ``0.512 [0.401, 0.598]`` (``undefined`` for none)."""
    if metric["value"] is None:
        return undefined
    ci = metric.get("ci95")
    return f"{metric['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def mean_over_assays(per_assay: list[dict[str, dict]]) -> dict[str, dict]:
    """ProteinGym's summary: each metric averaged over the assays that have it (``n_assays``)."""
    out: dict[str, dict] = {}
    for name in METRICS:
        values = [m[name]["value"] for m in per_assay if name in m and m[name]["value"] is not None]
        if values:
            out[name] = {"value": float(np.mean(values)), "n_assays": len(values)}
    return out
