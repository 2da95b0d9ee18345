"""A model conditioned on the protein's homologs: the family in the same long window (PoET-style).

Each *context draw* samples homologs by sequence weight (without replacement; the family's query
and exact copies of the wild type are left out, so the answer is never in the context), whole
members only, until they fill ``context_length`` tokens minus the wild type's. Each member is
framed ``<cls> ... <eos>``; positions restart at each member, as in training
(:class:`~protein_performer.datasets.FamilyWindowDataset`).

* Masked models: the wild type sits in the middle of the homologs (half before, half after); each
  mutated position is masked in the wild type in turn and read as masked marginals.
* Causal models: the homologs come first. Their recurrent state (:meth:`PerformerLM.step`) is
  computed once per draw and copied for every mutant (:meth:`DecodeState.repeat`): the
  homologs cost the same whatever the number of mutants, and memory stays constant in their
  length for FAVOR+. Each mutant scores ``log p(mutant | homologs) - log p(wild type | homologs)``.

Scores are averaged over ``contexts`` independent draws (an ensemble over contexts). ``progress``:
a bar on stderr (None: only on a terminal; :mod:`protein_performer.progress`), off by default.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from protein_performer.alphabet import ALPHABET
from protein_performer.corpus.families import Family, fill_insertions
from protein_performer.datasets import framed_positions, weighted_order
from protein_performer.model import PerformerLM
from protein_performer.progress import progress_bar
from protein_performer.variants.mutants import Substitution, apply_mutant
from protein_performer.variants.scoring import _id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContextOptions:
    """How homologs are put into the window."""

    context_length: int = 8192
    """Tokens in a window: homologs plus the wild type."""
    contexts: int = 4
    """Independent context draws; scores are averaged."""
    seed: int = 0
    """Seed of the draws."""
    batch_size: int = 8
    """Windows (masked) or mutants (causal) per forward."""


def context_pool(family: Family, sequence: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Members that may enter a context (framed token arrays) and their weights: all but the query
    and exact copies of ``sequence``."""
    pool, weights, _ = _pool(family, sequence)
    return pool, weights


def _pool(family: Family, sequence: str, model: PerformerLM | None = None
          ) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray] | None]:
    """:func:`context_pool` plus, for a model with ``aligned_positions`` and an aligned family,
    each member's framed positions in the query's frame (as its training windows had), else None."""
    keep = [k for k, s in enumerate(family.sequences) if k != family.query and s != sequence]
    if not keep:
        raise ValueError(f"{family.path}: no homologs besides the query and copies of the wild type; "
                         "a context needs other members")
    aligned = family.aligned and (model is None or model.config.aligned_positions)
    positions = [framed_positions(family.residue_positions(k)) for k in keep] if aligned else None
    return [ALPHABET.frame(family.sequences[k]) for k in keep], np.asarray(family.weights)[keep], positions


def wild_type_positions(family: Family, sequence: str, model: PerformerLM | None = None, *,
                        region_start: int | None = None) -> np.ndarray | None:
    """Framed positions of the wild type in the query's frame (aligned families, and a model with
    ``aligned_positions``), else None."""
    if not family.aligned or (model is not None and not model.config.aligned_positions):
        return None
    from protein_performer.variants.profile import wild_type_columns

    return framed_positions(fill_insertions(wild_type_columns(family, sequence, region_start=region_start)))


def draw_context(pool: Sequence[np.ndarray], weights: np.ndarray, budget: int,
                 rng: np.random.Generator) -> list[int]:
    """Indices of whole members drawn by weight until ``budget`` tokens are filled (members that no
    longer fit are passed over)."""
    chosen, used = [], 0
    for k in weighted_order(weights, rng):
        n = len(pool[int(k)])
        if used + n <= budget:
            chosen.append(int(k))
            used += n
        if budget - used < 3:
            break
    return chosen


def _budget(options: ContextOptions, wild_type: np.ndarray) -> int:
    budget = options.context_length - len(wild_type)
    if budget < 3:
        raise ValueError(f"--context-tokens {options.context_length} leaves no room for homologs beside the "
                         f"wild type ({len(wild_type)} tokens); give at least {len(wild_type) + 300}")
    return budget


