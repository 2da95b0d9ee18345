"""Amino-acid similarity (attention profiles, embeddings) vs BLOSUM62; figures; analysis CLIs."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch
from Bio.Align import substitution_matrices
from scipy import stats

from model_utils import random_sequences, write_fasta
from protein_performer.alphabet import ALPHABET, STANDARD_AMINO_ACIDS
from protein_performer.analysis.attention_map import attention_map
from protein_performer.analysis.embedding_views import header_field, nearest_neighbours
from protein_performer.analysis.similarity import (
    attention_profiles,
    blosum62,
    cluster_order,
    compare_with_blosum,
    embedding_similarity,
    profile_similarity,
)
from protein_performer.cli import main as cli_main

AA = STANDARD_AMINO_ACIDS


@pytest.fixture(scope="module")
def ecoli_head(ecoli_fasta, tmp_path_factory) -> Path:
    """The first 40 E. coli proteins as a plain FASTA (small enough for the analyses)."""
    from protein_performer.corpus.fasta import read_records

    records = [r for _, r in zip(range(40), read_records(ecoli_fasta))]
    return write_fasta(tmp_path_factory.mktemp("ecoli") / "head.fasta", ((r.header, r.sequence) for r in records))


def _check_png(path: Path, min_kb: float = 20) -> None:
    assert path.is_file() and path.stat().st_size > min_kb * 1024, path
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_profile_similarity_properties():
    rng = np.random.default_rng(0)
    profiles = rng.random((12, 20))
    for method in ("pearson", "cosine"):
        sim = profile_similarity(profiles, method)
        assert sim.shape == (20, 20)
        np.testing.assert_array_equal(sim, sim.T)
        np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-12)
        assert np.all(np.abs(sim) <= 1 + 1e-12)
    np.testing.assert_allclose(profile_similarity(profiles, "pearson"), np.corrcoef(profiles.T), atol=1e-12)


def test_attention_profiles_match_full_attention(model):
    seqs = random_sequences(3, 20, 45, seed=1)
    blocked = attention_profiles(model, seqs, row_block=7)
    H = model.config.heads
    mass = np.zeros((2 * H, 20))
    for seq in seqs:
        ids = torch.tensor([[ALPHABET.cls_idx, *ALPHABET.encode(seq).tolist(), ALPHABET.eos_idx]])
        with torch.no_grad():
            out = model(ids, torch.ones_like(ids, dtype=torch.bool), return_attention=True)
        for b in (1, 2):
            w = out.attentions[b][0, :, 1:-1, 1:-1].double().numpy()  # (H, n, n): residues only
            for a, letter in enumerate(AA):
                cols = [j for j, c in enumerate(seq) if c == letter]
                mass[(b - 1) * H : b * H, a] += w[:, :, cols].sum(axis=(1, 2))
    np.testing.assert_allclose(blocked.mass, mass, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(blocked.total, mass.sum(1), rtol=1e-6)
    counts = np.array([sum(s.count(a) for s in seqs) for a in AA])
    np.testing.assert_array_equal(blocked.counts, counts)
    share = mass / mass.sum(1, keepdims=True)
    np.testing.assert_allclose(blocked.enrichment(), share / (counts / counts.sum()), rtol=1e-6)


def test_attention_pairs_match_full_attention(model):
    """Observed a -> b mass (no self-attention) and its composition-based expectation, from the
    full (n x n) attention of each protein, equal the row-blocked accumulation."""
    seqs = random_sequences(2, 90, 110, seed=2)
    blocked = attention_profiles(model, seqs, row_block=32)
    observed, expected = np.zeros((20, 20)), np.zeros((20, 20))
    for seq in seqs:
        ids = torch.tensor([[ALPHABET.cls_idx, *ALPHABET.encode(seq).tolist(), ALPHABET.eos_idx]])
        with torch.no_grad():
            out = model(ids, torch.ones_like(ids, dtype=torch.bool), return_attention=True)
        types = np.array([AA.index(c) for c in seq])
        counts = np.bincount(types, minlength=20)
        for b in (1, 2):
            w = out.attentions[b][0, :, 1:-1, 1:-1].double().numpy().copy()  # (H, n, n)
            w[:, np.arange(len(seq)), np.arange(len(seq))] = 0.0
            for i, a in enumerate(types):
                for j, c in enumerate(types):
                    observed[a, c] += w[:, i, j].sum()
                expected[a] += w[:, i].sum() * (counts - np.eye(20)[a]) / (len(seq) - 1)  # the other residues
    np.testing.assert_allclose(blocked.pair_mass.sum(0), observed, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(blocked.pair_expected.sum(0), expected, rtol=1e-6, atol=1e-9)
    odds = blocked.pair_log_odds()
    np.testing.assert_allclose(odds, np.log((observed + observed.T) / (expected + expected.T)), rtol=1e-6)
    np.testing.assert_array_equal(odds, odds.T)


def test_even_attention_scores_zero_log_odds():
    """A model whose attention is spread evenly over every position has log-odds exactly 0 for every
    pair: the expectation is the composition of the *other* residues of each protein."""
    from types import SimpleNamespace

    class EvenAttention(torch.nn.Module):
        config = SimpleNamespace(depth=1, heads=2, local_heads=0, local_window=16, causal=False)

        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))

        def forward(self, ids, mask, return_attention, attention_rows):
            L = ids.shape[1]
            return SimpleNamespace(attentions={1: torch.full((1, 2, len(attention_rows), L), 1.0 / L)})

    profiles = attention_profiles(EvenAttention(), random_sequences(3, 150, 200, seed=4), row_block=64)
    np.testing.assert_allclose(profiles.pair_log_odds(), 0.0, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_pair_expectation_follows_what_each_head_sees(causal):
    """Hybrid heads (1 local of window 3, 1 global), bidirectional and causal: the expectation is
    each query's mass spread over the other residues *that head can attend to*, by brute force."""
    from protein_performer.model import PerformerConfig, PerformerLM

    torch.manual_seed(0)
    window = 3
    model = PerformerLM(PerformerConfig(dim=16, depth=1, heads=2, nb_features=8, local_heads=1,
                                        local_window=window, causal=causal, dropout=0.0)).double().eval()
    seqs = random_sequences(2, 20, 30, seed=5)
    blocked = attention_profiles(model, seqs, row_block=8)
    observed, expected = np.zeros((2, 20, 20)), np.zeros((2, 20, 20))
    for seq in seqs:
        ids = torch.tensor([[ALPHABET.cls_idx, *ALPHABET.encode(seq).tolist(), ALPHABET.eos_idx]])
        with torch.no_grad():
            w = model(ids, torch.ones_like(ids, dtype=torch.bool), return_attention=True).attentions[1]
        w = w[0, :, 1:-1, 1:-1].numpy().copy()  # (H, n, n)
        n = len(seq)
        types = np.array([AA.index(c) for c in seq])
        for h in range(2):
            for i in range(n):
                seen = [j for j in range(n) if j != i and (not causal or j <= i) and (h > 0 or abs(i - j) <= window)]
                sent = sum(w[h, i, j] for j in range(n) if j != i)
                for j in range(n):
                    if j != i:
                        observed[h, types[i], types[j]] += w[h, i, j]
                for j in seen:
                    expected[h, types[i], types[j]] += sent / len(seen)
    np.testing.assert_allclose(blocked.pair_mass, observed, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(blocked.pair_expected, expected, rtol=1e-9, atol=1e-12)
    if causal:  # the first residue sees no other: it sends nothing and expects nothing
        assert blocked.pair_expected.sum() == pytest.approx(blocked.pair_mass.sum(), rel=1e-9)


def test_even_attention_within_a_local_window_scores_zero():
    """Local heads that spread attention evenly over their window have log-odds exactly 0: the
    neighbours a window happens to hold are not something the model learned."""
    from types import SimpleNamespace

    window = 4

    class EvenLocal(torch.nn.Module):
        config = SimpleNamespace(depth=1, heads=2, local_heads=2, local_window=window, causal=False)

        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))

        def forward(self, ids, mask, return_attention, attention_rows):
            L = ids.shape[1]
            pos = torch.arange(L)
            near = ((pos[None, :] - attention_rows[:, None]).abs() <= window).double()  # (R, L)
            w = near / near.sum(-1, keepdim=True)
            return SimpleNamespace(attentions={1: w.expand(1, 2, -1, -1)})

    profiles = attention_profiles(EvenLocal(), random_sequences(3, 60, 90, seed=6), row_block=16)
    np.testing.assert_allclose(profiles.pair_log_odds(), 0.0, atol=1e-12)
    met = profiles.pair_expected > 0  # per head, pairs that never meet within a window carry nothing
    np.testing.assert_allclose(profiles.pair_mass[met] / profiles.pair_expected[met], 1.0, atol=1e-12)
    assert np.all(profiles.pair_mass[~met] == 0)


