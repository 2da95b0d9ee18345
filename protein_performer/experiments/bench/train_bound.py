"""``scripts/bench_train.py --bound`` (:mod:`.train`): the training step against the paper's bound on any attention.

Performer-Softmax, masked and causal, against the same model whose attention returns V
(:class:`ValueOnlyAttention`). Per L one fresh process (``--bound-case``, :func:`run_bound`) holds the
three models, which take turns for ``--rounds`` rounds (``--long-rounds`` from
``--single-step-length`` on); step time and step peak memory are reported as ratios to the bound's
in the same rounds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from functools import partial

import torch
from torch import Tensor, nn

from protein_performer.attention import FavorAttention
from protein_performer.experiments.bench.common import PeakMemory, targets_table, time_call
from protein_performer.experiments.bench.train_common import (
    CASES,
    TARGET_L,
    WARMUP_LENGTH,
    fmt_gib,
    make_batch,
    make_model,
    model_config,
    peak_definition,
    setting,
    spawn,
    training_step,
)
from protein_performer.experiments.machine import machine_description, write_marked_block
from protein_performer.experiments.report.tables import md_table
from protein_performer.model import PerformerLM

log = logging.getLogger("bench_train")

# The bound's comparison: Performer-Softmax masked and causal against the same model whose
# attention returns V ("bound", see ValueOnlyAttention), taking turns in one process.
BOUND_CASES = ["softmax", "softmax_causal", "bound"]
BOUND_LABEL = "Attention returns V (bound)"
BOUND_TARGET = 1.5


# ----------------------------------------------------------------------------- worker side


class ValueOnlyAttention(nn.Module):
    """The paper's bound on any attention: attention that returns V.

    It holds the block's own q/k/v and output projections (same weights, same cost: ``qkv`` still
    projects all of q, k and v) and hands v straight to the output projection. Everything that
    mixes positions (rotary, features, sums, normaliser) is gone, so it has no direction: one bound
    serves masked and causal models.
    """

    def __init__(self, attn: FavorAttention) -> None:
        super().__init__()
        self.dim, self.qkv, self.out, self.dropout = attn.dim, attn.qkv, attn.out, attn.dropout

    def forward(self, x: Tensor, **_: object) -> tuple[Tensor, None]:
        B, L, _ = x.shape
        v = self.qkv(x).view(B, L, 3, self.dim)[:, :, 2]  # (B, L, dim): the values, heads side by side
        return self.dropout(self.out(v)), None


def make_bound_model(case: str, *, checkpointing: bool, quick: bool, device: str) -> PerformerLM:
    """The model of a case of :data:`BOUND_CASES` in training mode; ``"bound"``: Performer-Softmax
    whose every block's attention is :class:`ValueOnlyAttention`."""
    if case != "bound":
        return make_model(case, checkpointing=checkpointing, quick=quick, device=device)
    model = PerformerLM(model_config("softmax", checkpointing=checkpointing, quick=quick))
    for block in model.blocks:
        block.attn = ValueOnlyAttention(block.attn)
    return model.to(device).train()


def run_bound(length: int, *, rounds: int, checkpointing: bool, quick: bool, threads: int, device: str) -> dict:
    """The models of ``BOUND_CASES`` in one process, taking turns for ``rounds`` rounds (the order
    rotates); per model the step times and step peaks of every round."""
    torch.set_num_threads(threads)
    steps, batches = {}, {}
    for case in BOUND_CASES:
        model = make_bound_model(case, checkpointing=checkpointing, quick=quick, device=device)
        steps[case] = training_step(model, device)
        batches[case] = make_batch(length, model.config.causal, torch.Generator().manual_seed(0), device)
        steps[case](make_batch(min(length, WARMUP_LENGTH), model.config.causal,
                               torch.Generator().manual_seed(1), device))  # warm-up
    seconds: dict[str, list[float]] = {case: [] for case in BOUND_CASES}
    peaks: dict[str, list[int | None]] = {case: [] for case in BOUND_CASES}
    # Timed rounds run on a warm allocator: handing freed memory back to the kernel before a step
    # (which an exact peak needs) makes the step fault every page in again, a cost that grows with
    # the step's memory and would pose as attention time. So peaks get a round of their own.
    for r in range(rounds):
        for case in BOUND_CASES[r % len(BOUND_CASES):] + BOUND_CASES[: r % len(BOUND_CASES)]:
            seconds[case].append(time_call(partial(steps[case], batches[case]), device))
    for case in BOUND_CASES:
        with PeakMemory(device) as peak:
            steps[case](batches[case])
        peaks[case].append(peak.bytes)
    return {"seconds": seconds, "step_peak_bytes": peaks}


# ----------------------------------------------------------------------------- driver side


