"""Baselines a protein language model has to beat, scored under the same definitions as the model.

* unigram: the residue frequencies of the training split (what a model learns first);
* context: a smoothed n-gram over the two tokens around the target *as the model sees them*
  (masked: the token before and after the hidden residue, either of which may itself be
  ``<mask>``, ``<eos>`` or padding; causal: the two tokens before the target, a trigram model).

The context baseline is the strongest "shallow" statistic that needs no attention beyond the
immediate neighbours; a model that beats it has learned more than local amino-acid pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from protein_performer.alphabet import ALPHABET
from protein_performer.corpus.shards import open_split
from protein_performer.datasets import (
    IGNORE_INDEX,
    Sample,
    check_objective,
    residue_targets_only,
    scoring_collator,
    windows_from_sequences,
)


def unigram_probabilities(train_token_counts: Sequence[int] | torch.Tensor) -> np.ndarray | None:
    """Residue frequencies of the training split (add-one smoothed over the 25 codes), by token id."""
    counts = np.asarray(train_token_counts, dtype=np.float64)
    if counts.sum() == 0:
        return None
    probs = np.zeros(len(ALPHABET))
    aa = list(ALPHABET.amino_acid_indices)
    probs[aa] = counts[aa] + 1.0
    return probs / probs.sum()


def _contexts(objective: str, input_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two context tokens of every position of (B, L) ids, as two (B, L) arrays.

    Masked: (ids[t-1], ids[t+1]); causal, where position t predicts ids[t+1]: (ids[t-1], ids[t]).
    Outside the window counts as padding.
    """
    pad = np.full((input_ids.shape[0], 1), ALPHABET.pad_idx, dtype=input_ids.dtype)
    padded = np.concatenate([pad, input_ids, pad], axis=1)  # (B, L + 2)
    before = padded[:, :-2]
    after = padded[:, 2:] if objective == "mlm" else input_ids
    return before, after


class ContextBaseline:
    """A smoothed n-gram model over the two tokens around each target (see the module docstring).

    ``p(x | a, b) = (count(a, b, x) + alpha * unigram(x)) / (count(a, b) + alpha)``.
    """

    def __init__(self, objective: str, counts: np.ndarray, unigram: np.ndarray, alpha: float = 5.0) -> None:
        check_objective(objective)
        V = len(ALPHABET)
        if counts.shape != (V, V, V):
            raise ValueError(f"counts must have shape {(V, V, V)}, got {counts.shape}")
        self.objective, self.counts, self.alpha = objective, counts, alpha
        probs = (counts + alpha * unigram) / (counts.sum(-1, keepdims=True) + alpha)  # (V, V, V)
        self.log_probs_table = np.log(np.maximum(probs, 1e-300))

    @classmethod
    def fit(cls, objective: str, token_arrays: Sequence[np.ndarray], unigram: np.ndarray, *,
            window_tokens: int = 512, passes: int = 3, seed: int = 1_000_003, alpha: float = 5.0,
            batch_size: int = 64) -> "ContextBaseline":
        """Count (context, target) triples over training proteins under the scoring definition.

        Masked counts come from ``passes`` independent masks of every window (seeds ``seed ...``),
        so the contexts include hidden neighbours as often as scoring shows them.
        """
        V = len(ALPHABET)
        counts = np.zeros((V, V, V))
        windows = windows_from_sequences(list(token_arrays), window_tokens)
        for k in range(passes if objective == "mlm" else 1):
            collate = scoring_collator(objective, seed + k)
            for start in range(0, len(windows), batch_size):
                batch = collate([Sample(w, start + i) for i, w in enumerate(windows[start : start + batch_size])])
                ids = batch["input_ids"].numpy()
                labels = residue_targets_only(batch["labels"]).numpy()
                keep = labels != IGNORE_INDEX  # (B, L)
                before, after = _contexts(objective, ids)
                np.add.at(counts, (before[keep], after[keep], labels[keep]), 1.0)
        return cls(objective, counts, unigram, alpha)

    @classmethod
    def from_split(cls, objective: str, data_dir: str | Path, unigram: np.ndarray | None = None, *,
                   window_tokens: int = 512) -> "ContextBaseline":
        """Fit on the train split of a prepared dataset; ``unigram`` defaults to that split's counts."""
        train = open_split(data_dir, "train")
        if unigram is None:
            unigram = unigram_probabilities(np.bincount(np.asarray(train.tokens), minlength=len(ALPHABET)))
        proteins = [np.asarray(train.protein(i)) for i in range(len(train))]
        return cls.fit(objective, proteins, unigram, window_tokens=window_tokens)

    def log_probs(self, input_ids: np.ndarray) -> np.ndarray:
        """(B, L) input ids as the model sees them -> (B, L, V) log-probabilities of the target."""
        before, after = _contexts(self.objective, input_ids)
        return self.log_probs_table[before, after]
