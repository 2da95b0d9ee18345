"""Model scores of mutants: masked marginals, wild-type marginals, pseudo-perplexity, and the causal
log-likelihood ratio, read in overlapping windows; BLOSUM62 and unigram baselines; the DMS matrix.

Proteins longer than ``window_tokens`` tokens (``<cls>`` and ``<eos>`` included: ``--window-tokens``)
are cut into overlapping windows (stride half a window) and every position is read from the window
that gives it the most context (masked: the one it is nearest the centre of; causal: the one with
the longest prefix), never truncated. The keyword was ``max_length`` before; that name still works,
with a ``DeprecationWarning``.

Functions that run many forwards take ``progress``: a bar on stderr (None: only on a terminal;
:mod:`protein_performer.progress`), off by default.
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable, Literal, Sequence, TypeVar

import numpy as np
import torch

from protein_performer.alphabet import ALPHABET, STANDARD_AMINO_ACIDS
from protein_performer.analysis.blosum import blosum62
from protein_performer.model import PerformerLM
from protein_performer.progress import progress_bar
from protein_performer.variants.mutants import Substitution, apply_mutant
from protein_performer.windows import WindowPlan

Strategy = Literal["masked-marginals", "wt-marginals", "pseudo-ppl"]
STRATEGIES: tuple[str, ...] = ("masked-marginals", "wt-marginals", "pseudo-ppl")
_F = TypeVar("_F", bound=Callable)


def _renamed_window_tokens(fn: _F) -> _F:
    """Let ``fn`` still take ``max_length=`` (its tokens per window, the old name) for
    ``window_tokens=``, with a ``DeprecationWarning``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "max_length" in kwargs:
            if "window_tokens" in kwargs:
                raise TypeError(f"{fn.__name__}() got window_tokens and its old name max_length; give window_tokens")
            warnings.warn(f"{fn.__name__}(max_length=...) is deprecated: it counts tokens per window, now "
                          "window_tokens=...", DeprecationWarning, stacklevel=2)
            kwargs["window_tokens"] = kwargs.pop("max_length")
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]

# --------------------------------------------------------------------------- windows


def token_windows(n_tokens: int, size: int, causal: bool) -> WindowPlan:
    """Windows of ``size`` tokens over ``n_tokens`` framed tokens, stride half a window, each token owned
    by the window that gives it the most context: the one whose centre it is nearest (masked), or
    the earliest that reads it, with the longest prefix (causal)."""
    if size < 3:
        raise ValueError(f"--window-tokens must be >= 3 tokens, got {size}")
    return WindowPlan(n_tokens, size, overlap=size - size // 2, tail="full",
                      ownership="prefix" if causal else "centre")


def assign_windows(n_tokens: int, size: int, causal: bool) -> tuple[list[int], np.ndarray]:
    """:func:`token_windows` as ``(starts, owner)``: window w is ``[starts[w], starts[w] + size)`` and
    ``owner[i]`` is the window that token i is read from."""
    plan = token_windows(n_tokens, size, causal)
    return [w.start for w in plan], plan.owners()


@torch.no_grad()
def _log_probs(model: PerformerLM, batch: list[np.ndarray], positions: np.ndarray | None = None) -> torch.Tensor:
    """(B, L) equal-length token windows -> (B, L, V) float64 log-probabilities (on the CPU).
    ``positions``: (L,) the windows' positions (the same for every row), None: the model's own count."""
    device = next(model.parameters()).device
    ids = torch.tensor(np.stack(batch), dtype=torch.long, device=device)
    position_ids = None if positions is None else torch.as_tensor(positions, device=device).expand(len(batch), -1)
    return model(ids, position_ids=position_ids).logits.double().log_softmax(-1).cpu()


def _window_positions(positions: np.ndarray | None, start: int, stop: int) -> np.ndarray | None:
    return None if positions is None else np.asarray(positions[start:stop], dtype=np.int64)