@torch.no_grad()
def masked_context_scores(model: PerformerLM, family: Family, sequence: str,
                          mutants: Sequence[tuple[Substitution, ...] | None],
                          options: ContextOptions = ContextOptions(), progress: bool | None = False) -> np.ndarray:
    """Masked marginals of the wild type with homologs around it, averaged over context draws."""
    model.eval()
    device = next(model.parameters()).device
    wt = ALPHABET.frame(sequence)  # (n + 2,)
    pool, weights, pool_positions = _pool(family, sequence, model)
    wt_positions = wild_type_positions(family, sequence, model)
    budget = _budget(options, wt)
    valid = [k for k, m in enumerate(mutants) if m is not None]
    targets = sorted({s.index + 1 for k in valid for s in mutants[k]})  # token indices in wt
    total = np.zeros(len(mutants))
    with progress_bar(total=options.contexts * len(targets), desc="homolog contexts", unit="positions",
                      enabled=progress) as bar:
        for draw in range(options.contexts):
            rng = np.random.default_rng(np.random.SeedSequence([options.seed, draw]))
            members = draw_context(pool, weights, budget, rng)
            half = len(members) // 2
            before = [pool[k] for k in members[:half]]
            after = [pool[k] for k in members[half:]]
            window = np.concatenate([*before, wt, *after])  # (T,)
            position_ids = None
            if pool_positions is not None:
                where = np.concatenate([*(pool_positions[k] for k in members[:half]), wt_positions,
                                        *(pool_positions[k] for k in members[half:])])  # (T,)
                position_ids = torch.as_tensor(where, device=device)
            start = sum(len(p) for p in before)  # wt's first token in the window
            lp: dict[int, torch.Tensor] = {}
            for lo in range(0, len(targets), options.batch_size):
                chunk = targets[lo : lo + options.batch_size]
                batch = np.repeat(window[None], len(chunk), axis=0)  # (b, T)
                for j, i in enumerate(chunk):
                    batch[j, start + i] = ALPHABET.mask_idx
                ids = torch.as_tensor(batch.astype(np.int64), device=device)
                pos = None if position_ids is None else position_ids.expand(len(chunk), -1)
                logits = model(ids, position_ids=pos).logits  # (b, T, V)
                rows = torch.as_tensor([start + i for i in chunk], device=device)
                picked = logits[torch.arange(len(chunk), device=device), rows].double().log_softmax(-1).cpu()  # (b, V)
                for j, i in enumerate(chunk):
                    lp[i] = picked[j]
                bar.update(len(chunk))
            for k in valid:
                total[k] += sum(float(lp[s.index + 1][_id(s.mt)] - lp[s.index + 1][_id(s.wt)]) for s in mutants[k])
            log.info("context %d/%d: %d homologs around the wild type (%d tokens), %d positions scored", draw + 1,
                     options.contexts, len(members), len(window), len(targets))
    out = np.full(len(mutants), np.nan)
    out[valid] = total[valid] / options.contexts
    return out


@torch.no_grad()
def causal_context_scores(model: PerformerLM, family: Family, sequence: str,
                          mutants: Sequence[tuple[Substitution, ...] | None],
                          options: ContextOptions = ContextOptions(), progress: bool | None = False) -> np.ndarray:
    """``log p(mutant | homologs) - log p(wild type | homologs)``, the homologs' state computed once
    per draw and reused for every mutant; averaged over context draws."""
    model.eval()
    device = next(model.parameters()).device
    wt = ALPHABET.frame(sequence)
    pool, weights, pool_positions = _pool(family, sequence, model)
    wt_positions = wild_type_positions(family, sequence, model)
    budget = _budget(options, wt)
    valid = [k for k, m in enumerate(mutants) if m is not None]
    sequences = [wt] + [ALPHABET.frame(apply_mutant(sequence, mutants[k])) for k in valid]
    total = np.zeros(len(sequences))
    with progress_bar(total=options.contexts * len(sequences), desc="homolog contexts", unit="sequences",
                      enabled=progress) as bar:
        for draw in range(options.contexts):
            rng = np.random.default_rng(np.random.SeedSequence([options.seed, draw]))
            members = draw_context(pool, weights, budget, rng)
            prefix = np.concatenate([pool[k] for k in members])  # (P,) ends with <eos>
            where = None if pool_positions is None else np.concatenate([pool_positions[k] for k in members])
            state = model.init_state(1)
            for t, token in enumerate(prefix):
                if where is not None:  # the aligned position of this token (step() would count on)
                    state.positions = torch.full_like(state.positions, int(where[t]))
                logits = model.step(torch.tensor([int(token)], device=device), state)
            first = logits.double().log_softmax(-1).cpu()  # (1, V): the next token, <cls> of the query
            for lo in range(0, len(sequences), options.batch_size):
                chunk = sequences[lo : lo + options.batch_size]
                ids = torch.as_tensor(np.stack(chunk).astype(np.int64), device=device)  # (b, n + 2), equal lengths
                run = state.repeat(len(chunk))
                ll = first[0, ids[:, 0].cpu()].clone()  # log p(<cls> | homologs): the same for every row
                for t in range(ids.shape[1] - 1):
                    if wt_positions is not None:
                        run.positions = torch.full_like(run.positions, int(wt_positions[t]))
                    lp = model.step(ids[:, t], run).double().log_softmax(-1).cpu()  # (b, V)
                    ll += lp.gather(-1, ids[:, t + 1].cpu()[:, None])[:, 0]
                total[lo : lo + len(chunk)] += ll.numpy()
                bar.update(len(chunk))
            log.info("context %d/%d: %d homologs (%d tokens) before the wild type; %d sequences scored", draw + 1,
                     options.contexts, len(members), len(prefix), len(sequences))
    out = np.full(len(mutants), np.nan)
    out[valid] = (total[1:] - total[0]) / options.contexts
    return out

