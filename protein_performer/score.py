"""``protein-performer score``: accuracy and perplexity of a checkpoint on any FASTA file.

Definitions (shared with validation in :mod:`protein_performer.lit`):

* masked (``mlm``): proteins are joined with ``<eos>`` into windows of ``--window-tokens``; 15% of
  residues are hidden, *every one* replaced by ``<mask>`` (no random or unchanged replacements,
  which would let a model copy visible answers), drawn from a fixed seed per window. Accuracy is
  the fraction of hidden residues recovered; perplexity is exp of their mean cross-entropy.
* causal (``clm``): every residue is predicted from its prefix within the window.

Both are compared with the unigram baseline of the training split: always predict its most
frequent amino acid (accuracy), or its residue frequencies (perplexity). ``--passes K`` scores K
independent masks per window (seeds ``seed .. seed+K-1``) for a tighter estimate. The comparison
with the baseline is paired (same hidden residues) and comes with a 95% bootstrap interval over
windows: ``beats_unigram`` is true only when the whole interval of the accuracy gain is above zero
and the whole interval of the perplexity ratio is below one. When the training data is known, the
neighbour-context n-gram gets the same paired comparison (``context_accuracy_gain``, ...,
``beats_context``).

``--out`` (and the numeric flags) are checked before the checkpoint is loaded: never an input
(the FASTA, the checkpoint, a file of ``--data-dir``), an existing file only with ``--overwrite``;
it is written atomically by one process at a time. On a terminal a bar follows the batches of
every pass (``--quiet``: none).
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

from protein_performer.baselines import ContextBaseline, unigram_probabilities
from protein_performer.checkpoint import add_device_argument
from protein_performer.cli_args import deprecated_alias
from protein_performer.corpus.fasta import add_unknown_argument
from protein_performer.datasets import (
    IGNORE_INDEX,
    Sample,
    check_objective,
    residue_targets_only,
    scoring_collator,
    windows_from_sequences,
)
from protein_performer.model import PerformerLM
from protein_performer.outputs import check_at_least, check_output, locked, written_atomically
from protein_performer.progress import add_quiet_argument, from_args, progress_bar
from protein_performer.stats import bootstrap_draws, interval95

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
    passes: int = 1
    accuracy_gain: float | None = None
    """Accuracy minus the unigram baseline's, in percentage points, on the same residues."""
    accuracy_gain_ci95: tuple[float, float] | None = None
    perplexity_ratio: float | None = None
    """Perplexity over the unigram baseline's (below 1 is better)."""
    perplexity_ratio_ci95: tuple[float, float] | None = None
    beats_unigram: bool | None = None
    context_accuracy: float | None = None
    """The neighbour-context n-gram baseline (:class:`ContextBaseline`) on the same residues."""
    context_perplexity: float | None = None
    context_accuracy_gain: float | None = None
    """Accuracy minus the n-gram's, in percentage points, on the same residues."""
    context_accuracy_gain_ci95: tuple[float, float] | None = None
    context_perplexity_ratio: float | None = None
    """Perplexity over the n-gram's (below 1 is better)."""
    context_perplexity_ratio_ci95: tuple[float, float] | None = None
    beats_context: bool | None = None


