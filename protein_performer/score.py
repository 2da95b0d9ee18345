"""``protein-performer score``: accuracy and perplexity of a checkpoint on any FASTA file.

Definitions (shared with validation in :mod:`protein_performer.lit`):

* masked (``mlm``): proteins are joined with ``<eos>`` into windows of ``--max-length``; 15% of
  residues are hidden, *every one* replaced by ``<mask>`` (no random or unchanged replacements,
  which would let a model copy visible answers), drawn from a fixed seed per window. Accuracy is
  the fraction of hidden residues recovered; perplexity is exp of their mean cross-entropy.
* causal (``clm``): every residue is predicted from its prefix within the window.

Both are compared with the unigram baseline of the training split: always predict its most
frequent amino acid (accuracy), or its residue frequencies (perplexity).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from protein_performer.alphabet import ALPHABET
from protein_performer.datasets import (
    IGNORE_INDEX,
    CLMCollator,
    MLMCollator,
    Sample,
    residue_targets_only,
    windows_from_sequences,
)
from protein_performer.model import PerformerLM

log = logging.getLogger(__name__)


@dataclass
class ScoreResult:
    objective: str
    proteins: int
    windows: int
    tokens: int
    """Scored residues (hidden ones for mlm, all for clm)."""
    accuracy: float
    perplexity: float
    loss: float
    unigram_accuracy: float | None = None
    unigram_perplexity: float | None = None


def unigram_probabilities(train_token_counts: Sequence[int] | torch.Tensor) -> np.ndarray | None:
    """Residue frequencies of the training split (add-one smoothed over the 25 codes), by token id."""
    counts = np.asarray(train_token_counts, dtype=np.float64)
    if counts.sum() == 0:
        return None
    probs = np.zeros(len(ALPHABET))
    aa = list(ALPHABET.amino_acid_indices)
    probs[aa] = counts[aa] + 1.0
    return probs / probs.sum()


@torch.no_grad()
def score_windows(
    model: PerformerLM,
    objective: str,
    token_arrays: Sequence[np.ndarray],
    *,
    max_length: int = 8192,
    batch_size: int = 1,
    seed: int = 0,
    mask_prob: float = 0.15,
    unigram: np.ndarray | None = None,
) -> ScoreResult:
    """Score proteins (uint8 residue-id arrays) under the definitions above."""
    if objective not in ("mlm", "clm"):
        raise ValueError(f"objective must be 'mlm' or 'clm', got {objective!r}")
    model.eval()
    device = next(model.parameters()).device
    windows = windows_from_sequences(list(token_arrays), max_length)
    collate = (MLMCollator(mask_prob, 1.0, 0.0, seed=seed, deterministic=True)
               if objective == "mlm" else CLMCollator())
    loss_sum, correct, count, base_correct, base_nll = 0.0, 0, 0, 0, 0.0
    for start in range(0, len(windows), batch_size):
        batch = collate([Sample(w, start + i) for i, w in enumerate(windows[start : start + batch_size])])
        labels = residue_targets_only(batch["labels"]).to(device)
        out = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        keep = labels != IGNORE_INDEX
        logits = out.logits[keep].float()  # (N, V)
        target = labels[keep]  # (N,)
        loss_sum += torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(-1) == target).sum())
        count += int(target.numel())
        if unigram is not None:
            t = target.cpu().numpy()
            base_correct += int((t == int(np.argmax(unigram))).sum())
            base_nll += float(-np.log(unigram[t]).sum())
    if count == 0:
        raise ValueError("nothing to score: the input has no residues")
    loss = loss_sum / count
    result = ScoreResult(objective=objective, proteins=len(token_arrays), windows=len(windows), tokens=count,
                         accuracy=correct / count, perplexity=math.exp(loss), loss=loss)
    if unigram is not None:
        result.unigram_accuracy = base_correct / count
        result.unigram_perplexity = math.exp(base_nll / count)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="a ProteinLM checkpoint (.ckpt)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--fasta", type=Path, help="FASTA (plain/gz/bz2/xz) or UniProt .dat")
    source.add_argument("--data-dir", type=Path, help="a prepared dataset (protein-performer prepare)")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"),
                        help="split of --data-dir to score (default: test, the held-out proteins)")
    parser.add_argument("--max-length", type=int, default=8192, help="window length in tokens (default 8192)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the hidden positions (mlm)")
    parser.add_argument("--unknown", choices=("error", "x", "skip"), default="x",
                        help="non amino-acid characters: error, map to X (default), or skip the record")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")


def run(args: argparse.Namespace) -> int:
    from protein_performer.checkpoint import load_checkpoint
    from protein_performer.corpus.fasta import CleaningPolicy, read_records

    loaded = load_checkpoint(args.checkpoint)
    model = loaded.model.to(args.device)
    if args.fasta is not None:
        source = str(args.fasta)
        proteins = [r.token_array() for r in read_records(args.fasta, CleaningPolicy(unknown=args.unknown))]
    else:
        from protein_performer.corpus.shards import open_split

        source = f"{args.data_dir}:{args.split}"
        shard = open_split(args.data_dir, args.split)
        proteins = [np.asarray(shard.protein(i)) for i in range(len(shard))]
    log.info("scoring %d proteins from %s (%s, windows of %d)", len(proteins), source, loaded.objective,
             args.max_length)
    result = score_windows(model, loaded.objective, proteins, max_length=args.max_length,
                           batch_size=args.batch_size, seed=args.seed,
                           unigram=unigram_probabilities(loaded.train_token_counts))
    payload = {"checkpoint": str(args.checkpoint), "input": source, **asdict(result)}
    text = json.dumps(payload, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0