@dataclass
class BoundRow:
    """One length of the bound comparison: per model of ``BOUND_CASES``, every round's step time
    and step peak (None where the kernel's peak counter cannot be reset), or why it was not run."""

    length: int
    checkpointing: bool
    seconds: dict[str, list[float]] = field(default_factory=dict)
    step_peak_bytes: dict[str, list[int | None]] = field(default_factory=dict)
    skipped: str = ""

    def time_ratio(self, case: str) -> float | None:
        """Median over rounds of case / bound step time in the same round."""
        if not self.seconds:
            return None
        return statistics.median(a / b for a, b in zip(self.seconds[case], self.seconds["bound"]))

    def peak(self, case: str) -> int | None:
        peaks = self.step_peak_bytes.get(case, [])
        return None if not peaks or None in peaks else max(peaks)

    def memory_ratio(self, case: str) -> float | None:
        mine, bound = self.peak(case), self.peak("bound")
        return mine / bound if mine is not None and bound else None


def bound_sweep(args: argparse.Namespace) -> list[BoundRow]:
    """Per L, one fresh process in which the Performers and the bound take turns."""
    rows = []
    for length in args.lengths:
        rounds = args.long_rounds if length >= args.single_step_length else args.rounds
        row = BoundRow(length, checkpointing=0 < args.ckpt_from <= length)
        remaining = args.deadline - time.monotonic()
        if remaining < 30:
            row.skipped = f"> run budget ({args.budget_s:g} s)"
        else:
            res = spawn(args, "bound", length, ckpt=row.checkpointing, timed=rounds, probe=False, timeout_s=remaining)
            row.skipped = "OOM" if res.get("oom") else res.get("error", "")
            row.seconds, row.step_peak_bytes = res.get("seconds", {}), res.get("step_peak_bytes", {})
        if row.skipped:
            log.warning("bound L=%d: %s", length, row.skipped)
        else:
            log.info("bound L=%d ckpt=%s: %s", length, row.checkpointing, "; ".join(
                f"{case} {', '.join(f'{t:.2f}' for t in row.seconds[case])} s" for case in BOUND_CASES))
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- reporting


def bound_table(rows: list[BoundRow]) -> str:
    body = []
    for row in rows:
        if row.skipped:
            body.append([row.length, "", "", row.skipped, "", "", ""])
            continue
        for case in BOUND_CASES:
            label = BOUND_LABEL if case == "bound" else CASES[case][0]
            ratio, mem = row.time_ratio(case), row.memory_ratio(case)
            body.append([row.length, "yes" if row.checkpointing else "no", label,
                         f"{statistics.median(row.seconds[case]):.3g} (n={len(row.seconds[case])})", f"{ratio:.2f}x",
                         fmt_gib(row.peak(case)), "n/a" if mem is None else f"{mem:.2f}x"])
    return md_table(["L", "ckpt", "model", "step s (median; rounds)", "time / bound", "step peak GiB",
                     "memory / bound"], body, align="rllrrrr")


def bound_targets_table(rows: list[BoundRow], target: int) -> str:
    row = next((r for r in rows if r.length == target and not r.skipped), None)
    out = []
    for case in ("softmax", "softmax_causal"):
        ratio = row.time_ratio(case) if row else None
        shown, status = ("n/a", "n/a") if ratio is None else (f"{ratio:.2f}x", "PASS" if ratio <= BOUND_TARGET else "MISS")
        out.append((f"{CASES[case][0]} / bound step time @{target}", shown, f"<= {BOUND_TARGET:g}x", status))
    return targets_table(out)


def bound_report(rows: list[BoundRow], args: argparse.Namespace, command: str) -> str:
    target = TARGET_L if TARGET_L in args.lengths else max(args.lengths)
    ckpt = f"activation checkpointing (all three models) from L = {args.ckpt_from}" if args.ckpt_from else "no checkpointing"
    lines = [
        (f"Measured {datetime.date.today().isoformat()} on {machine_description(args.device)}; {setting(args)}; "
        f"{ckpt}. The bound is the same PerformerLM whose every block's attention returns V: the block's own "
        "q/k/v and output projections run as before, v goes straight to the output projection, and nothing "
        "mixes positions (no rotary, features or sums), so one bound serves the masked and the causal model. "
        f"One fresh process per L; the three models take turns for {args.rounds} rounds ({args.long_rounds} "
        f"at L >= {args.single_step_length}), the order rotating, after one warm-up step each at "
        f"L = min(L, {WARMUP_LENGTH}). Time / bound = median over rounds of the two models' step times in the "
        f"same round. Step peak = {peak_definition(args.device)}, in one extra step per model after the timed rounds (the timed rounds run on a warm allocator: returning freed memory to the kernel before every step made each step fault its pages in again, which inflated the larger models' times). Each process runs with `protein_performer.allocator.keep_freed_memory()` as every protein-performer command does (glibc keeps freed large blocks for reuse; `PROTEIN_PERFORMER_MALLOC=system` turns it off)."),
        "",
        f"Command: `{command}`",
        "",
        bound_table(rows),
        "",
        "Target (issue 15):",
        "",
        bound_targets_table(rows, target),
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace, command: str) -> None:
    """The bound comparison at every ``--lengths``; writes ``--out-json`` and the ``bench_train_bound``
    block of ``--out-md``, and prints the block."""
    rows = bound_sweep(args)
    if args.out_json:
        args.out_json.write_text(json.dumps({"command": command, "bound": [asdict(r) for r in rows]}, indent=1))
    block = bound_report(rows, args, command)
    if args.out_md:
        write_marked_block(args.out_md, block, "bench_train_bound", "Training-step benchmark")
    print(block)