@torch.no_grad()
def score_windows(
    model: PerformerLM,
    objective: str,
    token_arrays: Sequence[np.ndarray],
    *,
    window_tokens: int = 8192,
    batch_size: int = 1,
    seed: int = 0,
    unigram: np.ndarray | None = None,
    passes: int = 1,
    bootstrap: int = 2000,
    context: ContextBaseline | None = None,
    progress: bool | None = False,
) -> ScoreResult:
    """Score proteins (uint8 residue-id arrays) under the definitions above. ``progress``: a bar
    over the batches of every pass (None: only on a terminal; :mod:`protein_performer.progress`)."""
    check_objective(objective)
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if objective == "clm":
        passes = 1  # every residue is already scored once; more passes would repeat it
    model.eval()
    device = next(model.parameters()).device
    windows = windows_from_sequences(list(token_arrays), window_tokens)
    if context is not None and context.objective != objective:
        raise ValueError(f"the context baseline was fitted for {context.objective!r}, not {objective!r}")
    # Per-window tallies, summed over passes: count, correct, nll, unigram correct, unigram nll,
    # context correct, context nll.
    tally = np.zeros((len(windows), 7))
    bar = progress_bar(total=passes * -(-len(windows) // batch_size), unit="batch", desc="score", enabled=progress)
    for k in range(passes):
        collate = scoring_collator(objective, seed + k)
        for start in range(0, len(windows), batch_size):
            bar.update(1)
            chunk = windows[start : start + batch_size]
            batch = collate([Sample(w, start + i) for i, w in enumerate(chunk)])
            labels = residue_targets_only(batch["labels"]).to(device)  # (B, L)
            out = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            keep = labels != IGNORE_INDEX  # (B, L)
            safe = labels.clamp(min=0)
            logits = out.logits.float()  # (B, L, V)
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), safe, reduction="none")  # (B, L)
            hit = (logits.argmax(-1) == labels) & keep  # (B, L)
            rows = tally[start : start + len(chunk)]
            rows[:, 0] += keep.sum(1).cpu().numpy()
            rows[:, 1] += hit.sum(1).cpu().numpy()
            rows[:, 2] += (nll * keep).sum(1).double().cpu().numpy()
            t, k_np = safe.cpu().numpy(), keep.cpu().numpy()  # (B, L) targets and scored positions
            if unigram is not None:
                rows[:, 3] += ((t == int(np.argmax(unigram))) & k_np).sum(1)
                rows[:, 4] += np.where(k_np, -np.log(np.maximum(unigram[t], 1e-300)), 0.0).sum(1)
            if context is not None:
                lp = context.log_probs(batch["input_ids"].numpy())  # (B, L, V)
                rows[:, 5] += ((lp.argmax(-1) == t) & k_np).sum(1)
                rows[:, 6] += np.where(k_np, -np.take_along_axis(lp, t[..., None], -1)[..., 0], 0.0).sum(1)
    bar.close()
    count = int(tally[:, 0].sum())
    if count == 0:
        raise ValueError("nothing to score: the input has no residues")
    loss = tally[:, 2].sum() / count
    result = ScoreResult(objective=objective, proteins=len(token_arrays), windows=len(windows), tokens=count,
                         accuracy=tally[:, 1].sum() / count, perplexity=math.exp(loss), loss=loss, passes=passes)
    if unigram is not None:
        result.unigram_accuracy = tally[:, 3].sum() / count
        result.unigram_perplexity = math.exp(tally[:, 4].sum() / count)
        (result.accuracy_gain, result.accuracy_gain_ci95, result.perplexity_ratio,
         result.perplexity_ratio_ci95, result.beats_unigram) = _paired_comparison(tally, 3, bootstrap, seed)
    if context is not None:
        result.context_accuracy = tally[:, 5].sum() / count
        result.context_perplexity = math.exp(tally[:, 6].sum() / count)
        (result.context_accuracy_gain, result.context_accuracy_gain_ci95, result.context_perplexity_ratio,
         result.context_perplexity_ratio_ci95, result.beats_context) = _paired_comparison(tally, 5, bootstrap, seed)
    return result


