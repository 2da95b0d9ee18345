"""Mixing a model with the family profile (Tranception-style), the weight chosen on held-out homologs.

At one position the mixture is ``log p_mix(a) = (1 - w) log p_model(a) + w log P_profile(c, a) - Z``;
Z is the same for every letter a, so a substitution's mixed score is exactly
``(1 - w) * model score + w * profile score``.

The weight is chosen by a rule fixed in advance, never on the assay: the family is split by
similarity (:func:`~protein_performer.corpus.families.similarity_splits`, as ``prepare --family``
does with its defaults, so a model trained on that dataset never saw these members); for up to
``members`` held-out (``valid``) members, 15% of the residues in the query's columns are hidden
and predicted by the model (with homologs from the training members around them when
``context_length`` is given, as the scorer it is mixed with does) and by the profile of the
training members only. ``w`` is the grid point (0, 0.05, ..., 1) that maximises the mixture's
mean log-likelihood of the hidden residues.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from protein_performer.alphabet import ALPHABET
from protein_performer.corpus.families import Family, column_profile, similarity_splits
from protein_performer.datasets import SCORE_MASK_PROB, weighted_order
from protein_performer.model import PerformerLM
from protein_performer.datasets import framed_positions
from protein_performer.progress import progress_bar
from protein_performer.variants.context import draw_context

log = logging.getLogger(__name__)

GRID = tuple(round(0.05 * i, 2) for i in range(21))
_STANDARD = list(ALPHABET.standard_indices)


@dataclass
class MixChoice:
    """The chosen profile weight and the evidence for it."""

    weight: float
    residues: int
    """Hidden residues of held-out members it was chosen on."""
    members: int
    log_likelihood: dict[float, float] = field(default_factory=dict)
    """Mean log-likelihood of the hidden residues at each grid weight."""


@torch.no_grad()
def choose_profile_weight(model: PerformerLM, family: Family, *, context_length: int | None = None,
                          members: int = 48, seed: int = 0, pseudocount: float = 0.5,
                          progress: bool | None = False, split: dict | None = None) -> MixChoice:
    """The profile weight by the rule of the module docstring. ``progress``: a bar over the held-out
    members on stderr (None: only on a terminal; :mod:`protein_performer.progress`). ``split``:
    :func:`similarity_splits`' keywords as ``prepare --family`` was given them (default: its defaults)."""
    if family.columns is None:
        raise ValueError(f"{family.path}: choosing a profile weight needs aligned homologs")
    model.eval()
    device = next(model.parameters()).device
    splits = np.asarray(similarity_splits(family, **(split or {})))
    train, held = splits == "train", np.flatnonzero(splits == "valid")
    if len(held) == 0:
        raise ValueError(f"{family.path}: no held-out members to choose the profile weight on (every member is "
                         "within the split identity of the query's group); give --profile-weight")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    held = held[weighted_order(family.weights[held], rng)][:members]
    log_profile = np.log(column_profile(family, pseudocount=pseudocount, members=train))  # (C, 20)
    pool_index = [k for k in np.flatnonzero(train) if k != family.query]
    pool = [ALPHABET.frame(family.sequences[k]) for k in pool_index]
    pool_positions = [framed_positions(family.residue_positions(k)) for k in pool_index]
    pool_weights = family.weights[pool_index]
    model_lp, profile_lp, truth = [], [], []
    for k in progress_bar(held, desc="profile weight", unit="members", enabled=progress):
        tokens = ALPHABET.frame(family.sequences[k])  # (n + 2,)
        cols = family.residue_columns(int(k))  # (n,)
        aa = tokens[1:-1].astype(np.int64) - _STANDARD[0]
        candidates = np.flatnonzero((cols >= 0) & (aa >= 0) & (aa < 20))
        if len(candidates) == 0:
            continue
        hide = rng.choice(candidates, size=max(1, int(round(SCORE_MASK_PROB * len(candidates)))), replace=False)
        chosen: list[int] = []
        if context_length is not None:
            chosen = draw_context(pool, pool_weights, max(context_length - len(tokens), 3), rng)
        half = len(chosen) // 2
        before, after = [pool[j] for j in chosen[:half]], [pool[j] for j in chosen[half:]]
        start = sum(len(p) for p in before)
        window = np.concatenate([*before, tokens, *after]).astype(np.int64)
        where = np.concatenate([*(pool_positions[j] for j in chosen[:half]),
                                framed_positions(family.residue_positions(int(k))),
                                *(pool_positions[j] for j in chosen[half:])])
        position_ids = torch.as_tensor(where[None], device=device) if model.config.aligned_positions else None
        rows = start + 1 + hide  # token positions of the hidden residues
        if model.config.causal:
            logits = model(torch.as_tensor(window[None], device=device), position_ids=position_ids).logits[0]
            picked = logits[torch.as_tensor(rows - 1, device=device)]  # next-token predictions
        else:
            window[rows] = ALPHABET.mask_idx
            logits = model(torch.as_tensor(window[None], device=device), position_ids=position_ids).logits[0]
            picked = logits[torch.as_tensor(rows, device=device)]
        lp = picked.double().log_softmax(-1)[:, _STANDARD].cpu().numpy()  # (h, 20) (not renormalised)
        model_lp.append(lp)
        profile_lp.append(log_profile[cols[hide]])
        truth.append(aa[hide])
    if not truth:
        raise ValueError(f"{family.path}: held-out members have no residues in the query's columns")
    m, p, t = np.concatenate(model_lp), np.concatenate(profile_lp), np.concatenate(truth)
    curve = {}
    for w in GRID:
        mix = (1 - w) * m + w * p  # (R, 20)
        mix = mix - np.logaddexp.reduce(mix, axis=1, keepdims=True)
        curve[w] = float(mix[np.arange(len(t)), t].mean())
    best = max(curve, key=curve.get)
    log.info("profile weight %.2f: mean log-likelihood %.4f of %d hidden residues of %d held-out members "
             "(model alone %.4f, profile alone %.4f)", best, curve[best], len(t), len(model_lp), curve[0.0],
             curve[1.0])
    return MixChoice(weight=best, residues=int(len(t)), members=len(model_lp), log_likelihood=curve)


def mix_scores(model_scores: np.ndarray, profile_scores: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) * model + weight * profile``; where the profile has no score (a mutant outside
    the alignment's columns) the model's alone, as the mixture with no profile term is the model;
    NaN where the model has none."""
    if not 0 <= weight <= 1:
        raise ValueError(f"--profile-weight must be in [0, 1], got {weight}")
    mixed = (1 - weight) * model_scores + weight * profile_scores
    return np.where(np.isfinite(profile_scores), mixed, model_scores)


__all__ = ["GRID", "MixChoice", "choose_profile_weight", "mix_scores"]
