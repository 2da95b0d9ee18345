"""What every dataset serves and every collator reads: :class:`Sample`, the loss conventions
(``IGNORE_INDEX``, objectives) and the seeded random streams of :mod:`protein_performer.datasets`."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from protein_performer.alphabet import ALPHABET, SPECIAL_TOKENS

IGNORE_INDEX = -100
SCORE_MASK_PROB = 0.15
"""Share of residues hidden when masked models are validated or scored (whatever the training share)."""
OBJECTIVES = ("mlm", "clm")

FIRST_RESIDUE = len(SPECIAL_TOKENS)  # ids below this are special tokens, never masked
STANDARD_LOW, STANDARD_HIGH = ALPHABET.standard_indices[0], ALPHABET.standard_indices[-1] + 1

# Stream tags keep the random streams of different uses apart for the same (seed, epoch, index).
OFFSET_STREAM, CROP_STREAM, MASK_STREAM, EVAL_MASK_STREAM = 1, 2, 3, 4
FAMILY_STREAM, FAMILY_EVAL_STREAM, FAMILY_ORDER_STREAM = 5, 6, 7


def check_objective(objective: str) -> str:
    """``objective`` if it is one of :data:`OBJECTIVES`; else the one error every caller raises."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    return objective


class Sample(NamedTuple):
    """One served sample: its tokens (1-D ``uint8``), its index in the dataset, the epoch, and
    optionally each token's position (aligned family windows; else the model counts them)."""

    tokens: np.ndarray
    index: int
    epoch: int = 0
    positions: np.ndarray | None = None


def residue_targets_only(labels: torch.Tensor) -> torch.Tensor:
    """Scoring targets: drop special-token targets (the ``<eos>`` after a protein), keep residues."""
    return labels.masked_fill((labels != IGNORE_INDEX) & (labels < FIRST_RESIDUE), IGNORE_INDEX)


def seeded_rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    """The generator of one use (``stream``, a tag above) for ``keys`` such as (epoch, index): the
    same numbers whatever the worker or rank that draws them."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream, *keys]))
