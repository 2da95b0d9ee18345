"""Datasets, samplers and collators: window algebra, masking statistics, batching by token budget."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from protein_performer.alphabet import ALPHABET
from protein_performer.corpus.shards import open_split
from protein_performer.datasets import (
    FIRST_RESIDUE,
    IGNORE_INDEX,
    CLMCollator,
    ConcatWindowDataset,
    EpochSampler,
    MLMCollator,
    ProteinDataset,
    Sample,
    TokenBudgetBatchSampler,
    collate_proteins,
    token_budget_batches,
    windows_from_sequences,
)
from shard_utils import random_proteins, write_prepared_dataset

EOS, PAD, MASK = ALPHABET.eos_idx, ALPHABET.pad_idx, ALPHABET.mask_idx


@pytest.fixture(scope="module")
def proteins() -> list[np.ndarray]:
    return random_proteins(np.random.default_rng(0), 300, min_len=1, max_len=500)


@pytest.fixture(scope="module")
def shard(proteins, tmp_path_factory):
    data_dir = write_prepared_dataset(tmp_path_factory.mktemp("prepared"), {"train": proteins})
    return open_split(data_dir, "train")


def eos_stream(proteins: list[np.ndarray]) -> np.ndarray:
    """The reference: every protein followed by <eos>, materialised."""
    return np.concatenate([np.append(p, EOS) for p in proteins]).astype(np.uint8)


def all_windows(ds: ConcatWindowDataset) -> np.ndarray:
    return np.stack([ds[i].tokens for i in range(len(ds))])  # (num_windows, window_tokens)


# --------------------------------------------------------------------------- concatenated windows


@pytest.mark.parametrize("window_tokens", [1, 37, 1000, 8192])
@pytest.mark.parametrize("epoch", [0, 1, 5])
def test_windows_equal_rotated_stream_slices(shard, proteins, window_tokens, epoch):
    stream = eos_stream(proteins)
    ds = ConcatWindowDataset(shard, window_tokens, seed=3, epoch=epoch)
    assert ds.stream_length == len(stream)
    rotated = np.roll(stream, -ds.offset)  # the epoch's stream, starting at its offset
    windows = all_windows(ds)
    padded = np.full(len(ds) * window_tokens, PAD, dtype=np.uint8)
    padded[: len(stream)] = rotated
    np.testing.assert_array_equal(windows.reshape(-1), padded)


def test_windows_cover_stream_once_without_overlap(shard, proteins):
    stream = eos_stream(proteins)
    ds = ConcatWindowDataset(shard, 512, seed=0, epoch=2)
    windows = all_windows(ds)
    assert (windows[:-1] != PAD).all(), "only the last window is padded"
    tokens = windows.reshape(-1)[: len(stream)]
    assert (windows.reshape(-1)[len(stream):] == PAD).all()
    # every stream position appears exactly once: the served tokens are a rotation of the stream
    assert np.bincount(tokens, minlength=32).tolist() == np.bincount(stream, minlength=32).tolist()
    np.testing.assert_array_equal(np.roll(tokens, ds.offset), stream)


def test_offsets_move_between_epochs_and_repeat_with_seed(shard):
    ds = ConcatWindowDataset(shard, 1024, seed=7)
    offsets = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        offsets.append(ds.offset)
    assert len(set(offsets)) == 6
    again = ConcatWindowDataset(shard, 1024, seed=7, epoch=4)
    assert again.offset == offsets[4]
    assert ConcatWindowDataset(shard, 1024, seed=8, epoch=4).offset != offsets[4]
    fixed = ConcatWindowDataset(shard, 1024, seed=7, random_offset=False, epoch=3)
    assert fixed.offset == 0


@pytest.mark.parametrize("window_tokens", [16384, 32768, 65536])
def test_long_windows(tmp_path, window_tokens):
    proteins = random_proteins(np.random.default_rng(1), 400, min_len=50, max_len=600)
    shard = open_split(write_prepared_dataset(tmp_path, {"train": proteins}), "train")
    stream = eos_stream(proteins)
    ds = ConcatWindowDataset(shard, window_tokens, seed=0, epoch=1)
    assert len(ds) == -(-len(stream) // window_tokens)
    rotated = np.roll(stream, -ds.offset)
    for i in range(len(ds)):
        window = ds[i].tokens
        assert window.shape == (window_tokens,) and window.dtype == np.uint8
        chunk = rotated[i * window_tokens : (i + 1) * window_tokens]
        np.testing.assert_array_equal(window[: len(chunk)], chunk)
        assert (window[len(chunk):] == PAD).all()


def test_stream_shorter_than_window(tmp_path):
    proteins = [np.array([5, 6, 7], dtype=np.uint8), np.array([8], dtype=np.uint8)]
    shard = open_split(write_prepared_dataset(tmp_path, {"train": proteins}), "train")
    ds = ConcatWindowDataset(shard, 10, seed=0, epoch=3)
    assert len(ds) == 1
    window = ds[0].tokens
    np.testing.assert_array_equal(window[:6], np.roll(eos_stream(proteins), -ds.offset))
    assert (window[6:] == PAD).all()


def test_limit_and_index_errors(shard):
    ds = ConcatWindowDataset(shard, 100, seed=0, limit=3)
    assert len(ds) == 3
    with pytest.raises(IndexError):
        ds[3]


def test_a_shard_opened_from_a_string_path_reads_the_same(shard):
    from protein_performer.corpus.shards import Shard

    again = Shard(str(shard.path))
    assert len(again) == len(shard) and np.array_equal(again.protein(5), shard.protein(5))


def test_windows_from_sequences_match_dataset_at_offset_zero(shard, proteins):
    ds = ConcatWindowDataset(shard, 777, seed=0, random_offset=False)
    windows = windows_from_sequences(proteins, 777)
    assert len(windows) == len(ds)
    for i, w in enumerate(windows):
        np.testing.assert_array_equal(ds[i].tokens[: len(w)], w)
    np.testing.assert_array_equal(np.concatenate(windows), eos_stream(proteins))
    assert windows_from_sequences([], 10) == []


def test_dataset_pickles_without_the_memory_map(shard):
    ds = ConcatWindowDataset(shard, 300, seed=1, epoch=2)
    _ = ds[0]  # opens the memory map
    clone = pickle.loads(pickle.dumps(ds))
    assert len(pickle.dumps(ds)) < shard.tokens.nbytes
    np.testing.assert_array_equal(clone[5].tokens, ds[5].tokens)


# --------------------------------------------------------------------------- ranks and epochs


@pytest.mark.parametrize("sampler_cls", [DistributedSampler, EpochSampler])
def test_two_ranks_see_disjoint_windows(shard, proteins, sampler_cls):
    ds = ConcatWindowDataset(shard, 256, seed=0, epoch=1)
    seen = []
    for rank in range(2):
        sampler = sampler_cls(ds, num_replicas=2, rank=rank, shuffle=True, seed=0, drop_last=True)
        seen.append(set(sampler))
    assert not seen[0] & seen[1]
    assert len(seen[0]) == len(seen[1]) == len(ds) // 2
    # disjoint window indices of the same epoch are disjoint stream ranges
    starts = {rank: {(ds.offset + i * 256) % ds.stream_length for i in s} for rank, s in enumerate(seen)}
    assert not starts[0] & starts[1]


def test_epoch_sampler_moves_the_dataset(shard):
    ds = ConcatWindowDataset(shard, 256, seed=0)
    sampler = EpochSampler(ds, num_replicas=2, rank=1, seed=0)
    before = (ds.offset, list(sampler))
    sampler.set_epoch(1)
    assert ds.epoch == 1 and ds.offset != before[0]
    assert list(sampler) != before[1]


# --------------------------------------------------------------------------- per-protein samples


def test_protein_dataset_adds_cls_eos_and_crops(shard, proteins):
    long_ones = [i for i, p in enumerate(proteins) if len(p) > 100]
    train = ProteinDataset(shard, 102, crop="random", seed=0)
    evaluate = ProteinDataset(shard, 102, crop="start", seed=0)
    short = next(i for i, p in enumerate(proteins) if len(p) < 100)
    np.testing.assert_array_equal(train[short].tokens, np.concatenate([[ALPHABET.cls_idx], proteins[short], [EOS]]))
    i = long_ones[0]
    crops = set()
    for epoch in range(5):
        train.set_epoch(epoch)
        tokens = train[i].tokens
        assert len(tokens) == 102 and tokens[0] == ALPHABET.cls_idx and tokens[-1] == EOS
        body = proteins[i]
        start = next(s for s in range(len(body) - 99) if np.array_equal(body[s : s + 100], tokens[1:-1]))
        crops.add(start)
    assert len(crops) > 1, "random crops move between epochs"
    np.testing.assert_array_equal(evaluate[i].tokens[1:-1], proteins[i][:100])
    assert (train.served_lengths == np.minimum(shard.lengths + 2, 102)).all()


def test_token_budget_batches_respect_budget_and_sort():
    lengths = np.random.default_rng(0).integers(3, 500, size=1000)
    batches = token_budget_batches(lengths, 2048)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))
    assert all(max(lengths[b]) * len(b) <= 2048 for b in batches)
    assert (np.diff(lengths[flat]) >= 0).all(), "sorted by length"
    # greedy: adding the next sample would have broken the budget
    for b, nxt in zip(batches, batches[1:]):
        assert lengths[nxt[0]] * (len(b) + 1) > 2048
    with pytest.raises(ValueError, match="token budget"):
        token_budget_batches(lengths, 100)


def test_token_budget_batches_longest_first_put_oversize_samples_alone():
    lengths = np.random.default_rng(1).integers(3, 500, size=300)
    lengths[[17, 5]] = 900  # over the budget
    batches = token_budget_batches(lengths, 600, order="longest_first", oversize="alone")
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(300))
    assert (np.diff(lengths[flat]) <= 0).all(), "sorted by length, longest first"
    assert batches[:2] == [[5], [17]], "over the budget: alone, ties in input order"
    assert all(max(lengths[b]) * len(b) <= 600 for b in batches[2:])
    for b, nxt in zip(batches, batches[1:]):  # greedy: the first of a batch is its longest
        assert lengths[b[0]] * (len(b) + 1) > 600
    with pytest.raises(ValueError, match="order"):
        token_budget_batches(lengths, 600, order="random")


def test_token_budget_sampler_splits_ranks_and_reshuffles(shard):
    ds = ProteinDataset(shard, 256, seed=0)
    lengths = ds.served_lengths
    per_rank = []
    for rank in range(2):
        base = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sampler = TokenBudgetBatchSampler(base, lengths, 1024, seed=0)
        assert isinstance(sampler.sampler, EpochSampler)  # Lightning's sampler, wrapped
        per_rank.append(list(sampler))
    assert len(per_rank[0]) == len(per_rank[1])
    all_batches = token_budget_batches(lengths, 1024)
    ids = lambda batches: {tuple(b) for b in batches}  # noqa: E731
    assert ids(per_rank[0]) | ids(per_rank[1]) == ids(all_batches)
    if len(all_batches) % 2 == 0:
        assert not ids(per_rank[0]) & ids(per_rank[1])
    sampler = TokenBudgetBatchSampler(EpochSampler(ds, 1, 0), lengths, 1024, seed=0)
    first = list(sampler)
    sampler.sampler.set_epoch(1)
    assert ds.epoch == 1
    assert list(sampler) != first and sorted(map(tuple, list(sampler))) == sorted(map(tuple, first))


# --------------------------------------------------------------------------- collators


def masked_batch(shard, collator, n=20, epoch=0):
    ds = ConcatWindowDataset(shard, 8192, seed=0, epoch=epoch)
    samples = [ds[i % len(ds)]._replace(index=i) for i in range(n)]
    originals = torch.from_numpy(np.stack([s.tokens for s in samples]).astype(np.int64))
    return originals, collator(samples)


def test_mlm_statistics(shard):
    originals, batch = masked_batch(shard, MLMCollator(seed=0))
    residues = originals >= FIRST_RESIDUE
    selected = batch["labels"] != IGNORE_INDEX
    n_sel = int(selected.sum())
    rate = n_sel / int(residues.sum())
    assert abs(rate - 0.15) < 0.005, rate
    assert torch.equal(batch["labels"][selected], originals[selected])
    inputs = batch["input_ids"][selected]
    masked = (inputs == MASK).float().sum() / n_sel
    changed = ((inputs != MASK) & (inputs != originals[selected])).float().sum() / n_sel
    assert abs(masked - 0.8) < 0.01, masked
    assert 0.085 < changed < 0.105, changed  # 10% random, of which ~1/20 draw the original
    replaced = inputs[(inputs != MASK) & (inputs != originals[selected])]
    assert ((replaced >= 5) & (replaced < 25)).all(), "random tokens are standard amino acids"
    assert torch.equal(batch["input_ids"][~selected], originals[~selected])


def test_specials_never_masked(shard):
    ds = ProteinDataset(shard, 64, seed=0)
    samples = [ds[i] for i in range(200)]
    batch = MLMCollator(mask_prob=0.9, seed=1)(samples)
    ids, labels, attn = batch["input_ids"], batch["labels"], batch["attention_mask"]
    original = torch.full_like(ids, PAD)
    for b, s in enumerate(samples):
        original[b, : len(s.tokens)] = torch.from_numpy(s.tokens.astype(np.int64))
    special = original < FIRST_RESIDUE
    assert (labels[special] == IGNORE_INDEX).all()
    assert torch.equal(ids[special], original[special])
    assert torch.equal(attn, original != PAD)
    assert (labels[~special] != IGNORE_INDEX).float().mean() > 0.8


def test_every_sample_gets_a_target():
    batch = MLMCollator(mask_prob=0.0, seed=0)([np.array([2, 7, 3], dtype=np.uint8), np.array([2, 3])])
    assert (batch["labels"][0] != IGNORE_INDEX).sum() == 1 and batch["labels"][0, 1] == 7
    assert (batch["labels"][1] == IGNORE_INDEX).all()  # nothing to mask


def test_deterministic_masks_depend_on_seed_and_index_only(shard):
    def make(seed: int) -> MLMCollator:
        return MLMCollator(mask_token_prob=1.0, random_token_prob=0.0, seed=seed, deterministic=True)

    _, a = masked_batch(shard, make(5), n=3, epoch=0)
    _, b = masked_batch(shard, make(5), n=3, epoch=0)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    window = np.full(8192, 10, dtype=np.uint8)
    one = make(5)([Sample(window, 1, epoch=0)])
    other_epoch = make(5)([Sample(window, 1, epoch=9)])
    other_index = make(5)([Sample(window, 2, epoch=0)])
    other_seed = make(6)([Sample(window, 1, epoch=0)])
    assert torch.equal(one["labels"], other_epoch["labels"])
    assert not torch.equal(one["labels"], other_index["labels"])
    assert not torch.equal(one["labels"], other_seed["labels"])
    selected = one["labels"] != IGNORE_INDEX
    assert (one["input_ids"][selected] == MASK).all(), "score setting: every hidden residue is <mask>"
    # training masks (not deterministic) change with the epoch
    train = MLMCollator(seed=5)
    assert not torch.equal(train([Sample(window, 1, 0)])["labels"], train([Sample(window, 1, 1)])["labels"])
    with pytest.raises(ValueError, match="seed"):
        MLMCollator(deterministic=True)
    with pytest.raises(ValueError, match="> 1"):
        MLMCollator(mask_token_prob=0.8, random_token_prob=0.3)


def test_clm_shift_and_padding():
    a = np.array([2, 5, 6, 7, 3], dtype=np.uint8)
    b = np.array([2, 8, 3], dtype=np.uint8)
    batch = CLMCollator()([a, b])
    ids, labels, attn = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.dtype == torch.long and labels.dtype == torch.long and attn.dtype == torch.bool
    assert ids.tolist() == [[2, 5, 6, 7, 3], [2, 8, 3, 0, 0]]
    assert labels.tolist() == [[5, 6, 7, 3, -100], [8, 3, -100, -100, -100]]
    assert attn.tolist() == [[True] * 5, [True] * 3 + [False] * 2]


def test_clm_on_windows_predicts_the_next_stream_token(shard, proteins):
    ds = ConcatWindowDataset(shard, 4096, seed=0, random_offset=False)
    batch = CLMCollator()([ds[len(ds) - 1], ds[0]])  # a padded last window and a full one
    ids, labels, attn = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert torch.equal(labels[1, :-1], ids[1, 1:]) and labels[1, -1] == IGNORE_INDEX
    n = int(attn[0].sum())
    assert n < 4096 and torch.equal(labels[0, : n - 1], ids[0, 1:n])
    assert (labels[0, n - 1 :] == IGNORE_INDEX).all()


def test_frame_is_cls_residues_eos_from_letters_or_ids():
    framed = ALPHABET.frame("mkV")
    assert framed.dtype == np.uint8 and framed.tolist() == [ALPHABET.cls_idx, *ALPHABET.encode("MKV"), EOS]
    np.testing.assert_array_equal(ALPHABET.frame(ALPHABET.encode("MKV")), framed)
    assert ALPHABET.frame("").tolist() == [ALPHABET.cls_idx, EOS]
    with pytest.raises(ValueError, match="'J' at position 2"):
        ALPHABET.frame("MJ")


def test_collate_proteins_pads_like_the_training_collators():
    framed = [ALPHABET.frame("MKV"), ALPHABET.frame("A"), ALPHABET.frame("WWWWW")]
    batch = collate_proteins(framed)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert set(batch) == {"input_ids", "attention_mask"}
    assert ids.dtype == torch.long and mask.dtype == torch.bool and ids.shape == mask.shape == (3, 7)
    for row, row_mask, tokens in zip(ids, mask, framed):
        assert row[: len(tokens)].tolist() == tokens.tolist() and (row[len(tokens) :] == PAD).all()
        assert row_mask.tolist() == [True] * len(tokens) + [False] * (7 - len(tokens))
    clm = CLMCollator()([Sample(t, i) for i, t in enumerate(framed)])
    assert torch.equal(clm["input_ids"], ids) and torch.equal(clm["attention_mask"], mask)