def test_context_similarity_groups_amino_acids_with_the_same_contexts():
    """Heads where D and E send their attention alike and F and Y alike make D-E and F-Y the most
    similar pairs; the profile is per-head log-odds, centred over the amino acids, correlated."""
    from protein_performer.analysis.similarity import AttentionProfiles

    rng = np.random.default_rng(0)
    expected = np.ones((4, 20, 20))
    observed = np.exp(rng.normal(0.0, 0.3, (4, 20, 20)))
    d, e, f, y = (AA.index(c) for c in "DEFY")
    for h in range(4):
        observed[h, e] = observed[h, d] * np.exp(rng.normal(0.0, 0.01, 20))
        observed[h, y] = observed[h, f] * np.exp(rng.normal(0.0, 0.01, 20))
    profiles = AttentionProfiles((1,), 4, np.ones((4, 20)), np.ones(4), np.ones(20), 1, observed, expected)
    sim = profiles.context_similarity()
    np.testing.assert_array_equal(sim, sim.T)
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-12)
    top = compare_with_blosum(sim).top_pairs
    assert {top[0][0], top[1][0]} == {"D-E", "F-Y"}
    profile = np.log(observed).transpose(1, 0, 2).reshape(20, -1)  # (20, heads * 20)
    np.testing.assert_allclose(sim, np.corrcoef(profile - profile.mean(0)), atol=1e-9)
    # What all amino acids share does not make them alike: adding one profile to all changes nothing.
    shared = np.exp(rng.normal(0.0, 1.0, (4, 1, 20)))
    alike = AttentionProfiles((1,), 4, np.ones((4, 20)), np.ones(4), np.ones(20), 1, observed * shared, expected)
    np.testing.assert_allclose(alike.context_similarity(), sim, atol=1e-9)


