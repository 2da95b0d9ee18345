"""The checkpoints a ``score-variants`` run scores with, loaded when a scorer first asks for one and
kept until another is asked for: one model in memory at a time, however many checkpoints.

What is needed of a checkpoint after its model is gone is kept by path: its config, its training
split's residue counts (the unigram baseline) and the wild type's positions in its family's frame
(a model trained with ``aligned_positions`` reads absolute positions, so it must read the wild type
where training put each site).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from protein_performer.checkpoint import LoadedModel, load_checkpoint
from protein_performer.corpus.families import Family
from protein_performer.model import PerformerConfig


class CheckpointModels:
    """The run's checkpoints on ``device`` (module docstring). ``family``, ``sequence`` and
    ``region_start`` (``--msa-start``) place the wild type in a family's frame."""

    def __init__(self, device: str, family: Family | None, sequence: str, region_start: int | None = None):
        self.device, self.family, self.sequence, self.region_start = device, family, sequence, region_start
        self._loaded: LoadedModel | None = None
        self._configs: dict[Path, PerformerConfig] = {}
        self._counts: dict[Path, torch.Tensor] = {}
        self._positions: dict[Path, np.ndarray | None] = {}

    def load(self, path: Path) -> LoadedModel:
        """The checkpoint at ``path``, its model on the device (read again only if another was asked for since)."""
        if self._loaded is None or self._loaded.path != Path(path):
            self._loaded = None  # the last model goes before the next one is read
            loaded = load_checkpoint(path)
            loaded = replace(loaded, model=loaded.model.to(self.device))
            self._configs[Path(path)], self._counts[Path(path)] = loaded.config, loaded.train_token_counts
            self._loaded = loaded
        return self._loaded

    def config(self, path: Path) -> PerformerConfig:
        return self._configs[Path(path)] if Path(path) in self._configs else self.load(path).config

    def token_counts(self, path: Path) -> torch.Tensor:
        """(V,) residue counts of the checkpoint's training split, by token id (zeros if unknown)."""
        return self._counts[Path(path)] if Path(path) in self._counts else self.load(path).train_token_counts

    def positions(self, path: Path) -> np.ndarray | None:
        """(n + 2,) the framed wild type's positions in the family's frame for a model trained with
        ``aligned_positions``, else None (the model counts them). Raises ``ValueError`` for such a
        model without an aligned family."""
        path = Path(path)
        if path not in self._positions:
            self._positions[path] = self._frame_positions(path, self.config(path))
        return self._positions[path]

    def _frame_positions(self, path: Path, config: PerformerConfig) -> np.ndarray | None:
        if not config.aligned_positions:
            return None
        if self.family is None or not self.family.aligned:
            raise ValueError(f"{path}: this model counts positions in its family's alignment (aligned_positions), so "
                             "the wild type must be placed in that frame: give --homologs with the aligned family "
                             "it was trained on (A3M, A2M, Stockholm or aligned FASTA)")
        from protein_performer.variants.context import wild_type_positions

        return wild_type_positions(self.family, self.sequence, region_start=self.region_start)