@_renamed_window_tokens
def masked_log_probs(model: PerformerLM, tokens: np.ndarray, targets: Sequence[int], *, window_tokens: int,
                     batch_size: int = 8, progress: bool | None = False,
                     desc: str = "masked marginals", positions: np.ndarray | None = None) -> dict[int, torch.Tensor]:
    """For each token index in ``targets``: (V,) log-probs with that token masked (in its window).
    ``positions``: (len(tokens),) each token's position (:func:`score_mutants`), None: counted."""
    plan = token_windows(len(tokens), window_tokens, causal=False)
    owner = plan.owners()
    inputs, where, spans = [], [], []
    for i in targets:
        w = plan[int(owner[i])]
        window = tokens[w.start : w.stop].copy()
        window[i - w.start] = ALPHABET.mask_idx
        inputs.append(window)
        where.append(i - w.start)
        spans.append((w.start, w.stop))
    out = {}
    with progress_bar(total=len(inputs), desc=desc, unit="positions", enabled=progress) as bar:
        for lo in range(0, len(inputs), batch_size):
            hi = lo + batch_size
            if positions is not None:  # one window's positions per forward: cut the batch where the window changes
                hi = lo + 1
                while hi < min(lo + batch_size, len(inputs)) and spans[hi] == spans[lo]:
                    hi += 1
            lp = _log_probs(model, inputs[lo:hi], _window_positions(positions, *spans[lo]))  # (b, L, V)
            for j, i in enumerate(targets[lo:hi]):
                out[i] = lp[j, where[lo + j]]
            bar.update(len(lp))
    return out


@_renamed_window_tokens
def unmasked_log_probs(model: PerformerLM, tokens: np.ndarray, *, window_tokens: int,
                       positions: np.ndarray | None = None) -> torch.Tensor:
    """(n, V) log-probs of every token index of a masked model, one unmasked pass per window."""
    out = torch.zeros(len(tokens), len(ALPHABET), dtype=torch.float64)
    for w in token_windows(len(tokens), window_tokens, causal=False):
        lp = _log_probs(model, [tokens[w.start : w.stop]], _window_positions(positions, w.start, w.stop))[0]  # (L, V)
        mine = np.arange(w.own_start, w.own_stop)
        out[mine] = lp[mine - w.start]
    return out


@_renamed_window_tokens
def causal_log_likelihoods(model: PerformerLM, sequences: Sequence[np.ndarray], *, window_tokens: int,
                           batch_size: int = 8, progress: bool | None = False,
                           positions: np.ndarray | None = None) -> np.ndarray:
    """log p(sequence) of framed sequences (all tokens after ``<cls>``), windows as above.
    ``positions``: the tokens' positions, for sequences that all have its length."""
    out = np.zeros(len(sequences))
    by_length: dict[int, list[int]] = {}
    for k, s in enumerate(sequences):
        by_length.setdefault(len(s), []).append(k)
    plans = {n: token_windows(n, window_tokens, causal=True) for n in by_length}
    total = sum(len(members) * len(plans[n]) for n, members in by_length.items())
    with progress_bar(total=total, desc="log-likelihoods", unit="windows", enabled=progress) as bar:
        for n, members in by_length.items():
            for w in plans[n]:
                mine = np.arange(max(w.own_start, 1), w.own_stop)  # token 0 (<cls>) is not predicted
                if not len(mine):
                    bar.update(len(members))
                    continue
                for lo in range(0, len(members), batch_size):
                    chunk = members[lo : lo + batch_size]
                    lp = _log_probs(model, [sequences[k][w.start : w.stop] for k in chunk],
                                    _window_positions(positions, w.start, w.stop))  # (b, L, V)
                    for j, k in enumerate(chunk):
                        target = torch.as_tensor(sequences[k][mine].astype(np.int64))
                        out[k] += float(lp[j, mine - 1 - w.start].gather(-1, target[:, None]).sum())
                    bar.update(len(chunk))
    return out


@_renamed_window_tokens
def pseudo_log_likelihoods(model: PerformerLM, sequences: Sequence[np.ndarray], *, window_tokens: int,
                           batch_size: int = 8, progress: bool | None = False,
                           positions: np.ndarray | None = None) -> np.ndarray:
    """Sum over residues of log p(residue | the rest, residue masked) of framed sequences."""
    out = np.zeros(len(sequences))
    for k, tokens in enumerate(progress_bar(sequences, desc="pseudo-log-likelihoods", unit="sequences",
                                            enabled=progress)):
        targets = list(range(1, len(tokens) - 1))
        lp = masked_log_probs(model, tokens, targets, window_tokens=window_tokens, batch_size=batch_size,
                              positions=positions)
        out[k] = sum(float(lp[i][tokens[i]]) for i in targets)
    return out