def _paired_comparison(tally: np.ndarray, column: int, bootstrap: int, seed: int):
    """Paired comparison with the baseline whose (correct, nll) tallies are ``tally[:, column:column + 2]``:
    ``(accuracy gain in points, its 95% interval, perplexity ratio, its interval, beats)``, the
    intervals from a percentile bootstrap over windows (:func:`~protein_performer.stats.bootstrap_draws`;
    None with fewer than 2 windows)."""

    def stats(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # t: (..., W, 7)
        n = t[..., 0].sum(-1)
        gain = 100.0 * (t[..., 1].sum(-1) - t[..., column].sum(-1)) / n
        ratio = np.exp((t[..., 2].sum(-1) - t[..., column + 1].sum(-1)) / n)
        return gain, ratio

    gain, ratio = stats(tally)
    if bootstrap <= 0 or len(tally) < 2:
        return float(gain), None, float(ratio), None, None
    # the same resamples (seed) for every baseline
    gains, ratios = bootstrap_draws(lambda idx: stats(tally[idx]), len(tally), bootstrap, seed)  # idx: (R, W)
    gain_ci, ratio_ci = interval95(gains), interval95(ratios)
    return float(gain), gain_ci, float(ratio), ratio_ci, bool(gain_ci[0] > 0 and ratio_ci[1] < 1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="a ProteinLM checkpoint (.ckpt)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--fasta", type=Path, help="FASTA (plain/gz/bz2/xz) or UniProt .dat")
    source.add_argument("--data-dir", type=Path, help="a prepared dataset (protein-performer prepare)")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"),
                        help="split of --data-dir to score (default: test, the held-out proteins)")
    deprecated_alias(parser, parser.add_argument(
        "--window-tokens", type=int, default=8192, metavar="N",
        help="tokens per window: the proteins, joined with <eos>, are cut into windows of N tokens (default 8192)"),
        "--max-length")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the hidden positions (mlm)")
    parser.add_argument("--passes", type=int, default=1,
                        help="mlm: independent masks per window (seeds SEED..SEED+K-1), for a tighter estimate")
    parser.add_argument("--bootstrap", type=int, default=2000,
                        help="bootstrap resamples of windows for the 95%% intervals of the gain (0: none)")
    parser.add_argument("--context-from", type=Path, default=None,
                        help="prepared dataset whose train split fits the neighbour-context n-gram baseline "
                             "(default: --data-dir; none for --fasta unless given)")
    add_unknown_argument(parser)
    add_device_argument(parser)
    add_quiet_argument(parser)
    parser.add_argument("--out", type=Path, help="also write the JSON here (never an input; an existing file only "
                                                 "with --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def check_arguments(args: argparse.Namespace) -> None:
    """Everything that can be checked before the work: numbers, and ``--out`` (not an input, not an
    existing file unless ``--overwrite``, in a folder that can be written)."""
    check_at_least(args, {"--window-tokens": 1, "--batch-size": 1, "--passes": 1, "--bootstrap": 0})
    if args.out is not None:
        inputs = [p for p in (args.checkpoint, args.fasta) if p is not None]
        for folder in (args.data_dir, args.context_from):
            if folder is not None and Path(folder).is_dir():
                inputs += [p for p in Path(folder).rglob("*") if p.is_file()]
        check_output(args.out, "file", inputs=inputs, existing_ok=args.overwrite)


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    if args.out is None:
        return _run(args)
    with locked(args.out):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from protein_performer.checkpoint import default_device, load_checkpoint

    loaded = load_checkpoint(args.checkpoint)
    model = loaded.model.to(args.device or default_device())
    source, proteins, unknown_to_x = _read_proteins(args)
    unigram = unigram_probabilities(loaded.train_token_counts)
    context = None
    context_dir = args.context_from or args.data_dir
    if context_dir is not None:
        # unigram None (a checkpoint saved before training started): from_split counts the split itself
        context = ContextBaseline.from_split(loaded.objective, context_dir, unigram,
                                             window_tokens=min(args.window_tokens, 512))
        log.info("context baseline fitted on %s:train", context_dir)
    log.info("scoring %d proteins from %s (%s, windows of %d tokens)", len(proteins), source, loaded.objective,
             args.window_tokens)
    result = score_windows(model, loaded.objective, proteins, window_tokens=args.window_tokens,
                           batch_size=args.batch_size, seed=args.seed, passes=args.passes,
                           bootstrap=args.bootstrap, unigram=unigram, context=context, progress=from_args(args))
    if not math.isfinite(result.loss):
        raise ValueError(f"{args.checkpoint}: the model's loss on {source} is {result.loss} (not finite); the "
                         "checkpoint is broken, e.g. from a diverged run: train again with a lower --model.lr")
    payload = {"checkpoint": str(args.checkpoint), "input": source, "unknown_to_x": unknown_to_x, **asdict(result)}
    text = json.dumps(payload, indent=2, allow_nan=False)
    if args.out:
        with written_atomically(args.out) as tmp:
            tmp.write_text(text + "\n")
    print(text)
    return 0


def _read_proteins(args: argparse.Namespace) -> tuple[str, list[np.ndarray], int]:
    """(source name, proteins as residue ids, letters mapped to X) of ``--fasta`` or ``--data-dir``."""
    from protein_performer.corpus.fasta import CleaningPolicy, ReadCounts, read_records

    if args.fasta is not None:
        counts = ReadCounts()
        proteins = [r.token_array() for r in read_records(args.fasta, CleaningPolicy(unknown=args.unknown), counts)]
        source = str(args.fasta)
    else:
        from protein_performer.corpus.shards import open_split, read_manifest

        source = f"{args.data_dir}:{args.split}"
        shard = open_split(args.data_dir, args.split)
        proteins = [np.asarray(shard.protein(i)) for i in range(len(shard))]
        counts = ReadCounts(unknown_to_x=read_manifest(args.data_dir).get("counts", {}).get("unknown_to_x", 0))
    if counts.unknown_to_x:
        log.warning("%s: %d characters that are not amino-acid codes were scored as X (--unknown x)%s", source,
                    counts.unknown_to_x, " in the whole prepared dataset" if args.fasta is None else "")
    return source, proteins, counts.unknown_to_x
