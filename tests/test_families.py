"""Families: reading homolog sets, sequence weights, similarity splits, family windows, the profile
scorer, homolog-conditioned scores and the model-profile mix."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from protein_performer.alphabet import ALPHABET
from protein_performer.cli import main
from protein_performer.corpus.families import (
    GAP,
    column_profile,
    read_family,
    sequence_weights,
    similarity_splits,
)
from protein_performer.model import PerformerConfig, PerformerLM
from shared_data import data_path

# The shared TEM-1 data; the tests that read it take the families_dir / variants_dir fixtures (conftest).
TEM1_A3M = data_path("families") / "BLAT_ECOLX_ColabFold_2202.a3m"
TEM1_CSV = data_path("variants") / "BLAT_ECOLX_Ranganathan2015.csv"
TEM1_FASTA = data_path("variants") / "BLAT_ECOLX_Ranganathan2015.fasta"

# One small family written in every format: the query, two homologs with an insertion and a gap.
A3M = """>q query
MKTAYIAKQR
>h1 homolog one
MKTAYkkIAKQR
>h2
-KSAY-AKHR
>h3
MRTAFIAKQR
"""
STOCKHOLM = """# STOCKHOLM 1.0
q   MKTAY--IAKQR
h1  MKTAYKKIAKQR
h2  -KSAY---AKHR
h3  MRTAF--IAKQR
//
"""
ALIGNED = ">q\nMKTAY--IAKQR\n>h1\nMKTAYKKIAKQR\n>h2\n-KSAY---AKHR\n>h3\nMRTAF--IAKQR\n"
PLAIN = ">q\nMKTAYIAKQR\n>h1\nMKTAYKKIAKQR\n>h2\nKSAYAKHR\n>h3\nMRTAFIAKQR\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name,text", [("f.a3m", A3M), ("f.sto", STOCKHOLM), ("f.fasta", ALIGNED)])
def test_every_alignment_format_gives_the_same_members_and_columns(tmp_path, name, text):
    fam = read_family(_write(tmp_path, name, text))
    assert fam.ids == ["q", "h1", "h2", "h3"] and fam.query == 0
    assert fam.sequences == ["MKTAYIAKQR", "MKTAYKKIAKQR", "KSAYAKHR", "MRTAFIAKQR"]
    assert fam.columns.shape == (4, 10)
    assert fam.columns[2, 0] == GAP and fam.columns[2, 5] == GAP  # h2's gaps in the query's columns
    # each residue's column: h1's insertion KK has none
    assert fam.residue_columns(1).tolist() == [0, 1, 2, 3, 4, -1, -1, 5, 6, 7, 8, 9]
    assert fam.residue_columns(2).tolist() == [1, 2, 3, 4, 6, 7, 8, 9]


def test_plain_fasta_is_read_unaligned_with_unit_weights(tmp_path):
    fam = read_family(_write(tmp_path, "plain.fasta", PLAIN))
    assert fam.format == "fasta" and fam.columns is None and fam.weights.tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="needs aligned homologs"):
        column_profile(fam)


def test_query_by_id_and_bad_input_name_the_file_record_and_fix(tmp_path):
    fam = read_family(_write(tmp_path, "f.a3m", A3M), query="h3")
    assert fam.query == 3 and fam.query_sequence == "MRTAFIAKQR"
    with pytest.raises(ValueError, match=r"f\.a3m: no record with id 'nope'.*--query"):
        read_family(tmp_path / "f.a3m", query="nope")
    ragged = _write(tmp_path, "ragged.a3m", ">q\nMKTAY\n>bad one\nMKTA\n")
    with pytest.raises(ValueError, match=r"ragged\.a3m: record 2 \('bad'\) has 4 aligned columns.*ragged"):
        read_family(ragged)
    with pytest.raises(ValueError, match=r"empty\.a3m: no sequences"):
        read_family(_write(tmp_path, "empty.a3m", "\n"))
    with pytest.raises(ValueError, match=r"record 2 \('x'\): character '1'"):
        read_family(_write(tmp_path, "digit.a3m", ">q\nMKT\n>x\nM1T\n"))
    with pytest.raises(ValueError, match=r"ragged\.sto: record 2 \('b'\) is 4 columns long"):
        read_family(_write(tmp_path, "ragged.sto", "# STOCKHOLM 1.0\na MKTAY\nb MKTA\n//\n"))


def _brute_identity(columns: np.ndarray) -> np.ndarray:
    n = len(columns)
    out = np.zeros((n, n))
    for i in range(n):
        real = columns[i] < GAP
        for j in range(n):
            out[i, j] = np.sum(real & (columns[i] == columns[j])) / max(real.sum(), 1)
    return out


def _random_family(tmp_path: Path, n: int = 40, width: int = 30, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    aa = np.array(list("ACDEFGHIKLMNPQRSTVWY-"))
    base = rng.integers(0, 20, width)
    lines = []
    for k in range(n):
        row = base.copy()
        flip = rng.random(width) < rng.choice([0.05, 0.3, 0.6])
        row[flip] = rng.integers(0, 21, flip.sum())
        if k == 0:
            row = base
        lines.append(f">m{k}\n{''.join(aa[row])}\n")
    return _write(tmp_path, "random.a3m", "".join(lines))


def test_weights_and_splits_match_a_brute_force_identity(tmp_path):
    fam = read_family(_random_family(tmp_path))
    ident = _brute_identity(fam.columns)
    want = 1 / (ident >= 0.8 - 1e-9).sum(1)
    np.testing.assert_allclose(sequence_weights(fam, 0.8), want, rtol=0, atol=1e-12)
    splits = np.array(similarity_splits(fam, split_identity=0.7, valid_fraction=0.3, test_fraction=0.3))
    assert splits[0] == "train" and {"valid", "test"} & set(splits)
    sym = np.maximum(ident, ident.T)
    held = splits != "train"
    # every held-out member is below the split identity to every training member
    assert sym[np.ix_(held, splits == "train")].max() < 0.7


def test_weighted_profile_matches_a_direct_count(tmp_path):
    fam = read_family(_write(tmp_path, "f.a3m", A3M))
    fam.weights = np.array([1.0, 0.5, 2.0, 0.25])
    prof = column_profile(fam, pseudocount=0.5)
    # column 1: q K, h1 K, h2 K, h3 R -> K 3.5, R 0.25 of weight 3.75
    k, r = "ACDEFGHIKLMNPQRSTVWY".index("K"), "ACDEFGHIKLMNPQRSTVWY".index("R")
    assert prof[1, k] == pytest.approx((3.5 + 0.5) / (3.75 + 10))
    assert prof[1, r] == pytest.approx((0.25 + 0.5) / (3.75 + 10))
    assert np.allclose(prof.sum(1), 1)


def test_prepare_family_writes_weights_and_similarity_splits(tmp_path):
    out = tmp_path / "fam"
    src = _random_family(tmp_path, n=60)
    assert main(["prepare", str(src), "--out", str(out), "--family", "--split-identity", "0.7",
                 "--valid-fraction", "0.2", "--test-fraction", "0.2", "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    fam = read_family(src)
    assert manifest["family"]["query_id"] == "m0" and manifest["family"]["members"] == 60
    assert manifest["family"]["neff"] == pytest.approx(fam.neff, abs=1e-3)
    from protein_performer.corpus.shards import open_split

    total = 0.0
    for split in ("train", "valid", "test"):
        shard = open_split(out, split)
        assert len(shard.weights) == len(shard)
        total += shard.weights.sum()
    assert total == pytest.approx(fam.neff, rel=1e-6)
    assert main(["prepare", str(src), "--out", str(tmp_path / "x"), "--query", "m3", "--quiet"]) == 1


def test_family_windows_are_whole_framed_members_drawn_by_weight(tmp_path):
    from protein_performer.corpus.prepare import FamilyOptions, prepare
    from protein_performer.corpus.shards import open_split
    from protein_performer.datasets import FamilyWindowDataset

    src = _write(tmp_path, "f.a3m", A3M)
    prepare([src], tmp_path / "p", family=FamilyOptions(), valid_fraction=0.0, test_fraction=0.0)
    shard = open_split(tmp_path / "p", "train")
    ds = FamilyWindowDataset(shard, 40, seed=3)
    window = ds[0].tokens
    assert len(window) == 40 and window[0] == ALPHABET.cls_idx
    members = {ALPHABET.decode(shard.protein(i)) for i in range(len(shard))}
    text = ALPHABET.decode(window)
    for part in text.split("<eos>")[:-1]:  # whole members, framed
        assert part.startswith("<cls>") and part[5:] in members
    assert np.array_equal(ds[0].tokens, FamilyWindowDataset(shard, 40, seed=3)[0].tokens)
    ds.set_epoch(1)
    assert not np.array_equal(ds[0].tokens, window) or not np.array_equal(ds[1].tokens, ds[0].tokens)
    # eval windows do not move with the epoch
    ev = FamilyWindowDataset(shard, 40, seed=3, random=False)
    first = ev[0].tokens
    ev.set_epoch(5)
    assert np.array_equal(ev[0].tokens, first)
    # drawn by weight: the first member of a window follows the weights
    ds.weights = np.array([8.0, 1.0, 0.5, 0.5])
    firsts = []
    for e in range(400):
        ds.set_epoch(e)
        t = ds[0].tokens
        firsts.append(ALPHABET.decode(t[1 : int(np.flatnonzero(t == ALPHABET.eos_idx)[0])]))
    share = np.mean([f == ALPHABET.decode(shard.protein(0)) for f in firsts])
    assert 0.7 < share < 0.9  # 8 / 10


def test_restart_positions_counts_from_each_member_and_steps_equal_the_forward():
    from protein_performer.model import protein_positions

    ids = torch.tensor([[2, 5, 6, 3, 2, 7, 3, 2, 8]])
    assert protein_positions(ids, ALPHABET.eos_idx).tolist() == [[0, 1, 2, 3, 0, 1, 2, 0, 1]]
    torch.manual_seed(0)
    ids = torch.randint(5, 25, (2, 30))
    ids[:, [0, 9, 10, 21, 22]] = torch.tensor([2, 3, 2, 3, 2])
    for kw in (dict(attention="softmax", local_heads=1), dict(attention="exact")):
        cfg = PerformerConfig(dim=16, depth=2, heads=2, nb_features=8, causal=True, restart_positions=True,
                              dropout=0.0, **kw)
        model = PerformerLM(cfg).double().eval()
        with torch.no_grad():
            full = model(ids).logits
            state = model.init_state(2)
            stepped = torch.stack([model.step(ids[:, t], state) for t in range(ids.shape[1])], 1)
        torch.testing.assert_close(stepped, full, rtol=0, atol=1e-12)


def _tiny(causal: bool, aligned: bool = False) -> PerformerLM:
    torch.manual_seed(0)
    cfg = PerformerConfig(dim=16, depth=2, heads=2, nb_features=8, causal=causal, restart_positions=True,
                          local_heads=1, dropout=0.0, aligned_positions=aligned)
    return PerformerLM(cfg).double().eval()


def test_causal_context_scores_equal_a_full_forward_over_homologs_and_mutant(tmp_path):
    """The homologs' state is computed once and copied: the scores must equal a plain forward over
    [homologs, mutant] for every mutant."""
    from protein_performer.variants.context import (
        ContextOptions,
        _pool,
        causal_context_scores,
        draw_context,
        wild_type_positions,
    )
    from protein_performer.variants.mutants import apply_mutant, parse_mutant

    fam = read_family(_write(tmp_path, "f.a3m", A3M))
    model = _tiny(True, aligned=True)
    wt = "KTAYIAKQR"  # the query without its first residue: positions 1.. in the query's frame
    mutants = [parse_mutant(m, wt, 2) for m in ("K2A", "T3W:Q9E", "R10K")] + [None]
    options = ContextOptions(context_length=40, contexts=1, seed=5, batch_size=2)
    got = causal_context_scores(model, fam, wt, mutants, options)
    pool, weights, positions = _pool(fam, wt, model)
    members = draw_context(pool, weights, 40 - 11, np.random.default_rng(np.random.SeedSequence([5, 0])))
    prefix = np.concatenate([pool[k] for k in members])
    where = np.concatenate([*(positions[k] for k in members), wild_type_positions(fam, wt, model)])
    assert _pool(fam, wt, _tiny(True))[2] is None  # a model trained without aligned positions gets none
    assert wild_type_positions(fam, wt).tolist() == list(range(0, 11))  # <cls> at 0, residues 1..9, <eos> 10

    def ll(seq: str) -> float:
        ids = torch.as_tensor(np.concatenate([prefix, ALPHABET.frame(seq)]).astype(np.int64))[None]
        lp = model(ids, position_ids=torch.as_tensor(where)[None]).logits.double().log_softmax(-1)[0].detach()
        p = len(prefix)
        return float(sum(lp[t - 1, ids[0, t]] for t in range(p, ids.shape[1])))

    want = [ll(apply_mutant(wt, m)) - ll(wt) for m in mutants[:3]]
    np.testing.assert_allclose(got[:3], want, rtol=0, atol=1e-9)
    assert np.isnan(got[3])


def test_masked_context_scores_mask_the_wild_type_inside_the_homologs(tmp_path):
    from protein_performer.variants.context import ContextOptions, masked_context_scores
    from protein_performer.variants.mutants import parse_mutant

    fam = read_family(_write(tmp_path, "f.a3m", A3M))
    model = _tiny(False)
    wt = "MKTAYIAKQR"
    mutants = [parse_mutant(m, wt, 1) for m in ("K2A", "K2R", "T3W:Q9E")]
    one = masked_context_scores(model, fam, wt, mutants, ContextOptions(context_length=48, contexts=1))
    two = masked_context_scores(model, fam, wt, mutants, ContextOptions(context_length=48, contexts=2))
    assert np.all(np.isfinite(one)) and np.all(np.isfinite(two))
    # additive over substitutions within a draw
    sep = masked_context_scores(model, fam, wt, [parse_mutant("T3W", wt, 1), parse_mutant("Q9E", wt, 1)],
                                ContextOptions(context_length=48, contexts=1))
    assert one[2] == pytest.approx(sep.sum(), abs=1e-9)
    with pytest.raises(ValueError, match="--context-tokens 10 leaves no room"):
        masked_context_scores(model, fam, wt, mutants, ContextOptions(context_length=10))


def test_profile_weight_is_chosen_on_held_out_homologs(tmp_path):
    from protein_performer.variants.mixing import GRID, choose_profile_weight, mix_scores

    src = _random_family(tmp_path, n=80, width=40, seed=1)
    fam = read_family(src)
    choice = choose_profile_weight(_tiny(False), fam, members=10, context_length=None)
    assert choice.weight in GRID and set(choice.log_likelihood) == set(GRID)
    assert choice.log_likelihood[choice.weight] == max(choice.log_likelihood.values())
    # an untrained model knows nothing of the family: the profile must win
    assert choice.weight >= 0.5 and choice.log_likelihood[1.0] > choice.log_likelihood[0.0]
    np.testing.assert_allclose(mix_scores(np.array([1.0, np.nan]), np.array([3.0, 1.0]), 0.25), [1.5, np.nan])


@pytest.fixture(scope="module")
def tem1_family(families_dir, variants_dir):
    """The TEM-1 family; the tests that use it also read the scan."""
    return read_family(TEM1_A3M)


def test_the_profile_scores_tem1_variants_far_above_blosum62(tem1_family):
    from protein_performer.variants import blosum62_scores, read_variants, spearman
    from protein_performer.variants import read_measurements, read_wild_type
    from protein_performer.variants.profile import profile_log_probs, profile_scores, wild_type_columns

    wt = read_wild_type(TEM1_FASTA)
    table = read_variants(TEM1_CSV, wt, offset=24)
    columns = wild_type_columns(tem1_family, wt)
    assert columns.tolist() == list(range(23, 23 + len(wt)))  # residue 24 onward of the query
    measured = read_measurements(table, "2500")
    prof = spearman(profile_scores(profile_log_probs(tem1_family), columns, table.mutants), measured, bootstrap=0)
    blosum = spearman(blosum62_scores(table.mutants), measured, bootstrap=0)
    assert prof.n == 4996 and prof.spearman > blosum.spearman + 0.2


def test_a_wild_type_that_differs_from_the_query_is_aligned_to_it(tem1_family):
    from protein_performer.variants.profile import wild_type_columns

    q = tem1_family.query_sequence
    wt = q[30:120] + "GGG" + q[120:200]  # an insertion the query lacks
    cols = wild_type_columns(tem1_family, wt)
    assert cols[:90].tolist() == list(range(30, 120))
    assert (cols[90:93] == -1).sum() >= 2 and cols[-1] == 199


def test_score_variants_with_homologs_adds_profile_context_and_mix_columns(tmp_path, tem1_family):
    from test_generate import save_checkpoint

    lines = TEM1_CSV.read_text(encoding="utf-8-sig").splitlines()
    rows = [lines[0], *lines[1:3000:150]]
    variants = _write(tmp_path, "slice.csv", "\n".join(rows) + "\n")
    cfg = PerformerConfig(dim=16, depth=1, heads=2, nb_features=8, restart_positions=True, local_heads=1)
    torch.manual_seed(0)
    ckpt = save_checkpoint(PerformerLM(cfg), tmp_path / "m.ckpt", "mlm")
    out = tmp_path / "scored.csv"
    argv = ["score-variants", "--checkpoint", str(ckpt), "--fasta", str(TEM1_FASTA), "--variants", str(variants),
            "--offset-idx", "24", "--score-col", "2500", "--bootstrap", "100", "--homologs", str(TEM1_A3M),
            "--contexts", "1", "--context-tokens", "1200", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    header = next(csv.reader(open(out)))
    assert header[-4:] == ["profile", "m", "m+homologs", "m+homologs+profile"]
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["profile"]["spearman"] > 0.3 and summary["profile"]["members"] == 4501
    mix = summary["models"][-1]
    assert 0 <= mix["profile_weight"] <= 1 and mix["profile_weight_choice"]["members"] > 0
    # outputs are never replaced silently
    assert main(argv) == 1
    assert main([*argv, "--overwrite", "--profile-weight", "0.3", "--context-tokens", "0"]) == 0
    header = next(csv.reader(open(out)))
    assert header[-3:] == ["profile", "m", "m+profile"]


def test_the_workflow_summary_is_a_function_of_saved_results(tmp_path):
    from protein_performer.experiments.families import reference_correlations, summary_markdown

    variants = _write(tmp_path, "v.csv", "mutant,fit,mutation_effect_prediction_pairwise\nA1C,1,3\nA1D,2,2\n"
                                         "A1E,3,1\nA1F,4,\n")
    refs = reference_correlations(variants, "fit", bootstrap=0)
    assert refs == {"EVmutation, pairwise (CSV column)": {"spearman": pytest.approx(-1.0), "ci95": None, "n": 3}}
    corr = {"spearman": 0.5, "ci95": [0.4, 0.6], "n": 4}
    summary = {"command": "python scripts/variants.py", "date": "2026-12-03", "minutes": 12.0, "cpus": 2,
               "variants": "v.csv", "homologs": "f.a3m", "checkpoint": "best.ckpt", "steps": 1500,
               "stage_minutes": {"prepare": 0.1, "fit": 10.0, "score-variants": 2.0}, "references": refs,
               "scored": {"rows": 4, "score_col": "fit", "baselines": {"blosum62": corr},
                          "profile": {**corr, "pseudocount": 0.5},
                          "models": [{"column": "m", **corr}, {"column": "m+homologs+profile", "profile_weight": 0.3,
                                                               **corr}]}}
    text = summary_markdown(summary)
    assert "| m+homologs+profile (profile weight 0.30) | 0.500 [0.400, 0.600] | 4 |" in text
    assert "| EVmutation, pairwise (CSV column) | -1.000 | 3 |" in text
    assert "fit 10.0" in text and "step 1,500" in text


def test_aligned_family_windows_carry_each_residues_column_to_the_model(tmp_path):
    from protein_performer.corpus.prepare import FamilyOptions, prepare
    from protein_performer.corpus.shards import open_split
    from protein_performer.datasets import CLMCollator, FamilyWindowDataset, MLMCollator, framed_positions

    fam = read_family(_write(tmp_path, "f.a3m", A3M))
    # h1's insertion KK takes the column before it (4); h2 starts at column 1
    assert fam.residue_positions(1).tolist() == [0, 1, 2, 3, 4, 4, 4, 5, 6, 7, 8, 9]
    assert framed_positions(fam.residue_positions(2)).tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
    prepare([tmp_path / "f.a3m"], tmp_path / "p", family=FamilyOptions(), valid_fraction=0.0, test_fraction=0.0)
    shard = open_split(tmp_path / "p", "train")
    by_id = {name: i for i, name in enumerate(shard.ids)}
    assert shard.member_positions(by_id["h1"]).tolist() == fam.residue_positions(1).tolist()
    sample = FamilyWindowDataset(shard, 30, seed=1)[0]
    assert len(sample.positions) == len(sample.tokens) == 30
    cls = np.flatnonzero(sample.tokens == ALPHABET.cls_idx)
    for a in cls:  # every member restarts in the query's frame: <cls> at its first column - 1
        assert sample.positions[a] <= 1
    batch = MLMCollator(0.15, seed=0)([sample, sample])
    assert torch.equal(batch["position_ids"][0], torch.as_tensor(sample.positions))
    assert "position_ids" in CLMCollator()([sample])
    # a model given the positions that restart_positions would count computes the same thing
    cfg = PerformerConfig(dim=16, depth=1, heads=2, nb_features=8, restart_positions=True, dropout=0.0)
    model = PerformerLM(cfg).double().eval()
    from protein_performer.model import protein_positions

    ids = batch["input_ids"][:1]
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, model(ids, position_ids=protein_positions(ids, 3)).logits,
                                   rtol=0, atol=0)
        assert not torch.equal(model(ids).logits, model(ids, position_ids=batch["position_ids"][:1]).logits)


def test_an_aligned_positions_model_scores_the_wild_type_in_its_familys_frame(tmp_path, tem1_family):
    """A model trained with aligned positions reads absolute positions (FAVOR+'s fixed random features
    are not rotation invariant): score-variants must place the wild type at its columns, and refuses
    without the family. Per-protein attention: no homolog column, the profile mixes with the model alone."""
    from test_generate import save_checkpoint

    from protein_performer.variants.context import wild_type_positions
    from protein_performer.variants.scoring import score_mutants

    lines = TEM1_CSV.read_text(encoding="utf-8-sig").splitlines()
    variants = _write(tmp_path, "slice.csv", "\n".join([lines[0], *lines[1:3000:300]]) + "\n")
    cfg = PerformerConfig(dim=16, depth=1, heads=2, nb_features=8, restart_positions=True, local_heads=1,
                          aligned_positions=True, segment_attention=True)
    torch.manual_seed(0)
    model = PerformerLM(cfg).eval()
    ckpt = save_checkpoint(model, tmp_path / "m.ckpt", "mlm")
    wt = TEM1_FASTA.read_text().split("\n", 1)[1].replace("\n", "")
    positions = wild_type_positions(tem1_family, wt, model)
    assert positions[1:4].tolist() == [23, 24, 25]  # the FASTA starts at the query's residue 24
    from protein_performer.variants.mutants import read_variants

    table = read_variants(variants, wt, offset=24)
    got = score_mutants(model, wt, table.mutants, causal=False, positions=positions)
    # by hand: mask each mutated site, forward with the aligned positions
    tokens = ALPHABET.frame(wt)
    want, counted = [], []
    for m in table.mutants:
        (s,) = m
        x = tokens.copy()
        x[s.index + 1] = ALPHABET.mask_idx
        with torch.no_grad():
            for pos, out in ((positions, want), (None, counted)):
                pid = None if pos is None else torch.as_tensor(pos[None])
                lp = model(torch.as_tensor(x[None].astype(np.int64)), position_ids=pid).logits[0, s.index + 1]
                lp = lp.double().log_softmax(-1)
                out.append(float(lp[ALPHABET.index(s.mt)] - lp[ALPHABET.index(s.wt)]))
    # float32 forwards: a batch of masked copies and one copy at a time may round differently (2.8e-9
    # seen on an AMD EPYC), far below the 1e-4 by which the frame changes the scores
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert not np.allclose(want, counted, atol=1e-4)  # the frame matters: counting from 0 scores otherwise

    out = tmp_path / "scored.csv"
    argv = ["score-variants", "--checkpoint", str(ckpt), "--fasta", str(TEM1_FASTA), "--variants", str(variants),
            "--offset-idx", "24", "--score-col", "2500", "--bootstrap", "0", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 1 and not out.exists()  # no family: refused, nothing written
    assert main([*argv, "--homologs", str(TEM1_A3M), "--context-tokens", "1200", "--profile-weight", "0.5"]) == 0
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0])[-3:] == ["profile", "m", "m+profile"]  # no m+homologs: attention stays in each member
    np.testing.assert_allclose([float(r["m"]) for r in rows], got, rtol=1e-5)