def test_pair_log_odds_recover_a_planted_preference():
    """Heads that send mass preferentially between D and E give D-E the highest log-odds."""
    from protein_performer.analysis.similarity import AttentionProfiles

    expected = np.ones((2, 20, 20))
    observed = np.ones((2, 20, 20))
    d, e = AA.index("D"), AA.index("E")
    observed[0, d, e] = observed[1, e, d] = 3.0
    profiles = AttentionProfiles((1,), 2, np.ones((2, 20)), np.ones(2), np.ones(20), 1, observed, expected)
    odds = profiles.pair_log_odds()
    assert compare_with_blosum(odds).top_pairs[0][0] == "D-E"
    np.testing.assert_allclose(odds[d, e], np.log(8 / 4))


def test_embedding_similarity_is_cosine(model):
    sim = embedding_similarity(model)
    w = model.embed.weight.detach().double().numpy()[list(ALPHABET.standard_indices)]
    manual = np.array([[u @ v / np.linalg.norm(u) / np.linalg.norm(v) for v in w] for u in w])
    np.testing.assert_allclose(sim, manual, atol=1e-12)
    np.testing.assert_allclose(np.diag(sim), 1.0)


def test_blosum_comparison_against_direct_scipy():
    rng = np.random.default_rng(3)
    m = rng.normal(size=(20, 20))
    m = (m + m.T) / 2
    bl = substitution_matrices.load("BLOSUM62")
    pairs = [(i, j) for i in range(20) for j in range(i + 1, 20)]
    x = [m[i, j] for i, j in pairs]
    y = [bl[AA[i]][AA[j]] for i, j in pairs]
    c = compare_with_blosum(m, top=10)
    assert c.n_pairs == 190
    assert c.pearson == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert c.spearman == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    best = sorted(range(190), key=lambda k: -x[k])
    assert [p for p, _, _ in c.top_pairs] == [f"{AA[pairs[k][0]]}-{AA[pairs[k][1]]}" for k in best[:10]]
    rank_de = best.index(pairs.index((AA.index("D"), AA.index("E")))) + 1
    assert c.landmark_ranks["D-E"] == rank_de
    # BLOSUM62 against itself: perfect, and its own top pairs hold the classic substitutions.
    own = compare_with_blosum(blosum62(), top=10)
    assert own.pearson == pytest.approx(1.0) and own.spearman == pytest.approx(1.0)
    assert set(own.landmarks_in_top) == {"D-E", "F-Y", "I-V", "K-R"}


def test_cluster_order_is_a_permutation():
    order = cluster_order(blosum62())
    assert sorted(order) == list(range(20))
    pos = {AA[i]: k for k, i in enumerate(order)}
    assert abs(pos["I"] - pos["V"]) <= 3 and abs(pos["F"] - pos["Y"]) <= 3  # similar acids sit together


