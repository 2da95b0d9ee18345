"""Amino-acid similarity on family windows: what each head sees (column heads, segments), the
offset null, the controls (untrained, shuffled columns), the alignment's own log-odds, and the
``similarity --homologs`` command with its bootstrap intervals and three-panel heatmaps."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch

from model_utils import random_sequences, tiny_checkpoint
from protein_performer.alphabet import ALPHABET, STANDARD_AMINO_ACIDS
from protein_performer.analysis.attention_counts import (
    MAX_OFFSET,
    Window,
    count_attention,
    head_kinds,
)
from protein_performer.analysis.similarity import AttentionProfiles, compare_with_blosum
from protein_performer.analysis.similarity_inputs import family_windows, shuffle_columns
from protein_performer.analysis.similarity_study import alignment_log_odds
from protein_performer.cli import main as cli_main
from protein_performer.corpus.families import read_family
from protein_performer.model import PerformerConfig, PerformerLM, column_permutation, protein_positions

AA = STANDARD_AMINO_ACIDS


def _a3m(path: Path, n: int = 12, length: int = 40, seed: int = 0) -> Path:
    """A random aligned family: a query and ``n - 1`` mutants with a few gaps and insertions."""
    rng = np.random.default_rng(seed)
    query = random_sequences(1, length, length, seed=seed)[0]
    lines = [">query", query]
    for k in range(1, n):
        row = []
        for c in query:
            u = rng.random()
            row.append("-" if u < 0.08 else rng.choice(list(AA)) if u < 0.4 else c)
            if rng.random() < 0.05:
                row.append(rng.choice(list(AA)).lower())
        lines += [f">m{k}", "".join(row)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _brute_force(model: PerformerLM, window: Window) -> dict[str, np.ndarray]:
    """Pair masses and both nulls of one window from the full attention matrix, query by query."""
    ids = torch.as_tensor(window.tokens.astype(np.int64))[None]
    pos = None if window.positions is None else torch.as_tensor(window.positions.astype(np.int64))[None]
    with torch.no_grad():
        kwargs = {} if pos is None else {"position_ids": pos}
        att = model(ids, torch.ones_like(ids, dtype=torch.bool), return_attention=True, **kwargs).attentions
    config = model.config
    positions = (pos if pos is not None else protein_positions(ids, ALPHABET.eos_idx))[0].numpy()
    protein = np.concatenate([[0], np.cumsum(window.tokens[:-1] == ALPHABET.eos_idx)])
    rank = column_permutation(torch.as_tensor(positions)[None])[1][0].numpy()
    first = ALPHABET.standard_indices[0]
    code = np.where((window.tokens >= first) & (window.tokens < first + 20), window.tokens.astype(int) - first, -1)
    kinds = head_kinds(config)
    F_ = config.depth * config.heads
    observed, even, offset = (np.zeros((F_, 20, 20)) for _ in range(3))
    L = len(window.tokens)
    for b in range(config.depth):
        w = att[b + 1][0].double().numpy()  # (H, L, L)
        for h, kind in enumerate(kinds):
            f = b * config.heads + h
            klass_mass, klass_pairs = {}, {}
            pair_list = []
            for i in range(L):
                if code[i] < 0:
                    continue

                def sees(j: int) -> bool:
                    if j == i or window.tokens[j] < ALPHABET.amino_acid_indices[0]:
                        return False
                    if config.segment_attention and protein[j] != protein[i]:
                        return False
                    if kind == "local":
                        return abs(j - i) <= config.local_window
                    if kind == "column":
                        return abs(rank[j] - rank[i]) <= config.local_window
                    return True

                seen = [j for j in range(L) if sees(j)]
                residues = [j for j in range(L) if j != i and window.tokens[j] >= ALPHABET.amino_acid_indices[0]]
                sent = sum(w[h, i, j] for j in residues)
                for j in residues:
                    if code[j] >= 0:
                        observed[f, code[i], code[j]] += w[h, i, j]
                for j in seen:
                    if code[j] >= 0:
                        even[f, code[i], code[j]] += sent / len(seen)
                for j in seen:
                    if code[j] < 0:
                        continue
                    k = (int(np.clip(positions[j] - positions[i], -MAX_OFFSET, MAX_OFFSET)), protein[i] == protein[j])
                    klass_pairs[k] = klass_pairs.get(k, 0) + 1
                    pair_list.append((code[i], code[j], k))
                for j in residues:
                    if code[j] >= 0:
                        k = (int(np.clip(positions[j] - positions[i], -MAX_OFFSET, MAX_OFFSET)), protein[i] == protein[j])
                        klass_mass[k] = klass_mass.get(k, 0.0) + w[h, i, j]
            for a, c, k in pair_list:
                offset[f, a, c] += klass_mass.get(k, 0.0) / klass_pairs[k]
    return {"pair_mass": observed, "pair_expected": even, "pair_offset_expected": offset}


@pytest.mark.parametrize("shape", ["restart", "column", "segment"])
def test_family_window_counts_match_the_full_attention_matrix(tmp_path, shape):
    """Every head kind (local, column, global; per-protein segments) on a window of several members:
    the blocked counts equal a brute force over the full float64 attention matrix."""
    common = dict(dim=12, depth=2, heads=3, nb_features=8, local_heads=2, local_window=3, dropout=0.0)
    extra = {"restart": dict(restart_positions=True),
             "column": dict(aligned_positions=True, restart_positions=True, column_heads=1),
             "segment": dict(aligned_positions=True, segment_attention=True)}[shape]
    torch.manual_seed(0)
    model = PerformerLM(PerformerConfig(**common, **extra)).double().eval()
    family = read_family(_a3m(tmp_path / "f.a3m", n=6, length=14))
    window = family_windows(family, window_tokens=60, windows=1, aligned=model.config.aligned_positions)[0]
    counts = count_attention(model, [window], row_block=7)
    truth = _brute_force(model, window)
    for name, value in truth.items():
        np.testing.assert_allclose(getattr(counts, name)[0], value, rtol=1e-9, atol=1e-12, err_msg=name)
    assert counts.kinds[:3] == (("local", "column", "global") if shape == "column" else ("local", "local", "global"))


class _PositionOnly(torch.nn.Module):
    """Attention whose weight is a function of the key's offset alone (not of what the residues are;
    rows are left unnormalised so that the weight at an offset is the same for every query)."""

    def __init__(self) -> None:
        super().__init__()
        self.config = PerformerConfig(dim=8, depth=1, heads=2, nb_features=4, local_heads=1, local_window=4)
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, ids, mask, return_attention, attention_rows, position_ids=None):
        L = ids.shape[1]
        d = (torch.arange(L)[None, :] - attention_rows[:, None]).double()  # (R, L)
        local = torch.exp(-((d - 1) ** 2)) * (d.abs() <= 4)
        wide = torch.exp(-0.1 * d.abs().clamp_max(MAX_OFFSET))  # beyond MAX_OFFSET one class a side
        w = torch.stack([local, wide])  # (2 heads, R, L)
        return type("Out", (), {"attentions": {1: w[None]}})()


def test_attention_that_follows_positions_alone_scores_zero_against_the_offset_null():
    """The even null calls such attention 'similar' wherever the composition differs by offset; the
    offset null gives exactly 0 for a single protein, whatever its residues."""
    seqs = ["".join(sorted(s)) for s in random_sequences(3, 60, 80, seed=3)]  # runs of one residue: offsets matter
    profiles = AttentionProfiles.from_counts(count_attention(_PositionOnly(), [
        Window(ALPHABET.frame(s), None, str(i)) for i, s in enumerate(seqs)], row_block=16))
    assert np.abs(profiles.pair_log_odds("even")).max() > 0.5  # composition leaks through the even null
    np.testing.assert_allclose(profiles.pair_log_odds("offset"), 0.0, atol=1e-9)


def test_shuffled_columns_keep_each_column_and_each_members_gaps(tmp_path):
    family = read_family(_a3m(tmp_path / "f.a3m", n=30, length=50, seed=2))
    shuffled = shuffle_columns(family, np.random.default_rng(0))
    assert shuffled.ids == family.ids and np.array_equal(shuffled.weights, family.weights)
    for k in range(len(family)):
        assert len(shuffled.sequences[k]) == len(family.sequences[k])
        np.testing.assert_array_equal(shuffled.residue_positions(k), family.residue_positions(k))
        assert [c.islower() for c in shuffled.rows[k]] == [c.islower() for c in family.rows[k]]
    for c in range(family.columns.shape[1]):
        assert sorted(family.columns[:, c]) == sorted(shuffled.columns[:, c])
    assert sum(a != b for a, b in zip(family.sequences, shuffled.sequences)) > 20
    again = read_family(_write_rows(tmp_path / "s.a3m", shuffled))  # the rows are a valid A3M of the same columns
    np.testing.assert_array_equal(again.columns, shuffled.columns)


def _write_rows(path: Path, family) -> Path:
    path.write_text("".join(f">{i}\n{r}\n" for i, r in zip(family.ids, family.rows)))
    return path


def test_alignment_log_odds_find_pairs_that_share_columns(tmp_path):
    """Columns where D and E (and F and Y) stand in for each other, beside conserved columns of every
    other residue, make D-E and F-Y the top pairs."""
    rng = np.random.default_rng(0)
    conserved = [a for a in AA if a not in "DEFY"]
    rows = []
    for k in range(40):
        row = "".join(rng.choice(["D", "E"]) if c % 3 == 0 else rng.choice(["F", "Y"]) if c % 3 == 1
                      else conserved[c % len(conserved)] for c in range(48))
        rows.append(f">s{k}\n{row}\n")
    (tmp_path / "a.a3m").write_text("".join(rows))
    top = compare_with_blosum(alignment_log_odds([read_family(tmp_path / "a.a3m")])).top_pairs
    assert {top[0][0], top[1][0]} == {"D-E", "F-Y"}


def test_similarity_homologs_writes_every_source_measure_and_interval(tmp_path):
    """`similarity --homologs` on a family model: trained, untrained and shuffled sources; every
    measure on every head group; bootstrap intervals over windows; the alignment row; per-head table;
    three-panel heatmaps."""
    ckpt = tiny_checkpoint(tmp_path / "fam.ckpt", heads=4, local_heads=3, column_heads=1, local_window=4,
                           restart_positions=True, aligned_positions=True)
    aln = _a3m(tmp_path / "fam.a3m", n=20, length=30)
    out = tmp_path / "sim"
    assert cli_main(["similarity", "--checkpoint", str(ckpt), "--homologs", str(aln), "--out", str(out),
                     "--windows", "4", "--window-tokens", "200", "--bootstrap", "20", "--quiet"]) == 0
    summary = json.loads((out / "blosum_comparison.json").read_text())
    figures = pd.DataFrame(summary["study"]["figures"])
    assert summary["study"]["units"] == 4 and summary["study"]["unit"] == "family windows"
    assert set(figures.source) == {"trained", "untrained", "shuffled", "alignment"}
    trained = figures[(figures.source == "trained") & (figures.measure != "embedding")]
    assert set(trained.heads) == {"all", "local", "column", "global"}
    assert set(trained.measure) == {"profiles", "pairs", "contexts", "pairs_by_offset", "contexts_by_offset"}
    for _, f in trained.iterrows():
        others = figures[figures.source.isin(["untrained", "shuffled"]) & (figures.measure == f.measure)
                         & (figures.heads == f.heads)]
        assert f.above_controls == pytest.approx(f.pearson - others.pearson.max())
        low, high = f.ci
        assert -1 <= low <= high <= 1
    table = pd.read_csv(out / "similarity_table.csv")
    assert len(table) == len(figures)
    heads = pd.read_csv(out / "heads.csv")
    assert list(heads.kind) == ["local", "local", "column", "global"] * 2
    image = mpimg.imread(out / "context_similarity.png")
    assert image.shape[1] > 2.5 * image.shape[0]  # model, BLOSUM62 and their difference side by side
    from protein_performer.experiments.demo import similarity_rows  # the demo's summary of the same JSON

    rows = {r[0]: r for r in similarity_rows(summary)}
    assert set(rows) == {"profiles", "pairs", "contexts", "pairs by offset", "contexts by offset", "embedding"}
    contexts = trained[(trained.measure == "contexts") & (trained.heads == "all")].iloc[0]
    assert rows["contexts"][1].startswith(f"{contexts.pearson:.3f} [") and rows["embedding"][3] == "n/a"


def test_similarity_homologs_refuses_unaligned_homologs_for_an_aligned_model(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "fam.ckpt", restart_positions=True, aligned_positions=True)
    plain = tmp_path / "plain.fasta"
    plain.write_text(">a\nMKVLAAGHTW\n>b\nMKVLSAGHT\n")  # unequal lengths: plain FASTA
    code = cli_main(["similarity", "--checkpoint", str(ckpt), "--homologs", str(plain), "--out", str(tmp_path / "o"),
                     "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "not aligned" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_sampled_query_rows_count_only_those_queries(tmp_path):
    """`query_rows` counts a seeded sample of each window's queries: the same as counting all rows
    and keeping those queries' contributions (brute force on a tiny float64 model)."""
    torch.manual_seed(0)
    model = PerformerLM(PerformerConfig(dim=12, depth=1, heads=3, nb_features=8, local_heads=2, local_window=3,
                                        restart_positions=True, dropout=0.0)).double().eval()
    family = read_family(_a3m(tmp_path / "f.a3m", n=6, length=14))
    window = family_windows(family, window_tokens=60, windows=1, aligned=False)[0]
    sampled = count_attention(model, [window], row_block=5, query_rows=11, seed=4)
    n_res = int((window.tokens >= ALPHABET.amino_acid_indices[0]).sum())
    queries = np.sort(np.random.default_rng(np.random.SeedSequence([4, 0])).choice(n_res, size=11, replace=False))
    from protein_performer.analysis.attention_counts import count_window

    direct = count_window(model, window, (1,), sampled.kinds, row_block=64, queries=queries)
    for got, want in zip((sampled.mass, sampled.total, sampled.counts, sampled.pair_mass, sampled.pair_expected,
                          sampled.pair_offset_expected), direct):
        np.testing.assert_allclose(got[0], want, rtol=1e-12, atol=1e-12)
    full = count_attention(model, [window], row_block=64)
    assert sampled.pair_mass.sum() < full.pair_mass.sum() and np.array_equal(sampled.counts, full.counts)
