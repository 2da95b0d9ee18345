"""Loading trained models from Lightning checkpoints, safely (``weights_only=True``), without Lightning."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from protein_performer.alphabet import ALPHABET_VERSION
from protein_performer.model import PerformerConfig, PerformerLM

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: PerformerLM
    config: PerformerConfig
    objective: str
    """``mlm`` or ``clm``."""
    train_token_counts: torch.Tensor
    """Residue counts of the training split, by token id (zeros if unknown)."""
    path: Path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Read a ``ProteinLM`` checkpoint into an eval-mode :class:`PerformerLM`.

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file when it is missing, not a
    protein_performer checkpoint, or made with another alphabet version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise ValueError(f"{path}: not a loadable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or "performer_config" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a protein_performer checkpoint (no performer_config/state_dict)")
    version = ckpt.get("alphabet_version")
    if version != ALPHABET_VERSION:
        raise ValueError(f"{path}: alphabet version {version}, this protein_performer uses {ALPHABET_VERSION}")
    config = PerformerConfig(**ckpt["performer_config"])
    model = PerformerLM(config)
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    model.eval()
    counts = ckpt["state_dict"].get("train_token_counts", torch.zeros(config.vocab_size, dtype=torch.long))
    return LoadedModel(model=model, config=config, objective=ckpt.get("objective", "mlm"),
                       train_token_counts=counts, path=path)
