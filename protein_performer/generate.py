"""``protein-performer generate``: sample proteins from a causal model, one token at a time.

Sampling runs over :meth:`PerformerLM.step`, so a FAVOR+ model keeps a state of fixed size (per
layer and head, the (m, D + 1) sums and their stabiliser) and every new residue costs the same,
however long the protein already is; exact attention keeps a key/value cache.

A sequence starts as ``<cls>`` plus the prompt's residues and grows until the model emits
``<eos>`` or it holds ``--max-residues`` residues. Only the 20 standard amino acids and ``<eos>``
can be drawn. The header of each FASTA record holds the sequence's mean log-likelihood: the mean
of log p(token | prefix) under the model itself (temperature 1, nothing truncated) over every
residue after ``<cls>`` and the final ``<eos>`` when there is one. The same ``--seed`` gives the
same sequences on the same device.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from protein_performer.alphabet import ALPHABET
from protein_performer.cli_args import deprecated_alias
from protein_performer.model import PerformerLM
from protein_performer.progress import add_quiet_argument, from_args, progress_bar

log = logging.getLogger(__name__)


@dataclass
class SamplingConfig:
    """How the next token is drawn from the model's logits."""

    temperature: float = 1.0
    """Logits are divided by this (> 0); lower is more conservative."""
    top_k: int | None = None
    """Keep only the k most likely tokens (None: all)."""
    top_p: float | None = None
    """Keep the smallest set of tokens whose probability reaches p (nucleus sampling; None: all)."""
    max_residues: int = 512
    """Residues per sequence at most, prompt included (``--stop-at-residues``)."""

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"--temperature must be > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"--top-k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.max_residues < 1:
            raise ValueError(f"--stop-at-residues must be >= 1, got {self.max_residues}")


@dataclass
class Generated:
    """One sampled protein."""

    sequence: str
    """Residues, prompt included (no special tokens)."""
    mean_log_likelihood: float
    """Mean log p(token | prefix) over the residues and the final ``<eos>`` (if any), in nats."""
    ended: bool
    """True if the model emitted ``<eos>``; False if ``max_residues`` stopped it."""
    prompt_length: int


DRAWABLE = torch.tensor([*ALPHABET.standard_indices, ALPHABET.eos_idx])
"""Token ids that sampling may produce: the 20 standard amino acids and ``<eos>``."""


def sample_next(logits: Tensor, sampling: SamplingConfig, generator: torch.Generator) -> Tensor:
    """(B, vocab) logits -> (B,) drawn token ids (from :data:`DRAWABLE` only)."""
    allowed = DRAWABLE.to(logits.device)
    scores = logits.float()[:, allowed] / sampling.temperature  # (B, 21)
    if sampling.top_k is not None and sampling.top_k < scores.shape[-1]:
        kth = scores.topk(sampling.top_k, dim=-1).values[:, -1:]  # (B, 1)
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if sampling.top_p is not None and sampling.top_p < 1:
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        probs = sorted_scores.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of the more likely tokens
        drop_sorted = before >= sampling.top_p  # the most likely token is always kept
        scores = scores.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    choice = torch.multinomial(scores.softmax(dim=-1), 1, generator=generator)[:, 0]  # (B,)
    return allowed[choice]


@torch.inference_mode()
def generate(model: PerformerLM, prompt: str, num: int, sampling: SamplingConfig,
             generator: torch.Generator, progress: bool | None = False, desc: str = "generate") -> list[Generated]:
    """Sample ``num`` proteins that start with ``prompt`` (residues; may be empty), as one batch.

    ``progress``: a bar over the residues drawn, on stderr (None: only on a terminal;
    :mod:`protein_performer.progress`); it is cleared when the batch is done."""
    if num < 1:
        raise ValueError(f"--num must be >= 1, got {num}")
    model.eval()
    device = next(model.parameters()).device
    framed = ALPHABET.frame(prompt)[:-1]  # <cls> + prompt residues, no <eos>
    if len(framed) - 1 > sampling.max_residues:
        raise ValueError(f"the prompt has {len(framed) - 1} residues, more than --stop-at-residues "
                         f"{sampling.max_residues}")
    state = model.init_state(num)
    tokens = torch.tensor(framed, dtype=torch.long, device=device)
    log_lik = torch.zeros(num, dtype=torch.float64, device=device)
    logits = None
    for t in tokens:  # the prompt: its residues are scored, not drawn
        if logits is not None:
            log_lik += logits.float().log_softmax(-1)[:, t].double()
        logits = model.step(t.expand(num), state)  # (num, vocab)
    out = [tokens[1:].tolist() for _ in range(num)]  # token ids after <cls>, per row
    scored = torch.full((num,), len(framed) - 1, dtype=torch.long, device=device)  # tokens in log_lik
    running = torch.ones(num, dtype=torch.bool, device=device)
    steps = sampling.max_residues - (len(framed) - 1)  # one draw per residue still allowed
    for _ in progress_bar(range(steps), desc=desc, unit="residues", enabled=progress, leave=False):
        nxt = sample_next(logits, sampling, generator)  # (num,)
        lp = logits.float().log_softmax(-1).gather(-1, nxt[:, None])[:, 0].double()  # (num,)
        log_lik += torch.where(running, lp, 0.0)
        scored += running.long()
        for b in torch.nonzero(running).flatten().tolist():
            out[b].append(int(nxt[b]))
        running &= nxt != ALPHABET.eos_idx
        if not bool(running.any()):
            break
        logits = model.step(torch.where(running, nxt, ALPHABET.eos_idx), state)  # finished rows idle
    results = []
    for b in range(num):
        ended = bool(out[b]) and out[b][-1] == ALPHABET.eos_idx
        residues = out[b][:-1] if ended else out[b]
        results.append(Generated(sequence=ALPHABET.decode(residues), ended=ended, prompt_length=len(prompt),
                                 mean_log_likelihood=float(log_lik[b] / max(int(scored[b]), 1))))
    return results