def _id(letter: str) -> int:
    return int(ALPHABET.encode(letter)[0])


@_renamed_window_tokens
def score_mutants(model: PerformerLM, sequence: str, mutants: Sequence[tuple[Substitution, ...] | None], *,
                  causal: bool, strategy: Strategy = "masked-marginals", window_tokens: int = 1024,
                  batch_size: int = 8, progress: bool | None = False, positions: np.ndarray | None = None
                  ) -> np.ndarray:
    """One score per mutant (NaN where the mutant is None), as in the module docstring.

    ``positions``: (n + 2,) the framed wild type's positions, for models that count positions in a
    family's frame (``aligned_positions``: :func:`protein_performer.variants.context.wild_type_positions`);
    substitutions keep every position. None: the model counts them from 0."""
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    model.eval()
    wt = ALPHABET.frame(sequence)  # (n + 2,): <cls> residues <eos>; residue j is token j + 1
    scores = np.full(len(mutants), np.nan)
    valid = [k for k, m in enumerate(mutants) if m is not None]
    if causal or strategy == "pseudo-ppl":
        seqs = [wt] + [ALPHABET.frame(apply_mutant(sequence, mutants[k])) for k in valid]
        fn = causal_log_likelihoods if causal else pseudo_log_likelihoods
        ll = fn(model, seqs, window_tokens=window_tokens, batch_size=batch_size, progress=progress, positions=positions)
        scores[valid] = ll[1:] - ll[0]
        return scores
    if strategy == "masked-marginals":
        targets = sorted({s.index + 1 for k in valid for s in mutants[k]})
        lp = masked_log_probs(model, wt, targets, window_tokens=window_tokens, batch_size=batch_size, progress=progress,
                              positions=positions)
    else:
        table = unmasked_log_probs(model, wt, window_tokens=window_tokens, positions=positions)
        lp = {i: table[i] for i in range(len(wt))}
    for k in valid:
        scores[k] = sum(float(lp[s.index + 1][_id(s.mt)] - lp[s.index + 1][_id(s.wt)]) for s in mutants[k])
    return scores


# --------------------------------------------------------------------------- baselines and statistics


def blosum62_scores(mutants: Sequence[tuple[Substitution, ...] | None]) -> np.ndarray:
    """BLOSUM62[wt, mut] summed over each mutant's substitutions (NaN for None)."""
    matrix, order = blosum62(), {a: i for i, a in enumerate(STANDARD_AMINO_ACIDS)}
    return np.array([np.nan if m is None else float(sum(matrix[order[s.wt], order[s.mt]] for s in m))
                     for m in mutants])


def unigram_scores(mutants: Sequence[tuple[Substitution, ...] | None], probs: np.ndarray) -> np.ndarray:
    """``log u(mut) - log u(wt)`` summed over each mutant's substitutions; ``probs`` by token id."""
    logu = np.log(np.maximum(probs, 1e-300))
    return np.array([np.nan if m is None else float(sum(logu[_id(s.mt)] - logu[_id(s.wt)] for s in m))
                     for m in mutants])


@_renamed_window_tokens
def substitution_matrix(model: PerformerLM, sequence: str, *, window_tokens: int = 1024,
                        batch_size: int = 8, progress: bool | None = False,
                        positions: np.ndarray | None = None) -> np.ndarray:
    """(n, 20) masked marginals ``log p(aa) - log p(wt)`` at every position, all 19 substitutions
    (columns in ``STANDARD_AMINO_ACIDS`` order; 0 at the wild type): the standard DMS heatmap."""
    wt = ALPHABET.frame(sequence)
    lp = masked_log_probs(model, wt, list(range(1, len(wt) - 1)), window_tokens=window_tokens, batch_size=batch_size,
                          progress=progress, desc="substitution matrix", positions=positions)
    aa = list(ALPHABET.standard_indices)
    return np.stack([(lp[i][aa] - lp[i][wt[i]]).numpy() for i in range(1, len(wt) - 1)])

