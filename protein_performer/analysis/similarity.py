"""Amino-acid similarity learned by a model, compared with BLOSUM62 (no plotting here).

Attention (Vig et al. 2020, "BERTology meets biology", section 4.3): for every head ``h`` of the
analysed layers, the share of attention that residue queries send to residues of type ``a``,

    p_h(a) = sum_{i, j: x_j = a} alpha^h_ij / sum_{i, j} alpha^h_ij     (i, j residues, not specials)

divided by the background frequency ``f(a)`` of ``a`` among the keys, gives an enrichment
``p_h(a) / f(a)``. Each amino acid's profile is its enrichment across all (layer, head) pairs;
two amino acids are as similar as their profiles are correlated (Pearson, or cosine).
Only column sums of the attention are needed, accumulated over query rows in blocks (the
model's ``attention_rows``), so no L x L matrix of a long protein is ever held at once.

Attention pairs (log-odds, the form of BLOSUM itself): the attention mass that residues of type
``a`` send to residues of type ``b`` (self-attention excluded), pooled over the analysed heads,
over the mass expected if attention ignored residue types (each query's mass spread evenly over
the residues that head lets it see)::

    S(a, b) = log( sum_{i: x_i = a} sum_{j != i: x_j = b} alpha_ij / sum_{i: x_i = a} m_i f_i(b) )

with ``m_i`` the mass row ``i`` sends to other residues and ``f_i(b)`` the frequency of ``b`` among
the other residues query ``i`` can attend to: the whole protein for global heads, the residues
within ``local_window`` for local heads, and only earlier ones for causal models. Attention spread
evenly over what a head sees scores exactly 0, so neither a protein's composition nor the
residues that happen to be neighbours count as learned. Symmetrised, as BLOSUM is.

Attention contexts (distributional similarity): the same log-odds per head, not pooled, give each
amino acid ``a`` a context profile ``[S_h(a, b)]`` over (head, b): which residues it attends to
more or less than it could, head by head. Two amino acids are as similar as their context profiles,
centred over the 20 amino acids, are correlated (Pearson), as words are by the contexts they
occur in. With many heads this is a profile of (layers x heads x 20) numbers, where Vig et
al.'s has layers x heads.

Embedding: cosine similarity of the learned token embeddings of the 20 standard amino acids.

Both are compared with BLOSUM62 over the 190 off-diagonal pairs (Pearson and Spearman).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

from protein_performer.alphabet import ALPHABET, STANDARD_AMINO_ACIDS
from protein_performer.analysis.attention_counts import AttentionCounts, count_attention, protein_windows
from protein_performer.analysis.blosum import blosum62
from protein_performer.model import PerformerLM

log = logging.getLogger(__name__)

AMINO_ACIDS = tuple(STANDARD_AMINO_ACIDS)
LANDMARK_PAIRS = (("D", "E"), ("F", "Y"), ("I", "V"), ("K", "R"))
"""Pairs every substitution matrix calls similar: acids, aromatics, aliphatics, bases."""
Method = Literal["pearson", "cosine"]
Null = Literal["even", "offset"]


@dataclass
class AttentionProfiles:
    """Attention mass by (layer, head) and target amino acid, summed over the analysed windows."""

    layers: tuple[int, ...]
    """1-based blocks analysed."""
    heads: int
    mass: np.ndarray
    """(F, 20): attention from residue queries to each standard amino acid, F (layer, head) pairs."""
    total: np.ndarray
    """(F,): attention from residue queries to any residue."""
    counts: np.ndarray
    """(20,): how often each amino acid occurs (as a key) in the analysed proteins."""
    proteins: int = 0
    """Windows analysed (proteins, or family windows)."""
    pair_mass: np.ndarray | None = None
    """(F, 20, 20): attention from residues of type a to other residues of type b."""
    pair_expected: np.ndarray | None = None
    """(F, 20, 20): the same mass spread evenly over the residues each query can see."""
    names: list[str] | None = None
    """(F,) names of the (layer, head) pairs, when a subset of the heads (default: all, in order)."""
    pair_offset_expected: np.ndarray | None = None
    """(F, 20, 20): the pair mass expected from each head's mean weight per offset class
    (:mod:`protein_performer.analysis.attention_counts`)."""

    @classmethod
    def from_counts(cls, counts: AttentionCounts, weights: np.ndarray | None = None,
                    heads: np.ndarray | None = None) -> AttentionProfiles:
        """The sum of ``counts``' windows (each ``weights`` times: a bootstrap draw; default once),
        for the (layer, head) pairs ``heads`` ((F,) bool; default all)."""
        w = np.ones(len(counts.units)) if weights is None else np.asarray(weights, dtype=np.float64)
        keep = np.ones(len(counts.kinds), dtype=bool) if heads is None else np.asarray(heads, dtype=bool)
        names = [f"L{layer}H{h + 1}" for layer in counts.layers for h in range(counts.heads)]
        return cls(counts.layers, counts.heads, np.tensordot(w, counts.mass, 1)[keep],
                   np.tensordot(w, counts.total, 1)[keep], np.tensordot(w, counts.counts, 1),
                   int(round(w.sum())), np.tensordot(w, counts.pair_mass, 1)[keep],
                   np.tensordot(w, counts.pair_expected, 1)[keep],
                   None if heads is None else [n for n, k in zip(names, keep) if k],
                   np.tensordot(w, counts.pair_offset_expected, 1)[keep])

    @property
    def feature_names(self) -> list[str]:
        if self.names is not None:
            return list(self.names)
        return [f"L{layer}H{h + 1}" for layer in self.layers for h in range(self.heads)]

    def enrichment(self) -> np.ndarray:
        """(n_layers * heads, 20): attention share to each amino acid / its background frequency."""
        share = self.mass / np.maximum(self.total, 1e-30)[:, None]
        background = self.counts / max(self.counts.sum(), 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(background > 0, share / background, np.nan)


    def _expected(self, null: Null) -> np.ndarray:
        expected = self.pair_expected if null == "even" else self.pair_offset_expected
        if self.pair_mass is None or expected is None:
            raise ValueError(f"these profiles hold no pair masses ({null} null)")
        return expected

    def pair_log_odds(self, null: Null = "even") -> np.ndarray:
        """(20, 20) symmetric log(observed / expected) attention between amino-acid types, pooled
        over the analysed heads (see the module docstring); ``null``: expected from attention spread
        evenly (``even``) or from each head's mean weight per offset class (``offset``)."""
        observed, expected = self.pair_mass.sum(0), self._expected(null).sum(0)
        return _log_odds(observed + observed.T, expected + expected.T)

    def context_similarity(self, null: Null = "even") -> np.ndarray:
        """(20, 20) Pearson correlation of the amino acids' context profiles: per (layer, head),
        log(observed / expected) attention from each amino acid to each other one (module docstring)."""
        log_odds = _log_odds(self.pair_mass, self._expected(null))  # (F, 20 queries, 20 keys)
        profiles = log_odds.transpose(1, 0, 2).reshape(len(AMINO_ACIDS), -1)  # (20, F * 20)
        # Centred over the amino acids: what every residue does alike (e.g. all attend more to
        # hydrophobic neighbours) says nothing about which two are alike.
        return profile_similarity((profiles - profiles.mean(axis=0)).T, "pearson")


