"""Does a model read a family from its window? Leave-one-out log-likelihood with and without homologs.

For each member ``k`` of an aligned family (one the model never trained on, for the question to
mean anything), 15% of its residues in the query's columns are hidden and predicted twice by the
same model: from ``k`` alone, and with the family's other members in the window around ``k``
(drawn by sequence weight up to ``context_length`` tokens, half before and half after, as
``score-variants --homologs`` places them). Members within ``exclude_identity`` of ``k`` (either
way) are left out of its context, so a near copy cannot be read off. Both predictions hide the same
residues; the gain is the mean log-likelihood with homologs minus alone, in nats per residue.
Causal models predict each hidden residue from the tokens before it (nothing is masked).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from protein_performer.alphabet import ALPHABET
from protein_performer.corpus.families import Family, near_members
from protein_performer.datasets import SCORE_MASK_PROB, framed_positions
from protein_performer.model import PerformerLM
from protein_performer.variants.context import draw_context

_STANDARD = list(ALPHABET.standard_indices)


@dataclass(frozen=True)
class ContextGain:
    """Leave-one-out log-likelihoods of one family's hidden residues (nats per residue)."""

    family: str
    members: int
    """Members scored (those with at least one other member far enough to be context)."""
    residues: int
    alone: float
    with_homologs: float

    @property
    def gain(self) -> float:
        return self.with_homologs - self.alone


@torch.no_grad()
def _hidden_log_likelihood(model: PerformerLM, window: np.ndarray, where: np.ndarray, rows: np.ndarray,
                           truth: np.ndarray) -> np.ndarray:
    """(h,) log p(truth) at token rows ``rows`` of ``window`` (masked there unless causal)."""
    device = next(model.parameters()).device
    window = window.astype(np.int64).copy()
    position_ids = torch.as_tensor(where[None], device=device) if model.config.aligned_positions else None
    if model.config.causal:
        logits = model(torch.as_tensor(window[None], device=device), position_ids=position_ids).logits[0]
        picked = logits[torch.as_tensor(rows - 1, device=device)]
    else:
        window[rows] = ALPHABET.mask_idx
        logits = model(torch.as_tensor(window[None], device=device), position_ids=position_ids).logits[0]
        picked = logits[torch.as_tensor(rows, device=device)]
    lp = picked.double().log_softmax(-1).cpu().numpy()  # (h, V)
    return lp[np.arange(len(rows)), np.asarray(_STANDARD)[truth]]


def context_gain(model: PerformerLM, family: Family, *, context_length: int = 8192, exclude_identity: float = 0.8,
                 seed: int = 0, max_members: int | None = None) -> ContextGain:
    """Leave-one-out log-likelihood of ``family``'s members alone and with homologs (module docstring)."""
    if family.columns is None:
        raise ValueError(f"{family.path}: context gain needs aligned homologs (their columns pick the residues)")
    model.eval()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
    near = near_members(family, exclude_identity)  # (N, N)
    framed = [ALPHABET.frame(s) for s in family.sequences]
    positions = [framed_positions(family.residue_positions(k)) for k in range(len(family))]
    alone, with_homologs, scored = [], [], 0
    order = rng.permutation(len(family))
    for k in order[: max_members or len(order)]:
        pool = [j for j in range(len(family)) if not near[k, j]]
        if not pool:
            continue
        tokens = framed[k]
        cols = family.residue_columns(int(k))
        aa = tokens[1:-1].astype(np.int64) - _STANDARD[0]
        candidates = np.flatnonzero((cols >= 0) & (aa >= 0) & (aa < 20))
        if len(candidates) == 0:
            continue
        hide = rng.choice(candidates, size=max(1, int(round(SCORE_MASK_PROB * len(candidates)))), replace=False)
        truth = aa[hide]
        alone.append(_hidden_log_likelihood(model, tokens, positions[k], 1 + hide, truth))
        chosen = draw_context([framed[j] for j in pool], family.weights[pool], max(context_length - len(tokens), 3), rng)
        chosen = [pool[c] for c in chosen]
        half = len(chosen) // 2
        start = sum(len(framed[j]) for j in chosen[:half])
        window = np.concatenate([*(framed[j] for j in chosen[:half]), tokens, *(framed[j] for j in chosen[half:])])
        where = np.concatenate([*(positions[j] for j in chosen[:half]), positions[k],
                                *(positions[j] for j in chosen[half:])])
        with_homologs.append(_hidden_log_likelihood(model, window, where, start + 1 + hide, truth))
        scored += 1
    if not scored:
        raise ValueError(f"{family.path}: no member has another below {exclude_identity:.0%} identity to read")
    a, w = np.concatenate(alone), np.concatenate(with_homologs)
    return ContextGain(str(family.path), scored, int(len(a)), float(a.mean()), float(w.mean()))