def format_record(name: str, item: Generated) -> str:
    """One FASTA record; the header carries the mean log-likelihood and why sampling stopped."""
    stop = "eos" if item.ended else "max_length"  # the header's word for max_residues, as files always had it
    header = (f">{name} mean_log_likelihood={item.mean_log_likelihood:.4f} length={len(item.sequence)} "
              f"prompt_length={item.prompt_length} stop={stop}")
    lines = [item.sequence[i : i + 60] for i in range(0, len(item.sequence), 60)]
    return "\n".join([header, *lines]) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from protein_performer.checkpoint import add_device_argument
    from protein_performer.corpus.fasta import add_unknown_argument

    parser.add_argument("--checkpoint", required=True, type=Path, help="a causal ProteinLM checkpoint (.ckpt)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prompt", default="", help="residues every sequence starts with (default: none)")
    source.add_argument("--prompts", type=Path, help="FASTA of prompts: --num sequences for each record")
    parser.add_argument("--num", type=int, default=1, help="sequences per prompt (default 1)")
    stop = parser.add_argument("--stop-at-residues", type=int, default=512, metavar="N",
                               help="a sequence stops at N residues, the prompt's included (default 512)")
    deprecated_alias(parser, deprecated_alias(parser, stop, "--max-residues"), "--max-length")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0, help="same seed, same sequences (default 0)")
    add_unknown_argument(parser)
    add_device_argument(parser)
    add_quiet_argument(parser)
    parser.add_argument("--out", required=True, type=Path, help="FASTA to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> int:
    from protein_performer.outputs import check_at_least, check_output, locked

    check_at_least(args, {"--num": 1})
    check_output(args.out, "file", inputs=[args.checkpoint, *([args.prompts] if args.prompts else [])],
                 existing_ok=args.overwrite)
    sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              max_residues=args.stop_at_residues)
    prompts = _read_prompts(args)
    with locked(args.out):
        return _generate(args, sampling, prompts)


def _generate(args: argparse.Namespace, sampling: SamplingConfig, prompts: list[tuple[str, str]]) -> int:
    """``run`` once the arguments are checked and this process holds the lock of ``--out``."""
    from protein_performer.checkpoint import default_device, load_checkpoint
    from protein_performer.outputs import written_atomically

    loaded = load_checkpoint(args.checkpoint)
    if not loaded.config.causal:
        raise ValueError(f"{args.checkpoint}: a masked (non-causal) model cannot generate; use a causal checkpoint "
                         "(trained with --model.objective clm --model.config.causal true)")
    device = torch.device(args.device or default_device())
    model = loaded.model.to(device)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    records = []
    for k, (name, prompt) in enumerate(prompts, start=1):
        desc = "generate" if len(prompts) == 1 else f"generate {k}/{len(prompts)}"
        for i, item in enumerate(generate(model, prompt, args.num, sampling, generator, from_args(args), desc)):
            records.append(format_record(f"{name}_{i}", item))
    with written_atomically(args.out) as tmp:
        tmp.write_text("".join(records))
    log.info("wrote %d sequences to %s", len(records), args.out)
    return 0


def _read_prompts(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(name, residues) of every prompt: the records of --prompts, or --prompt as 'generated'."""
    if args.prompts is None:
        try:
            ALPHABET.encode(args.prompt)
        except ValueError as err:
            raise ValueError(f"--prompt: {err}; give amino-acid letters only") from None
        return [("generated", args.prompt.upper())]
    from protein_performer.corpus.fasta import CleaningPolicy, ReadCounts, read_records

    counts = ReadCounts()
    prompts = [(r.id, r.sequence) for r in read_records(args.prompts, CleaningPolicy(unknown=args.unknown), counts)]
    if "empty" in counts.skipped:
        raise ValueError(f"{args.prompts}: {counts.first_skipped['empty']} has no residues "
                         f"({counts.skipped['empty']} such records); every record is a prompt: remove it, or use "
                         "--prompt '' (the default) for sequences without a prompt")
    if not prompts:
        raise ValueError(f"{args.prompts}: no sequences; give a FASTA file with at least one record")
    if counts.skipped:
        log.warning("%s: skipped %d prompt records (%s; first: %s)", args.prompts, sum(counts.skipped.values()),
                    dict(counts.skipped), ", ".join(counts.first_skipped.values()))
    return prompts
