"""A model's amino-acid similarity beside its controls, with bootstrap intervals: every measure,
every group of heads, head by head.

Sources (each analysed on the same kind of input):

* ``trained``: the model on its inputs (proteins, or family windows);
* ``untrained``: a model of the same shape, freshly initialised (torch seed ``seed``): what the
  architecture gives before any learning;
* ``shuffled``: the trained model on shuffled inputs
  (:mod:`~protein_performer.analysis.similarity_inputs`): what the inputs' composition gives;
* ``alignment`` (families only, no model): BLOSUM's own recipe on the family's aligned columns,
  ``log(q_ab / (p_a p_b))`` from weighted pairs of residues in one column: what the alignment
  could teach at most in this form.

Measures (:mod:`~protein_performer.analysis.similarity`): ``profiles`` (Vig et al.'s attention
profiles), ``pairs`` (pooled attention-pair log-odds), ``contexts`` (per-head log-odds profiles),
the same two against the offset null (``pairs_by_offset``, ``contexts_by_offset``: attention that
follows positions alone scores 0, :mod:`~protein_performer.analysis.attention_counts`), and
``embedding`` (token embeddings). Head groups: ``all``, ``local``, ``column``, ``global`` (those the
model has). Intervals: 95% percentile bootstrap over units (proteins, or families when several
homolog sets are analysed, else family windows), resampled with replacement.
``above_controls`` is a figure's Pearson minus the highest Pearson of its controls (same measure
and heads): a figure counts as far as it stands above them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch

from protein_performer.analysis.attention_counts import AttentionCounts
from protein_performer.analysis.blosum import blosum62
from protein_performer.analysis.similarity import (
    AMINO_ACIDS,
    AttentionProfiles,
    BlosumComparison,
    _log_odds,
    compare_with_blosum,
    embedding_similarity,
    off_diagonal,
    profile_similarity,
)
from protein_performer.corpus.families import Family

MEASURES: dict[str, Callable[[AttentionProfiles], np.ndarray]] = {
    "profiles": lambda p: profile_similarity(p.enrichment(), "pearson"),
    "pairs": AttentionProfiles.pair_log_odds,
    "contexts": AttentionProfiles.context_similarity,
    "pairs_by_offset": lambda p: p.pair_log_odds("offset"),
    "contexts_by_offset": lambda p: p.context_similarity("offset"),
}
"""Attention measures, each (profiles) -> (20, 20) similarity."""
CONTROLS = ("untrained", "shuffled")


@dataclass
class MeasureFigure:
    """One measure of one source on one group of heads, against BLOSUM62 (190 pairs)."""

    source: str
    measure: str
    heads: str
    pearson: float
    spearman: float
    ci: tuple[float, float] | None
    """95% bootstrap interval of the Pearson correlation (None: nothing to resample)."""
    top_pairs: list[str]
    landmark_ranks: dict[str, int]
    above_controls: float | None = None

    @classmethod
    def of(cls, source: str, measure: str, heads: str, c: BlosumComparison,
           ci: tuple[float, float] | None = None) -> MeasureFigure:
        return cls(source, measure, heads, c.pearson, c.spearman, ci, [p for p, _, _ in c.top_pairs],
                   dict(c.landmark_ranks))


def find_figure(study: dict, source: str, measure: str, heads: str = "all") -> dict | None:
    """One figure of a saved study (:meth:`Study.to_dict`, as in blosum_comparison.json's ``study``),
    or None; ``heads`` "all" also finds a measure that has no head groups (embeddings: "-")."""
    return next((f for f in study.get("figures", []) if f["source"] == source and f["measure"] == measure
                 and (f["heads"] == heads or (heads == "all" and f["heads"] == "-"))), None)


def untrained_like(model, seed: int = 0):
    """A model of ``model``'s shape (config), freshly initialised with torch seed ``seed``."""
    from protein_performer.model import PerformerLM

    torch.manual_seed(seed)
    device = next(model.parameters()).device
    return PerformerLM(model.config).to(device).eval()


def head_groups(counts: AttentionCounts) -> dict[str, np.ndarray]:
    """(F,) masks of the head groups the model has: all, then local / column / global heads."""
    kinds = np.asarray(counts.kinds)
    groups = {"all": np.ones(len(kinds), dtype=bool)}
    for kind in ("local", "column", "global"):
        if (kinds == kind).any() and not (kinds == kind).all():
            groups[kind] = kinds == kind
    return groups


def bootstrap_interval(counts: AttentionCounts, measure: str, heads: np.ndarray, *, draws: int,
                       seed: int) -> tuple[float, float] | None:
    """95% percentile interval of the Pearson correlation with BLOSUM62 of ``measure`` on ``heads``,
    resampling units (:meth:`AttentionCounts.unit_index`) with replacement; None for one unit."""
    names, index = counts.unit_index()
    if draws < 1 or len(names) < 2:
        return None
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    blosum = off_diagonal(blosum62())
    values = []
    for _ in range(draws):
        picked = np.bincount(rng.integers(0, len(names), len(names)), minlength=len(names))  # (G,) times each
        try:
            matrix = MEASURES[measure](AttentionProfiles.from_counts(counts, picked[index], heads))
        except ValueError:  # a draw in which an amino acid never occurs: no matrix
            continue
        values.append(np.corrcoef(off_diagonal(matrix), blosum)[0, 1])
    if len(values) < 0.9 * draws:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def figures_of(source: str, counts: AttentionCounts, *, draws: int, seed: int, top: int = 10) -> list[MeasureFigure]:
    """Every attention measure on every head group of one source."""
    out = []
    for heads, mask in head_groups(counts).items():
        profiles = AttentionProfiles.from_counts(counts, heads=mask)
        for measure, fn in MEASURES.items():
            comparison = compare_with_blosum(fn(profiles), top)
            out.append(MeasureFigure.of(source, measure, heads, comparison,
                                 bootstrap_interval(counts, measure, mask, draws=draws, seed=seed)))
    return out


def per_head(sources: dict[str, AttentionCounts]) -> pd.DataFrame:
    """Head by head: its kind and its pairs / contexts Pearson with BLOSUM62, for each source."""
    first = next(iter(sources.values()))
    rows = []
    for f, kind in enumerate(first.kinds):
        row = {"head": f"L{first.layers[f // first.heads]}H{f % first.heads + 1}", "kind": kind}
        for source, counts in sources.items():
            mask = np.arange(len(counts.kinds)) == f
            profiles = AttentionProfiles.from_counts(counts, heads=mask)
            for measure in ("pairs", "contexts", "pairs_by_offset", "contexts_by_offset"):
                try:
                    row[f"{source}_{measure}"] = compare_with_blosum(MEASURES[measure](profiles)).pearson
                except ValueError:
                    row[f"{source}_{measure}"] = float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def alignment_log_odds(families: list[Family]) -> np.ndarray:
    """(20, 20) BLOSUM's recipe on aligned columns: weighted pairs of residues sharing a column
    (members' sequence weights; a residue never pairs with itself), ``log(q_ab / (p_a p_b))``."""
    pairs = np.zeros((len(AMINO_ACIDS), len(AMINO_ACIDS)))
    for family in families:
        if family.columns is None:
            raise ValueError(f"{family.path}: the alignment's own log-odds need aligned homologs")
        codes, w = family.columns.astype(np.int64), np.asarray(family.weights, dtype=np.float64)
        for c in range(codes.shape[1]):
            x = codes[:, c]
            ok = x < len(AMINO_ACIDS)
            n = np.bincount(x[ok], weights=w[ok], minlength=len(AMINO_ACIDS))  # (20,) weighted residues
            self_pairs = np.bincount(x[ok], weights=w[ok] ** 2, minlength=len(AMINO_ACIDS))
            pairs += np.outer(n, n) - np.diag(self_pairs)
    q = pairs / max(pairs.sum(), 1e-300)
    p = q.sum(axis=1)
    return _log_odds(q, np.outer(p, p))


@dataclass
class Study:
    """Every figure of one ``similarity`` run (module docstring)."""

    figures: list[MeasureFigure]
    heads: pd.DataFrame
    units: int
    unit: str
    embedding: dict[str, MeasureFigure] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        rows = [{**asdict(f), "ci": None} | ({"ci_low": f.ci[0], "ci_high": f.ci[1]} if f.ci else {})
                for f in [*self.figures, *self.embedding.values()]]
        frame = pd.DataFrame(rows).drop(columns=["ci"])
        frame["top_pairs"] = frame["top_pairs"].map(" ".join)
        frame["landmark_ranks"] = frame["landmark_ranks"].map(lambda d: " ".join(f"{k}:{v}" for k, v in d.items()))
        return frame

    def to_dict(self) -> dict:
        return {"units": self.units, "unit": self.unit,
                "figures": [asdict(f) for f in [*self.figures, *self.embedding.values()]]}


def study(sources: dict[str, AttentionCounts], models: dict[str, torch.nn.Module], *, draws: int = 1000,
          seed: int = 0, top: int = 10, families: list[Family] | None = None, unit: str = "proteins") -> Study:
    """Figures of every source (``trained`` first), each attention figure of ``trained`` with its
    ``above_controls``; embeddings of the ``models`` (``trained``, ``untrained``); the alignment row
    for aligned ``families``."""
    figures = [f for source, counts in sources.items() for f in figures_of(source, counts, draws=draws, seed=seed,
                                                                             top=top)]
    embedding = {name: MeasureFigure.of(name, "embedding", "-", compare_with_blosum(embedding_similarity(m), top))
                 for name, m in models.items()}
    if families and all(f.aligned for f in families):
        figures.append(MeasureFigure.of("alignment", "log-odds", "-", compare_with_blosum(alignment_log_odds(families), top)))
    for f in figures:
        if f.source == "trained" and f.measure in MEASURES:
            controls = [g.pearson for g in figures if g.source in CONTROLS and g.measure == f.measure
                        and g.heads == f.heads]
            f.above_controls = f.pearson - max(controls) if controls else None
    if "trained" in embedding and "untrained" in embedding:
        embedding["trained"].above_controls = embedding["trained"].pearson - embedding["untrained"].pearson
    trained = sources["trained"]
    return Study(figures, per_head(sources), len(trained.unit_index()[0]), unit, embedding)