def _log_odds(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """log(observed / expected) of attention masses (..., 20 queries, 20 keys), any leading axes.

    An amino acid that no query could send mass from (all its expected masses 0) is an error. A
    pseudo-mass far below any real one (1e-9 of the mean expected mass) makes pairs that never
    meet score 0 (no evidence) and keeps a pair that is never attended to finite.
    """
    per_query = np.moveaxis(expected, -2, 0).reshape(len(AMINO_ACIDS), -1)  # (20, everything else)
    missing = [AMINO_ACIDS[i] for i in np.flatnonzero((per_query <= 0).all(axis=1))]
    if missing:
        raise ValueError(f"amino acids {missing} never occur in the analysed proteins; "
                         "analyse more proteins (--max-proteins)")
    eps = 1e-9 * expected.sum() / expected.size
    return np.log((observed + eps) / (expected + eps))


def attention_profiles(
    model: PerformerLM,
    sequences: Iterable[str],
    *,
    layers: Sequence[int] | None = None,
    row_block: int = 256,
    progress: bool | None = False,
) -> AttentionProfiles:
    """:class:`AttentionProfiles` of ``model`` over ``sequences``, each framed ``<cls> s <eos>`` and
    read alone (:func:`~protein_performer.analysis.attention_counts.count_attention`)."""
    return AttentionProfiles.from_counts(count_attention(model, protein_windows(sequences), layers=layers,
                                                         row_block=row_block, progress=progress, unit="proteins"))


def profile_similarity(profiles: np.ndarray, method: Method = "pearson") -> np.ndarray:
    """(20, 20) similarity of the columns of ``profiles`` (features, 20)."""
    x = np.asarray(profiles, dtype=np.float64)
    if np.isnan(x).any():
        missing = [AMINO_ACIDS[i] for i in np.flatnonzero(np.isnan(x).any(axis=0))]
        raise ValueError(f"amino acids {missing} never occur in the analysed proteins; "
                         "analyse more proteins (--max-proteins)")
    if method == "pearson":
        x = x - x.mean(axis=0, keepdims=True)
    elif method != "cosine":
        raise ValueError(f"method must be 'pearson' or 'cosine', got {method!r}")
    x = x / np.maximum(np.linalg.norm(x, axis=0, keepdims=True), 1e-30)
    sim = x.T @ x
    return (sim + sim.T) / 2


def embedding_similarity(model: PerformerLM) -> np.ndarray:
    """(20, 20) cosine similarity of the token embeddings of the standard amino acids."""
    weight = model.embed.weight.detach()[list(ALPHABET.standard_indices)].double()  # (20, dim)
    weight = weight / weight.norm(dim=1, keepdim=True).clamp_min(1e-30)
    sim = (weight @ weight.T).cpu().numpy()
    return (sim + sim.T) / 2


def off_diagonal(matrix: np.ndarray) -> np.ndarray:
    """The 190 values above the diagonal, row by row."""
    return np.asarray(matrix)[np.triu_indices(len(AMINO_ACIDS), k=1)]


@dataclass
class BlosumComparison:
    """How one 20 x 20 similarity matrix agrees with BLOSUM62 over the 190 off-diagonal pairs."""

    pearson: float
    pearson_p: float
    spearman: float
    spearman_p: float
    n_pairs: int
    top_pairs: list[tuple[str, float, int]]
    """The most similar pairs: ("D-E", similarity, BLOSUM62 score), best first."""
    landmark_ranks: dict[str, int]
    """Rank (1 = most similar of 190) of each of D-E, F-Y, I-V, K-R."""
    landmarks_in_top: list[str] = field(default_factory=list)
    """Landmark pairs that are among ``top_pairs``."""


def compare_with_blosum(matrix: np.ndarray, top: int = 10) -> BlosumComparison:
    """Correlations with BLOSUM62 and the top pairs of ``matrix`` (20 x 20, standard order)."""
    blosum = blosum62()
    x, y = off_diagonal(matrix), off_diagonal(blosum)
    pearson = stats.pearsonr(x, y)
    spearman = stats.spearmanr(x, y)
    iu = np.triu_indices(len(AMINO_ACIDS), k=1)
    names = [f"{AMINO_ACIDS[i]}-{AMINO_ACIDS[j]}" for i, j in zip(*iu)]
    order = np.argsort(-x, kind="stable")
    rank = {names[k]: r + 1 for r, k in enumerate(order)}
    top_pairs = [(names[k], float(x[k]), int(y[k])) for k in order[:top]]
    landmarks = {f"{a}-{b}": rank[f"{a}-{b}"] for a, b in LANDMARK_PAIRS}
    return BlosumComparison(
        pearson=float(pearson[0]), pearson_p=float(pearson[1]),
        spearman=float(spearman[0]), spearman_p=float(spearman[1]), n_pairs=len(x),
        top_pairs=top_pairs, landmark_ranks=landmarks,
        landmarks_in_top=[k for k, r in landmarks.items() if r <= top],
    )


def cluster_order(matrix: np.ndarray) -> list[int]:
    """Leaf order of average-linkage clustering on distance ``1 - similarity`` (similarity rescaled
    to [-1, 1] when it is not already a correlation-like matrix)."""
    sim = np.asarray(matrix, dtype=np.float64)
    scale = np.abs(sim).max()
    if scale > 1.0:
        sim = sim / scale
    dist = np.clip(1.0 - sim, 0.0, None)
    np.fill_diagonal(dist, 0.0)
    return [int(i) for i in leaves_list(linkage(squareform((dist + dist.T) / 2, checks=False), "average"))]


@dataclass
class SimilarityResult:
    """Everything ``protein-performer similarity`` computes; :meth:`save` writes it to a folder."""

    attention: np.ndarray
    """(20, 20) attention-profile similarity."""
    embedding: np.ndarray
    """(20, 20) embedding cosine similarity."""
    profiles: AttentionProfiles
    attention_vs_blosum: BlosumComparison
    embedding_vs_blosum: BlosumComparison
    method: str = "pearson"
    pairs: np.ndarray | None = None
    """(20, 20) attention-pair log-odds (:meth:`AttentionProfiles.pair_log_odds`)."""
    pairs_vs_blosum: BlosumComparison | None = None
    context: np.ndarray | None = None
    """(20, 20) attention-context similarity (:meth:`AttentionProfiles.context_similarity`)."""
    context_vs_blosum: BlosumComparison | None = None
    pairs_by_offset: np.ndarray | None = None
    """(20, 20) attention-pair log-odds against the offset null."""
    pairs_by_offset_vs_blosum: BlosumComparison | None = None
    context_by_offset: np.ndarray | None = None
    """(20, 20) attention-context similarity against the offset null."""
    context_by_offset_vs_blosum: BlosumComparison | None = None

    def frame(self, which: Literal["attention", "embedding", "pairs", "context", "pairs_by_offset",
                                   "context_by_offset"]) -> pd.DataFrame:
        matrix = {"attention": self.attention, "embedding": self.embedding, "pairs": self.pairs,
                  "context": self.context, "pairs_by_offset": self.pairs_by_offset,
                  "context_by_offset": self.context_by_offset}[which]
        return pd.DataFrame(matrix, index=list(AMINO_ACIDS), columns=list(AMINO_ACIDS))

    def save(self, out_dir: str | Path, study=None) -> dict[str, Path]:
        """Write ``similarity.csv``, ``embedding_similarity.csv``, ``attention_profiles.csv`` and
        ``blosum_comparison.json`` into ``out_dir``; with a ``study``
        (:class:`~protein_performer.analysis.similarity_study.Study`) also ``similarity_table.csv``
        and ``heads.csv``, and its figures in the JSON under ``"study"``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {name: out / name for name in ("similarity.csv", "embedding_similarity.csv",
                                               "attention_profiles.csv", "blosum_comparison.json")}
        if self.pairs is not None:
            paths["pair_similarity.csv"] = out / "pair_similarity.csv"
            self.frame("pairs").to_csv(paths["pair_similarity.csv"], float_format="%.6f")
        if self.context is not None:
            paths["context_similarity.csv"] = out / "context_similarity.csv"
            self.frame("context").to_csv(paths["context_similarity.csv"], float_format="%.6f")
        self.frame("attention").to_csv(paths["similarity.csv"], float_format="%.6f")
        self.frame("embedding").to_csv(paths["embedding_similarity.csv"], float_format="%.6f")
        pd.DataFrame(self.profiles.enrichment(), index=self.profiles.feature_names,
                     columns=list(AMINO_ACIDS)).to_csv(paths["attention_profiles.csv"], float_format="%.6f")
        summary = {
            "method": self.method,
            "proteins": self.profiles.proteins,
            "layers": list(self.profiles.layers),
            "heads": self.profiles.heads,
            "residue_counts": dict(zip(AMINO_ACIDS, self.profiles.counts.tolist())),
            "attention": asdict(self.attention_vs_blosum),
            "embedding": asdict(self.embedding_vs_blosum),
        }
        if self.pairs_vs_blosum is not None:
            summary["attention_pairs"] = asdict(self.pairs_vs_blosum)
        if self.context_vs_blosum is not None:
            summary["attention_context"] = asdict(self.context_vs_blosum)
        for which in ("pairs_by_offset", "context_by_offset"):
            if getattr(self, which) is not None:
                paths[f"{which}.csv"] = out / f"{which.replace('context', 'context_similarity').replace('pairs', 'pair_similarity')}.csv"
                self.frame(which).to_csv(paths[f"{which}.csv"], float_format="%.6f")
                summary[f"attention_{which}"] = asdict(getattr(self, f"{which}_vs_blosum"))
        if study is not None:
            summary["study"] = study.to_dict()
            paths["similarity_table.csv"] = out / "similarity_table.csv"
            paths["heads.csv"] = out / "heads.csv"
            study.table().to_csv(paths["similarity_table.csv"], index=False, float_format="%.6f")
            study.heads.to_csv(paths["heads.csv"], index=False, float_format="%.6f")
        paths["blosum_comparison.json"].write_text(json.dumps(summary, indent=2) + "\n")
        return paths


def result_of(profiles: AttentionProfiles, model: PerformerLM, *, method: Method = "pearson",
              top: int = 10) -> SimilarityResult:
    """Every measure of ``profiles`` and ``model``'s embeddings, compared with BLOSUM62."""
    attention = profile_similarity(profiles.enrichment(), method)
    embedding = embedding_similarity(model)
    pairs = profiles.pair_log_odds()
    context = profiles.context_similarity()
    by_offset = {}
    if profiles.pair_offset_expected is not None:
        by_offset = dict(pairs_by_offset=profiles.pair_log_odds("offset"),
                         context_by_offset=profiles.context_similarity("offset"))
        by_offset |= {f"{k}_vs_blosum": compare_with_blosum(v, top) for k, v in list(by_offset.items())}
    return SimilarityResult(attention, embedding, profiles, compare_with_blosum(attention, top),
                            compare_with_blosum(embedding, top), method, pairs, compare_with_blosum(pairs, top),
                            context, compare_with_blosum(context, top), **by_offset)


def analyse(model: PerformerLM, sequences: Iterable[str], *, layers: Sequence[int] | None = None,
            method: Method = "pearson", row_block: int = 256, top: int = 10,
            progress: bool | None = False) -> SimilarityResult:
    """Attention and embedding similarity of ``model`` on ``sequences``, compared with BLOSUM62."""
    profiles = attention_profiles(model, sequences, layers=layers, row_block=row_block, progress=progress)
    return result_of(profiles, model, method=method, top=top)