def test_cli_similarity_writes_results_and_figures(ckpt, ecoli_head, tmp_path):
    out = tmp_path / "sim"
    assert cli_main(["similarity", "--checkpoint", str(ckpt), "--fasta", str(ecoli_head), "--out", str(out),
                     "--max-proteins", "15", "--row-block", "128"]) == 0
    sim = pd.read_csv(out / "similarity.csv", index_col=0)
    assert list(sim.index) == list(AA) and list(sim.columns) == list(AA)
    np.testing.assert_allclose(sim.values, sim.values.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(sim.values), 1.0, atol=1e-6)
    summary = json.loads((out / "blosum_comparison.json").read_text())
    assert summary["proteins"] == 15 and summary["layers"] == [1, 2]
    iu = np.triu_indices(20, 1)
    for name, csv in (("attention", "similarity.csv"), ("embedding", "embedding_similarity.csv")):
        m = pd.read_csv(out / csv, index_col=0).values
        assert summary[name]["pearson"] == pytest.approx(stats.pearsonr(m[iu], blosum62()[iu])[0], abs=1e-4)
        assert summary[name]["spearman"] == pytest.approx(stats.spearmanr(m[iu], blosum62()[iu])[0], abs=1e-4)
        assert set(summary[name]["landmark_ranks"]) == {"D-E", "F-Y", "I-V", "K-R"}
    profiles = pd.read_csv(out / "attention_profiles.csv", index_col=0)
    assert profiles.shape == (4, 20) and profiles.index[0] == "L1H1"
    for stem in ("similarity", "embedding_similarity"):
        _check_png(out / f"{stem}.png")
        assert (out / f"{stem}.svg").stat().st_size > 10_000


def test_cli_attention_map(ckpt, ecoli_head, model, tmp_path):
    png = tmp_path / "map.png"
    from protein_performer.corpus.fasta import read_records

    rec = next(r for r in read_records(ecoli_head) if len(r) < 60)
    assert cli_main(["attention", "--checkpoint", str(ckpt), "--fasta", str(ecoli_head), "--id", rec.id,
                     "--block", "2", "--head", "1", "--out", str(png), "--row-block", "16"]) == 0
    _check_png(png, min_kb=15)
    weights = pd.read_csv(png.with_suffix(".csv"), index_col=0).values
    assert weights.shape == (len(rec) + 2, len(rec) + 2)
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-4)
    mean = attention_map(model, rec.id, rec.sequence, -1, None, row_block=1000).weights
    per_head = [attention_map(model, rec.id, rec.sequence, 2, h, row_block=5).weights for h in (1, 2)]
    np.testing.assert_allclose(mean, (per_head[0] + per_head[1]) / 2, atol=1e-6)
    assert cli_main(["attention", "--checkpoint", str(ckpt), "--fasta", str(ecoli_head), "--id", "NOPE",
                     "--out", str(png), "--overwrite"]) == 1


def test_cli_plot_embeddings_and_neighbours(ckpt, ecoli_head, tmp_path):
    emb = tmp_path / "emb.npz"
    assert cli_main(["embed", "--checkpoint", str(ckpt), "--fasta", str(ecoli_head), "--out", str(emb)]) == 0
    from protein_performer.embed import read_embeddings

    stored = read_embeddings(emb)
    query = next(iter(stored))
    png = tmp_path / "views.png"
    assert cli_main(["plot-embeddings", "--embeddings", str(emb), "--out", str(png), "--color-by", "pe",
                     "--neighbours", query, "-k", "5"]) == 0
    _check_png(png)
    coords = pd.read_csv(png.with_suffix(".csv"))
    assert len(coords) == 40 and {"pca1", "pca2", "tsne1", "tsne2", "group"} <= set(coords.columns)
    neighbours = pd.read_csv(tmp_path / "views.neighbours.csv")
    assert len(neighbours) == 5 and query not in set(neighbours["id"])
    assert neighbours["cosine"].is_monotonic_decreasing
    direct = nearest_neighbours(stored.matrix(), list(stored), query, 5)
    assert list(direct["id"]) == list(neighbours["id"])


def test_header_fields():
    header = "sp|P0A7Z4|RPOA_ECOLI DNA-directed RNA polymerase subunit alpha OS=Escherichia coli (strain K12) OX=83333 GN=rpoA PE=1 SV=1"
    assert header_field(header, "gn3") == "rpo"
    assert header_field(header, "pe") == "PE 1"
    assert header_field(header, "os") == "Escherichia coli (strain K12)"
    assert header_field("seq1", "gn") == "unknown"
