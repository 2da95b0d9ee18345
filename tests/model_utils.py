"""Test helper: tiny ``ProteinLM`` checkpoints written by a real Lightning ``Trainer``.

``tiny_checkpoint(path)`` trains a dim-16, 2-layer Performer for two steps on random proteins
and saves it with ``trainer.save_checkpoint`` (the format ``load_checkpoint`` reads), so tests
exercise the same files users get from ``protein-performer fit``. Also ``write_fasta`` for
FASTA files the model never saw.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from protein_performer.alphabet import ALPHABET, STANDARD_AMINO_ACIDS
from protein_performer.datasets import MLMCollator, Sample
from protein_performer.lit import ProteinLM
from protein_performer.model import PerformerConfig

TINY = dict(dim=16, depth=2, heads=2, nb_features=8, dropout=0.0)


def _random_batches(n: int, length: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """``n`` masked-LM batches of 4 random proteins, each framed to ``length`` tokens and masked by
    the package's own collator (15% of residues, seeded per protein)."""
    framed = [ALPHABET.frame(s) for s in random_sequences(4 * n, length - 2, length - 2, seed=seed)]
    collate = MLMCollator(seed=seed)
    return [collate([Sample(framed[i], i) for i in range(k, k + 4)]) for k in range(0, 4 * n, 4)]


def tiny_checkpoint(path: str | Path, steps: int = 2, seed: int = 0, **config) -> Path:
    """Train a tiny MLM for ``steps`` steps and save a Lightning checkpoint at ``path``."""
    path = Path(path)
    pl.seed_everything(seed, verbose=False)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    module = ProteinLM(config=PerformerConfig(**{**TINY, **config}), objective="mlm", warmup_steps=0)
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    loader = DataLoader(_random_batches(steps, 24, seed), batch_size=None)
    trainer.fit(module, loader)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return path


def random_sequences(n: int, min_len: int, max_len: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = np.array(list(STANDARD_AMINO_ACIDS))
    return ["".join(rng.choice(letters, size=int(k))) for k in rng.integers(min_len, max_len + 1, size=n)]


def write_fasta(path: str | Path, records: Iterable[tuple[str, str]]) -> Path:
    """Write ``(header, sequence)`` pairs as FASTA (60 residues a line)."""
    path = Path(path)
    with open(path, "w") as fh:
        for header, seq in records:
            fh.write(f">{header}\n")
            for i in range(0, len(seq), 60):
                fh.write(seq[i : i + 60] + "\n")
    return path
