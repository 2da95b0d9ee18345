"""What ``similarity`` reads: single proteins, or the family windows a family model trained on, and
the shuffled inputs of its control.

Family windows are drawn as ``prepare --family`` serves them in training
(:class:`~protein_performer.datasets.family_windows.FamilyWindowDataset`): members in a random order
drawn by sequence weight, each framed ``<cls> s <eos>``, joined to ``window_tokens`` tokens, with
each residue's position in the query's frame for models with ``aligned_positions``.

The shuffled control keeps what the inputs give for free and destroys what a model could learn
from them:

* families: every aligned column's residues are permuted among the members that have one there
  (gaps and insertions stay where they are), so each column keeps its composition, every member
  keeps its length and gap pattern, and nothing links a residue to its own protein's other sites;
* single proteins: each protein's residues are permuted within it (its composition stays).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from protein_performer.analysis.attention_counts import Window, protein_windows
from protein_performer.corpus.families import _CODE, Family, read_family
from protein_performer.corpus.homologs import match_states
from protein_performer.datasets.family_windows import family_window, weighted_order

__all__ = ["family_windows", "protein_windows", "read_families", "shuffle_columns", "shuffle_residues"]


def read_families(paths: Sequence[Path], *, query: str | None = None, format: str = "auto") -> list[Family]:
    """Each homolog set as ``prepare --family`` reads it (``query`` applies to a single file)."""
    if query is not None and len(paths) > 1:
        raise ValueError("--query names one member of one homolog set; give one --homologs file with it")
    return [read_family(Path(p), query=query, format=format) for p in paths]


def family_windows(family: Family, *, window_tokens: int, windows: int, aligned: bool, seed: int = 0,
                   unit: str | None = None) -> list[Window]:
    """``windows`` family windows of ``family``, window ``i`` drawn with seed ``(seed, i)``; ``aligned``:
    with each token's position in the query's frame (models with ``aligned_positions``). ``unit``: the
    bootstrap unit of every window (default: each window its own)."""
    if window_tokens < 3:
        raise ValueError(f"window_tokens must be >= 3 (<cls>, a residue, <eos>), got {window_tokens}")
    if aligned and not family.aligned:
        raise ValueError(f"{family.path}: the model reads positions from an alignment (aligned_positions), "
                         "but these homologs are not aligned; give the aligned family (A3M, A2M, Stockholm "
                         "or aligned FASTA)")
    positions = [family.residue_positions(k) for k in range(len(family))] if aligned else None
    out = []
    for i in range(windows):
        rng = np.random.default_rng(np.random.SeedSequence([seed, i]))
        tokens, where = family_window(family.sequences, weighted_order(family.weights, rng), window_tokens, positions)
        out.append(Window(tokens, where, unit or f"{family.path.name} window {i + 1}"))
    return out


def shuffle_columns(family: Family, rng: np.random.Generator) -> Family:
    """``family`` with each aligned column's residues permuted among the members that have one there
    (module docstring). The rows, sequences and columns change; ids, weights and gaps stay."""
    if family.rows is None or family.columns is None:
        raise ValueError(f"{family.path}: the shuffled-column control needs aligned homologs")
    grid = np.array([list(match_states(row)) for row in family.rows], dtype="<U1")  # (N, C) match states
    for c in range(grid.shape[1]):
        present = np.flatnonzero(grid[:, c] != "-")
        grid[present, c] = grid[rng.permutation(present), c]
    rows, sequences = [], []
    for k, row in enumerate(family.rows):
        letters = iter(grid[k])
        new = "".join(next(letters) if (c == "-" or c.isupper()) else c for c in row)
        rows.append(new)
        sequences.append("".join(c.upper() for c in new if c != "-"))
    columns = _CODE[np.frombuffer("".join(grid.ravel()).encode(), dtype=np.uint8)].reshape(grid.shape)  # (N, C)
    return replace(family, rows=rows, sequences=sequences, columns=columns)


def shuffle_residues(sequences: Sequence[str], rng: np.random.Generator) -> list[str]:
    """Each protein with its residues permuted within it."""
    return ["".join(np.asarray(list(s))[rng.permutation(len(s))]) if s else s for s in sequences]
