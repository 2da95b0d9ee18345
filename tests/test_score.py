"""Scoring maths: passes add up, the paired comparison with the unigram baseline is exact."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from protein_performer.baselines import unigram_probabilities
from protein_performer.corpus.shards import open_split
from protein_performer.datamodule import ProteinDataModule
from protein_performer.datasets import IGNORE_INDEX
from protein_performer.score import score_windows


class UnigramModel(nn.Module):
    """Predicts the training residue frequencies at every position, whatever the input."""

    def __init__(self, probs: np.ndarray) -> None:
        super().__init__()
        self.log_probs = nn.Parameter(torch.tensor(np.log(np.maximum(probs, 1e-300)), dtype=torch.float64))

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.log_probs.expand(*input_ids.shape, -1))


@pytest.fixture(scope="module")
def test_proteins(prepared_ecoli):
    shard = open_split(prepared_ecoli, "test")
    return [np.asarray(shard.protein(i)) for i in range(40)]


@pytest.fixture(scope="module")
def unigram(prepared_ecoli):
    train = open_split(prepared_ecoli, "train")
    return unigram_probabilities(np.bincount(np.asarray(train.tokens), minlength=30))


def test_the_unigram_model_ties_the_baseline_exactly(test_proteins, unigram):
    r = score_windows(UnigramModel(unigram), "mlm", test_proteins, window_tokens=256, batch_size=4,
                      unigram=unigram, passes=2, bootstrap=200)
    assert r.accuracy == pytest.approx(r.unigram_accuracy, abs=1e-12)
    assert r.perplexity == pytest.approx(r.unigram_perplexity, rel=1e-6)  # logits scored in fp32
    assert r.accuracy_gain == pytest.approx(0.0, abs=1e-9) and r.perplexity_ratio == pytest.approx(1.0, rel=1e-6)
    lo, hi = r.accuracy_gain_ci95
    assert lo == pytest.approx(0.0, abs=1e-9) and hi == pytest.approx(0.0, abs=1e-9)
    assert r.beats_unigram is False


def test_passes_are_independent_masks_that_add_up(test_proteins, unigram):
    torch.manual_seed(0)
    noisy = UnigramModel(unigram)
    with torch.no_grad():
        noisy.log_probs.add_(torch.randn_like(noisy.log_probs))
    kw = dict(window_tokens=256, batch_size=4, unigram=unigram, bootstrap=0)
    singles = [score_windows(noisy, "mlm", test_proteins, seed=s, **kw) for s in (5, 6, 7)]
    three = score_windows(noisy, "mlm", test_proteins, seed=5, passes=3, **kw)
    assert three.passes == 3 and three.tokens == sum(s.tokens for s in singles)
    assert three.accuracy == pytest.approx(sum(s.accuracy * s.tokens for s in singles) / three.tokens, abs=1e-12)
    assert three.loss == pytest.approx(sum(s.loss * s.tokens for s in singles) / three.tokens, rel=1e-9)
    assert singles[0].tokens != singles[1].tokens or singles[0].loss != singles[1].loss, "seeds differ"
    assert 0.13 < singles[0].tokens / sum(len(p) for p in test_proteins) < 0.17


def test_causal_scoring_ignores_passes(test_proteins, unigram):
    kw = dict(window_tokens=256, unigram=unigram, bootstrap=0)
    r = score_windows(UnigramModel(unigram), "clm", test_proteins, passes=4, **kw)
    once = score_windows(UnigramModel(unigram), "clm", test_proteins, passes=1, **kw)
    assert r.passes == 1
    # Every residue is a target exactly once, whatever --passes says: the same tokens, loss and accuracy.
    assert (r.tokens, r.loss, r.accuracy) == (once.tokens, once.loss, once.accuracy)
    assert r.tokens == sum(len(p) for p in test_proteins) - r.windows  # a window's first residue has no prefix


def test_validation_hides_15_percent_whatever_the_training_share(prepared_ecoli):
    dm = ProteinDataModule(str(prepared_ecoli), window_tokens=512, batch_size=8, mask_prob=0.4, seed=0)
    val = next(iter(dm.val_dataloader()))
    train = next(iter(dm.train_dataloader()))
    share = lambda b: float((b["labels"] != IGNORE_INDEX).float().mean())  # noqa: E731
    assert 0.13 < share(val) < 0.17
    assert 0.36 < share(train) < 0.44


def _periodic(n: int, length: int, seed: int) -> list[np.ndarray]:
    """Proteins that repeat ACDEFGHIKL from a random phase: each residue is fixed by its neighbours."""
    from protein_performer.alphabet import ALPHABET

    cycle = np.array([ALPHABET.index(c) for c in "ACDEFGHIKL"], dtype=np.uint8)
    rng = np.random.default_rng(seed)
    return [np.roll(np.resize(cycle, length), -int(rng.integers(10))) for _ in range(n)]


@pytest.mark.parametrize("objective", ["mlm", "clm"])
def test_context_baseline_learns_neighbour_rules_and_counts_every_target(objective):
    from protein_performer.baselines import ContextBaseline

    train, test = _periodic(30, 200, 0), _periodic(10, 200, 1)
    unigram = unigram_probabilities(np.bincount(np.concatenate(train), minlength=30))
    context = ContextBaseline.fit(objective, train, unigram, window_tokens=128, passes=2)
    targets = sum(len(p) for p in train)
    if objective == "clm":  # every residue but the first of each window is a target (no window starts at <eos> here)
        windows = -(-(sum(len(p) + 1 for p in train)) // 128)
        assert context.counts.sum() == targets - windows
    r = score_windows(UnigramModel(unigram), objective, test, window_tokens=128, unigram=unigram,
                      context=context, bootstrap=0)
    assert r.unigram_accuracy < 0.15
    # Masked: wrong only where both neighbours are hidden or outside the window.
    assert r.context_accuracy > (0.95 if objective == "clm" else 0.9)
    assert r.context_perplexity < 1.5 < r.unigram_perplexity
    # The paired comparison with the n-gram: the unigram model loses to it, by exactly the difference.
    r = score_windows(UnigramModel(unigram), objective, test, window_tokens=128, unigram=unigram,
                      context=context, bootstrap=300)
    assert r.context_accuracy_gain == pytest.approx(100 * (r.accuracy - r.context_accuracy), abs=1e-9)
    assert r.context_perplexity_ratio == pytest.approx(r.perplexity / r.context_perplexity, rel=1e-6)
    lo, hi = r.context_accuracy_gain_ci95
    assert lo <= r.context_accuracy_gain <= hi < 0
    assert r.context_perplexity_ratio_ci95[0] > 1 and r.beats_context is False


def test_context_baseline_must_match_the_objective(test_proteins, unigram):
    from protein_performer.baselines import ContextBaseline

    context = ContextBaseline.fit("clm", test_proteins[:5], unigram)
    with pytest.raises(ValueError, match="fitted for 'clm'"):
        score_windows(UnigramModel(unigram), "mlm", test_proteins[:5], unigram=unigram, context=context)
