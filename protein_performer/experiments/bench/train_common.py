"""What the modes of ``scripts/bench_train.py`` (:mod:`.train`) share: the models, the random batches and the
training step they time, the fresh worker process a cell runs in, and the lines of the reports
that describe a run.

One training step = forward + cross-entropy + backward + AdamW step, batch 1 (``--precision``: the
config's batch), random token ids in 5..24 (amino acids). Masked models get MLM labels on 15% of the
positions (those inputs replaced by <mask>); causal models get next-token labels.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from collections.abc import Callable

import torch
from torch import Tensor

from protein_performer.alphabet import ALPHABET
from protein_performer.datasets import IGNORE_INDEX
from protein_performer.experiments.bench.common import autocast
from protein_performer.lit import lm_metrics
from protein_performer.model import PerformerConfig, PerformerLM

ENTRY_POINT = "protein_performer.experiments.bench.train"  # the module a worker process runs
TARGET_L = 8192
MLM_FRACTION = 0.15
GIB = 2**30
WARMUP_LENGTH = 1024

log = logging.getLogger("bench_train")

# name -> (label, PerformerConfig overrides); the order is the table's row order.
CASES: dict[str, tuple[str, dict]] = {
    "softmax": ("Performer-Softmax (masked)", {"attention": "softmax", "causal": False}),
    "relu": ("Performer-ReLU (masked)", {"attention": "relu", "causal": False}),
    "softmax_causal": ("Performer-Softmax causal", {"attention": "softmax", "causal": True}),
    "exact": ("Exact (masked)", {"attention": "exact", "causal": False}),
    "exact_causal": ("Exact causal", {"attention": "exact", "causal": True}),
}
QUICK_CONFIG = {"dim": 32, "depth": 2, "heads": 4, "ff_mult": 2, "nb_features": 16}


def model_config(case: str, *, checkpointing: bool, quick: bool) -> PerformerConfig:
    """The :class:`PerformerConfig` of a case of :data:`CASES`: the default model (``quick``: the
    tiny :data:`QUICK_CONFIG`) with the case's attention and direction."""
    return PerformerConfig(**{**CASES[case][1], **(QUICK_CONFIG if quick else {}), "checkpointing": checkpointing})


def make_model(case: str, *, checkpointing: bool, quick: bool, device: str) -> PerformerLM:
    """The case's PerformerLM on ``device``, in training mode."""
    return PerformerLM(model_config(case, checkpointing=checkpointing, quick=quick)).to(device).train()


def make_batch(length: int, causal: bool, generator: torch.Generator, device: str, *, batch_size: int = 1,
               mlm_fraction: float = MLM_FRACTION) -> tuple[Tensor, Tensor, Tensor]:
    """input_ids (B, L), attention_mask (B, L) all True, labels (B, L) with -100 where no loss."""
    ids = torch.randint(5, 25, (batch_size, length), generator=generator)  # amino-acid ids
    mask = torch.ones(batch_size, length, dtype=torch.bool)
    if causal:
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[:, :-1] = ids[:, 1:]  # next token
    else:
        chosen = torch.rand(batch_size, length, generator=generator) < mlm_fraction
        labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
        ids = ids.masked_fill(chosen, ALPHABET.mask_idx)
    return ids.to(device), mask.to(device), labels.to(device)


def training_step(model: PerformerLM, device: str, *, probe: bool = False,
                  bf16: bool | None = None) -> Callable[[tuple], None]:
    """``step(batch)``: forward (bf16 autocast on CUDA; ``bf16`` decides when given) + cross-entropy
    + backward + AdamW step (``probe``: no optimizer step)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)

    def step(batch: tuple[Tensor, Tensor, Tensor]) -> None:
        ids, mask, labels = batch
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, bf16):
            logits = model(ids, mask).logits
        loss_sum, _, count = lm_metrics(logits, labels)
        (loss_sum / count.clamp_min(1)).backward()
        if not probe:
            optimizer.step()

    return step


def spawn(args: argparse.Namespace, case: str, length: int, *, ckpt: bool, timed: int, probe: bool,
          timeout_s: float) -> dict:
    """Run ``--case`` (``case == "bound"``: ``--bound-case``) of :mod:`.train` in a fresh
    interpreter; returns its JSON, ``{"oom": True}`` or ``{"error": ...}``."""
    cmd = [sys.executable, "-m", ENTRY_POINT, "--case-length", str(length), "--device", args.device,
           "--threads", str(args.threads), "--timed", str(timed), "--mem-cap-gib", str(args.mem_cap_gib)]
    cmd += ["--bound-case"] if case == "bound" else ["--case", case]
    cmd += ["--case-ckpt"] * ckpt + ["--probe"] * probe + ["--quick"] * args.quick
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"> {timeout_s:.0f} s (killed)"}
    if proc.returncode in (-9, 137):
        return {"oom": True, "note": "killed by the kernel"}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return {"error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- reporting


def fmt_gib(n: int | None) -> str:
    """Bytes as GiB with two decimals; "n/a" for None."""
    return "n/a" if n is None else f"{n / GIB:.2f}"


def setting(args: argparse.Namespace) -> str:
    """Device, precision, threads, batch and model of a run, for the reports' first line."""
    precision = "bf16 autocast" if args.device == "cuda" else "fp32"
    model = (f"tiny config {QUICK_CONFIG}" if args.quick
             else "default PerformerConfig (dim 512, depth 6, heads 8, ff_mult 4, m=256, rotary)")
    return f"device {args.device}, {precision}, {args.threads} threads, batch 1, {model}, AdamW"


def peak_definition(device: str) -> str:
    """What "step peak" means on ``device``, for the reports."""
    if device == "cuda":
        return "torch.cuda.max_memory_allocated during the timed steps over what was allocated before them"
    return ("VmHWM during the timed steps - VmRSS before them (free heap returned to the kernel and the peak "
            "counter reset first)")
