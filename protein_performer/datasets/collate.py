"""Collators: pad samples into the batch contract (see :mod:`protein_performer.datasets`), with masked
(:class:`MLMCollator`) or causal (:class:`CLMCollator`) labels, or without labels (:func:`collate_proteins`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from protein_performer.alphabet import ALPHABET
from protein_performer.datasets.samples import (
    EVAL_MASK_STREAM,
    FIRST_RESIDUE,
    IGNORE_INDEX,
    MASK_STREAM,
    SCORE_MASK_PROB,
    STANDARD_HIGH,
    STANDARD_LOW,
    Sample,
    check_objective,
    seeded_rng,
)


def _unpack(samples: Sequence[Sample | np.ndarray]) -> list[Sample]:
    """Plain arrays become samples indexed by their position in ``samples``."""
    return [s if isinstance(s, Sample) else Sample(np.asarray(s), i, 0) for i, s in enumerate(samples)]


def _pad(samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token arrays with ``<pad>`` to the longest: ``input_ids`` (B, L) int64 and
    ``attention_mask`` (B, L) bool, True at real (non-pad) tokens."""
    width = max(len(s.tokens) for s in samples)
    out = np.full((len(samples), width), ALPHABET.pad_idx, dtype=np.int64)  # (B, L)
    for row, s in zip(out, samples):
        row[: len(s.tokens)] = s.tokens
    return out, out != ALPHABET.pad_idx


def _positions(samples: Sequence[Sample], width: int) -> dict[str, torch.Tensor]:
    """``{"position_ids": (B, L) long}`` when every sample carries positions (padding at 0), else {}."""
    if not samples or any(s.positions is None for s in samples):
        if any(s.positions is not None for s in samples):
            raise ValueError("a batch mixes samples with and without positions")
        return {}
    out = np.zeros((len(samples), width), dtype=np.int64)  # (B, L)
    for row, s in zip(out, samples):
        row[: len(s.positions)] = s.positions
    return {"position_ids": torch.from_numpy(out)}


def collate_proteins(proteins: Sequence[Sample | np.ndarray]) -> dict[str, torch.Tensor]:
    """Framed proteins (:meth:`~protein_performer.alphabet.Alphabet.frame`) as one model input.

    Returns ``input_ids`` (B, L) long, right-padded with ``<pad>``, and ``attention_mask`` (B, L)
    bool, True at real tokens: the batch contract without ``labels``, which :class:`MLMCollator`
    and :class:`CLMCollator` add to the same padding. ``embed``, ``similarity`` and ``attention``
    feed the model through it.
    """
    input_ids, attention_mask = _pad(_unpack(proteins))  # (B, L) x 2
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}


class MLMCollator:
    """Masked-language-model batches (BERT/ESM recipe).

    Selects each residue (never ``<pad> <mask> <cls> <eos> <unk>``) with probability
    ``mask_prob`` (at least one per sample that has residues); of those, ``mask_token_prob`` become
    ``<mask>``, ``random_token_prob`` a uniformly random standard amino acid, the rest stay.
    ``labels`` hold the original token at selected positions, -100 elsewhere.

    Randomness per sample: ``deterministic=True`` (validation, test, scoring) draws from
    ``(seed, index)`` only, so a sample gets the same mask in every run and epoch; otherwise from
    ``(seed, epoch, index)``, or fresh entropy when ``seed`` is None. The scoring setting is
    ``mask_token_prob=1.0, random_token_prob=0.0, deterministic=True``.
    """

    def __init__(
        self,
        mask_prob: float = 0.15,
        mask_token_prob: float = 0.8,
        random_token_prob: float = 0.1,
        seed: int | None = None,
        deterministic: bool = False,
    ) -> None:
        for name, p in (("mask_prob", mask_prob), ("mask_token_prob", mask_token_prob),
                        ("random_token_prob", random_token_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if mask_token_prob + random_token_prob > 1.0 + 1e-9:
            raise ValueError(
                f"mask_token_prob + random_token_prob = {mask_token_prob + random_token_prob} > 1; "
                "they are shares of the selected positions"
            )
        if deterministic and seed is None:
            raise ValueError("deterministic masking needs a seed (MLMCollator(seed=..., deterministic=True))")
        self.mask_prob, self.mask_token_prob, self.random_token_prob = mask_prob, mask_token_prob, random_token_prob
        self.seed, self.deterministic = seed, deterministic

    def _generator(self, sample: Sample) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        if self.deterministic:
            return seeded_rng(self.seed, EVAL_MASK_STREAM, sample.index)
        return seeded_rng(self.seed, MASK_STREAM, sample.epoch, sample.index)

    def __call__(self, samples: Sequence[Sample | np.ndarray]) -> dict[str, torch.Tensor]:
        samples = _unpack(samples)
        input_ids, attention_mask = _pad(samples)  # (B, L) x 2; masking never touches padding
        labels = np.full_like(input_ids, IGNORE_INDEX)  # (B, L)
        for b, sample in enumerate(samples):
            n = len(sample.tokens)
            row = input_ids[b, :n]  # a view: edits land in input_ids
            rng = self._generator(sample)
            eligible = row >= FIRST_RESIDUE  # (n,)
            selected = eligible & (rng.random(n) < self.mask_prob)
            if not selected.any() and eligible.any():
                selected[rng.choice(np.flatnonzero(eligible))] = True
            labels[b, :n][selected] = row[selected]
            action = rng.random(n)
            to_mask = selected & (action < self.mask_token_prob)
            to_random = selected & ~to_mask & (action < self.mask_token_prob + self.random_token_prob)
            row[to_mask] = ALPHABET.mask_idx
            row[to_random] = rng.integers(STANDARD_LOW, STANDARD_HIGH, size=int(to_random.sum()))
        return {
            "input_ids": torch.from_numpy(input_ids),
            "labels": torch.from_numpy(labels),
            "attention_mask": torch.from_numpy(attention_mask),
            **_positions(samples, input_ids.shape[1]),
        }


class CLMCollator:
    """Causal-language-model batches: ``labels[:, t] = input_ids[:, t + 1]``, already shifted.

    ``labels`` is -100 at the last position and wherever the target (or the input) is padding.
    """

    def __call__(self, samples: Sequence[Sample | np.ndarray]) -> dict[str, torch.Tensor]:
        samples = _unpack(samples)
        input_ids, attention_mask = _pad(samples)  # (B, L) x 2
        labels = np.full_like(input_ids, IGNORE_INDEX)  # (B, L)
        labels[:, :-1] = input_ids[:, 1:]
        labels[:, :-1][~attention_mask[:, 1:] | ~attention_mask[:, :-1]] = IGNORE_INDEX
        return {
            "input_ids": torch.from_numpy(input_ids),
            "labels": torch.from_numpy(labels),
            "attention_mask": torch.from_numpy(attention_mask),
            **_positions(samples, input_ids.shape[1]),
        }


def scoring_collator(objective: str, seed: int) -> MLMCollator | CLMCollator:
    """The collator of validation and ``score``: 15% hidden, every one by ``<mask>``, from a fixed
    seed per sample (masked); or causal batches."""
    check_objective(objective)
    if objective == "mlm":
        return MLMCollator(SCORE_MASK_PROB, 1.0, 0.0, seed=seed, deterministic=True)
    return CLMCollator()
