"""Training-step benchmark: tokens/s and peak memory of the full protein LM, Performer vs exact.

One training step = forward + cross-entropy + backward + AdamW step, fp32, batch 1, random token
ids in 5..24 (amino acids). Masked models get MLM labels on 15% of the positions (those inputs
replaced by <mask>); causal models get next-token labels. Models are the default
:class:`PerformerConfig` (dim 512, depth 6, heads 8, ff_mult 4, m=256, rotary) with
``attention`` = softmax / relu / exact.

Every (model, L) cell runs in a fresh subprocess of this script (``--case``) whose address space
is capped (``RLIMIT_AS`` = ``--mem-cap-gib``): an allocation failure there is reported as OOM.
Peak memory is the step's own: the kernel's peak-RSS counter is reset (``/proc/self/clear_refs``)
after the model, optimizer and inputs exist, and ``VmHWM - VmRSS(before)`` is reported; the whole
process's ``VmHWM`` is reported too. Each cell first runs without activation checkpointing; when
extrapolation from the shorter lengths predicts more than the cap, or the run hits OOM, it is
(re)run with ``checkpointing=True``. Cells predicted to take longer than ``--time-cap-s`` per
step are skipped. Models are interleaved: the order rotates from one length to the next.

Afterwards the longest power-of-two length whose single forward + backward fits the memory cap
within ``--probe-cap-s`` is searched for Performer-Softmax (checkpointing) and the exact baseline.

``--bound`` measures the paper's bound instead: Performer-Softmax, masked and causal, against the
same model whose attention returns V (:class:`ValueOnlyAttention`). Per L one fresh process
holds the three models, which take turns for ``--rounds`` rounds; step time and step peak memory
are reported as ratios to the bound's in the same rounds.

``--precision`` measures the step in float32 against ``bf16-mixed`` (autocast to bfloat16, as
Lightning runs it, FAVOR+ inside in float32) for the shapes of ``configs/demo.yaml`` and
``configs/performer_softmax_mlm.yaml`` (model, batch, window and MLM share as the CLI reads them,
base.yaml first). Per config one model per precision, in this process; they take turns for
``--rounds`` rounds (``--long-rounds`` at L >= 8192), the order alternating, after a warm-up step
each, and the ratio is the median over rounds of the two step times in the same round. ``--profile
N`` adds the N ops with the most self time in one bf16-mixed step of each config.

``--device cuda``: bf16 autocast, the device synchronised around every timer, and memory from
``torch.cuda.max_memory_allocated`` (no address-space cap).

    python scripts/bench_train.py [--lengths 1024,8192,32768] [--repeats 2] [--threads 2]
        [--out-md docs/benchmarks/train.md] [--out-json FILE] [--quick] [--device cpu|cuda]
    python scripts/bench_train.py --bound [--rounds 5] [--long-rounds 2] [--ckpt-from 32768] ...
    python scripts/bench_train.py --precision [--configs demo,performer_softmax_mlm] [--rounds 5]
        [--long-rounds 2] [--profile 25]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import yaml
from torch import Tensor, nn

from protein_performer.allocator import keep_freed_memory
from protein_performer.alphabet import ALPHABET
from protein_performer.attention import FavorAttention
from protein_performer.cli import BASE_CONFIG, CONFIG_DIR
from protein_performer.datasets import IGNORE_INDEX
from protein_performer.lit import lm_metrics
from protein_performer.model import PerformerConfig, PerformerLM

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_L = 8192
MLM_FRACTION = 0.15
GIB = 2**30
WARMUP_LENGTH = 1024

from bench_common import (  # noqa: E402  (scripts/)
    BestOfRepeats, PeakMemory, autocast, machine_description, peak_rss_bytes, time_call, write_marked_block)

log = logging.getLogger("bench_train")

# name -> (label, PerformerConfig overrides); the order is the table's row order.
CASES: dict[str, tuple[str, dict]] = {
    "softmax": ("Performer-Softmax (masked)", {"attention": "softmax", "causal": False}),
    "relu": ("Performer-ReLU (masked)", {"attention": "relu", "causal": False}),
    "softmax_causal": ("Performer-Softmax causal", {"attention": "softmax", "causal": True}),
    "exact": ("Exact (masked)", {"attention": "exact", "causal": False}),
    "exact_causal": ("Exact causal", {"attention": "exact", "causal": True}),
}
# The bound's comparison: Performer-Softmax masked and causal against the same model whose
# attention returns V ("bound", see ValueOnlyAttention), taking turns in one process.
BOUND_CASES = ["softmax", "softmax_causal", "bound"]
BOUND_LABEL = "Attention returns V (bound)"
BOUND_TARGET = 1.5
QUICK_CONFIG = {"dim": 32, "depth": 2, "heads": 4, "ff_mult": 2, "nb_features": 16}
PRECISIONS = ["32-true", "bf16-mixed"]  # --precision: Lightning's names


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


def make_model(case: str, *, checkpointing: bool, quick: bool, device: str) -> PerformerLM:
    """The case's PerformerLM in training mode; ``"bound"``: Performer-Softmax whose every block's
    attention is :class:`ValueOnlyAttention`."""
    base = CASES["softmax" if case == "bound" else case][1]
    config = PerformerConfig(**{**base, **(QUICK_CONFIG if quick else {}), "checkpointing": checkpointing})
    model = PerformerLM(config)
    if case == "bound":
        for block in model.blocks:
            block.attn = ValueOnlyAttention(block.attn)
    return model.to(device).train()


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


def process_peak_bytes(device: str) -> int:
    """Whole-process peak: ``VmHWM`` on CPU; on CUDA the allocator's peak since its last reset."""
    return torch.cuda.max_memory_allocated() if device == "cuda" else peak_rss_bytes()


def run_case(case: str, length: int, *, checkpointing: bool, timed: int, probe: bool, quick: bool,
             threads: int, device: str) -> dict:
    """A warm-up step at ``min(L, WARMUP_LENGTH)``, then ``timed`` training steps at L.

    With ``probe``: no warm-up and one forward + backward (no optimizer step).
    """
    torch.set_num_threads(threads)
    model = make_model(case, checkpointing=checkpointing, quick=quick, device=device)
    step = training_step(model, device, probe=probe)
    causal = model.config.causal
    batch = make_batch(length, causal, torch.Generator().manual_seed(0), device)
    if not probe:  # warm-up (thread pool, AdamW state) at a short length: same code path, cheap
        step(make_batch(min(length, WARMUP_LENGTH), causal, torch.Generator().manual_seed(1), device))
    with PeakMemory(device) as peak:
        seconds = [time_call(lambda: step(batch), device) for _ in range(1 if probe else timed)]
    return {"seconds": seconds, "step_peak_bytes": peak.bytes, "process_peak_bytes": process_peak_bytes(device)}


def run_bound(length: int, *, rounds: int, checkpointing: bool, quick: bool, threads: int, device: str) -> dict:
    """The models of ``BOUND_CASES`` in one process, taking turns for ``rounds`` rounds (the order
    rotates); per model the step times and step peaks of every round."""
    torch.set_num_threads(threads)
    steps, batches = {}, {}
    for case in BOUND_CASES:
        model = make_model(case, checkpointing=checkpointing, quick=quick, device=device)
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
            seconds[case].append(time_call(lambda: steps[case](batches[case]), device))
    for case in BOUND_CASES:
        with PeakMemory(device) as peak:
            steps[case](batches[case])
        peaks[case].append(peak.bytes)
    return {"seconds": seconds, "step_peak_bytes": peaks}


def config_shape(name: str) -> tuple[PerformerConfig, int, int, float]:
    """The model, batch size, window length and MLM share that ``configs/NAME.yaml`` trains with,
    read as the CLI reads it: configs/base.yaml first, then the config."""
    model, data = {}, {}
    for path in (BASE_CONFIG, CONFIG_DIR / f"{name}.yaml"):
        config = yaml.safe_load(path.read_text())
        model.update((config.get("model") or {}).get("config") or {})
        data.update(config.get("data") or {})
    return PerformerConfig(**model), data["batch_size"], data["max_length"], data.get("mask_prob", MLM_FRACTION)


def run_precision(name: str, *, rounds: int, profile_rows: int, device: str) -> dict:
    """Float32 and bf16-mixed training steps of config ``name``'s shape, taking turns for ``rounds``
    rounds (the order alternating) after a warm-up step each; per precision the step times, and
    with ``profile_rows`` the profiler's table of one bf16-mixed step."""
    config, batch_size, length, mlm_fraction = config_shape(name)
    batch = make_batch(length, config.causal, torch.Generator().manual_seed(0), device, batch_size=batch_size,
                       mlm_fraction=mlm_fraction)
    steps = {}
    for precision in PRECISIONS:
        torch.manual_seed(0)
        model = PerformerLM(config).to(device).train()
        steps[precision] = training_step(model, device, bf16=precision == "bf16-mixed")
        steps[precision](batch)  # warm-up: thread pool, AdamW state, kernels picked for these shapes
    seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for r in range(rounds):
        for precision in PRECISIONS[r % 2:] + PRECISIONS[: r % 2]:
            seconds[precision].append(time_call(lambda: steps[precision](batch), device))
    result = {"config": name, "batch_size": batch_size, "length": length, "seconds": seconds, "profile": ""}
    if profile_rows:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
            steps["bf16-mixed"](batch)
        result["profile"] = prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=profile_rows, max_name_column_width=40, max_shapes_column_width=80)
    return result


def precision_report(results: list[dict], args: argparse.Namespace, command: str) -> str:
    lines = [
        f"Measured {datetime.date.today().isoformat()} on {machine_description(args.device)}; device "
        f"{args.device}, {args.threads} threads. One training step (forward, cross-entropy, backward, AdamW) of "
        "each config's model, batch and window on random amino acids; float32 against bf16-mixed "
        "(torch.autocast to bfloat16, as Lightning runs it; FAVOR+ forms its features, normaliser and prefix "
        "sums in float32 inside it). One model per precision in one process, taking turns for "
        f"{args.rounds} rounds ({args.long_rounds} at L >= {TARGET_L}), the order alternating, after a warm-up "
        "step each. fp32 / bf16 = median over rounds of the two step times in the same round.",
        "",
        f"Command: `{command}`",
        "",
        "| config | batch x L | fp32 s/step (median) | bf16-mixed s/step (median) | fp32 / bf16 |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        fp32, bf16 = r["seconds"]["32-true"], r["seconds"]["bf16-mixed"]
        ratio = statistics.median(a / b for a, b in zip(fp32, bf16))
        lines.append(f"| {r['config']} | {r['batch_size']} x {r['length']} | {statistics.median(fp32):.3g} "
                     f"(n={len(fp32)}) | {statistics.median(bf16):.3g} | {ratio:.2f}x |")
    return "\n".join(lines)


def run_worker(args: argparse.Namespace) -> None:
    """``--case`` / ``--bound-case``: measure in this process, under the address-space cap on CPU;
    the last stdout line is JSON."""
    if args.device == "cpu":  # CUDA reserves far more address space than it uses: no cap there
        cap = int(args.mem_cap_gib * GIB)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        if args.bound_case:
            result = run_bound(args.case_length, rounds=args.timed, checkpointing=args.case_ckpt, quick=args.quick,
                               threads=args.threads, device=args.device)
        else:
            result = run_case(args.case, args.case_length, checkpointing=args.case_ckpt, timed=args.timed,
                              probe=args.probe, quick=args.quick, threads=args.threads, device=args.device)
    except MemoryError:
        result = {"oom": True}
    except RuntimeError as exc:  # torch reports a failed allocation (CPU or CUDA) as RuntimeError
        if "alloc" not in str(exc).lower() and "memory" not in str(exc).lower():
            raise
        result = {"oom": True}
    print(json.dumps(result))


# ----------------------------------------------------------------------------- driver side


@dataclass
class Cell(BestOfRepeats):
    """One (model, L) measurement, or why it was not run."""

    case: str
    length: int
    checkpointing: bool = False
    seconds: list[float] = field(default_factory=list)
    step_peak_bytes: int | None = None
    process_peak_bytes: int | None = None
    skipped: str = ""
    note: str = ""

    @property
    def tokens_per_s(self) -> float | None:
        return self.length / self.time if self.time else None


def spawn(args: argparse.Namespace, case: str, length: int, *, ckpt: bool, timed: int, probe: bool,
          timeout_s: float) -> dict:
    """Run ``--case`` (``case == "bound"``: ``--bound-case``) in a fresh interpreter; returns its
    JSON, ``{"oom": True}`` or ``{"error": ...}``."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case-length", str(length), "--device", args.device,
           "--threads", str(args.threads), "--timed", str(timed), "--mem-cap-gib", str(args.mem_cap_gib)]
    cmd += ["--bound-case"] if case == "bound" else ["--case", case]
    cmd += ["--case-ckpt"] * ckpt + ["--probe"] * probe + ["--quick"] * args.quick
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=REPO_ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"> {timeout_s:.0f} s (killed)"}
    if proc.returncode in (-9, 137):
        return {"oom": True, "note": "killed by the kernel"}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return {"error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def extrapolate(points: list[tuple[int, float]], length: int, default_exponent: float) -> float:
    """Value at ``length`` from the last two (L, value) points on a log-log line (exponent in [1, 2.2])."""
    l1, y1 = points[-1]
    exponent = default_exponent
    if len(points) >= 2:
        l0, y0 = points[-2]
        if y0 > 0 and y1 > 0 and l1 != l0:
            exponent = min(2.2, max(1.0, math.log(y1 / y0) / math.log(l1 / l0)))
    return y1 * (length / l1) ** exponent


def _points(cells: list[Cell], case: str, length: int, what: str, ckpt: bool | None = None):
    """Measured (L, value) of ``case`` below ``length``: what = "time" or "mem" (process peak)."""
    out = []
    for c in sorted(cells, key=lambda c: c.length):
        if c.case != case or c.length >= length or c.time is None or (ckpt is not None and c.checkpointing != ckpt):
            continue
        value = c.time if what == "time" else c.process_peak_bytes
        if value:
            out.append((c.length, float(value)))
    return out


def estimate(cells: list[Cell], case: str, length: int, what: str, ckpt: bool | None = None) -> float | None:
    pts = _points(cells, case, length, what, ckpt)
    if not pts:
        return None
    return extrapolate(pts, length, 1.0)  # from one point: linear (optimistic; the timeout guards)


def measure(args: argparse.Namespace, cells: list[Cell], case: str, length: int, *, timed: int, probe: bool,
            force_ckpt: bool, time_cap_s: float) -> Cell:
    """One cell: skip on predicted time, pick checkpointing on predicted memory, retry it on OOM."""
    cell = Cell(case, length)
    cap = args.mem_cap_gib * GIB
    est_t = estimate(cells, case, length, "time")
    est_mem = estimate(cells, case, length, "mem", ckpt=False)
    mem_text = f", mem est. {est_mem / GIB:.1f} GiB without ckpt" if est_mem else ""
    if est_t is not None and est_t > time_cap_s:
        cell.skipped = f"> {time_cap_s:g} s time cap (est. {est_t:.0f} s{mem_text})"
        return cell
    steps = 1 if probe else timed
    remaining = args.deadline - time.monotonic()
    if est_t is not None and 30 + steps * est_t > remaining:
        cell.skipped = f"> run budget (est. {est_t:.0f} s/step{mem_text})"
        return cell
    tries = [True] if force_ckpt else [False, True]
    if not force_ckpt and est_mem is not None and est_mem > 0.9 * cap:
        tries, cell.note = [True], f"no-ckpt est. {est_mem / GIB:.1f} GiB"
    timeout = 90 + steps * 1.5 * (est_t or time_cap_s) if not probe else 60 + time_cap_s * 1.2
    timeout = max(60.0, min(timeout, remaining))
    for ckpt in tries:
        res = spawn(args, case, length, ckpt=ckpt, timed=timed, probe=probe, timeout_s=timeout)
        if res.get("oom"):
            why = f"OOM without ckpt ({res['note']})" if "note" in res else "OOM without ckpt"
            cell.note = "; ".join(filter(None, [cell.note, why]))
            log.warning("L=%d %s ckpt=%s: OOM", length, case, ckpt)
            continue
        if "error" in res:
            cell.skipped = res["error"]
            log.warning("L=%d %s ckpt=%s: %s", length, case, ckpt, res["error"])
            return cell
        cell.checkpointing, cell.seconds = ckpt, res["seconds"]
        cell.step_peak_bytes, cell.process_peak_bytes = res["step_peak_bytes"], res["process_peak_bytes"]
        log.info("L=%d %s ckpt=%s: %s s, step peak %.2f GiB, process %.2f GiB", length, case, ckpt,
                 ", ".join(f"{s:.2f}" for s in cell.seconds), (cell.step_peak_bytes or 0) / GIB,
                 cell.process_peak_bytes / GIB)
        return cell
    cell.skipped = f"OOM (> {args.mem_cap_gib:g} GiB" + (f", est. {est_mem / GIB:.1f} GiB)" if est_mem else ")")
    return cell


def sweep(args: argparse.Namespace) -> list[Cell]:
    """Every (model, L) training-step cell; the model order rotates from one length to the next."""
    names = list(CASES)
    cells: list[Cell] = []
    for i, length in enumerate(args.lengths):
        timed = 1 if length >= args.single_step_length else args.repeats
        for case in names[i % len(names):] + names[: i % len(names)]:
            cells.append(measure(args, cells, case, length, timed=timed, probe=False, force_ckpt=False,
                                 time_cap_s=args.time_cap_s))
    return cells


def probe(args: argparse.Namespace, cells: list[Cell], case: str, force_ckpt: bool) -> list[Cell]:
    """Forward + backward at powers of two above the sweep, until one fails or exceeds the time cap."""
    done = [c for c in cells if c.case == case and c.time is not None]
    start = max((c.length for c in done), default=args.lengths[0] // 2) * 2
    history = list(done)
    out = []
    length = start
    while length <= args.probe_max:
        cell = measure(args, history, case, length, timed=0, probe=True, force_ckpt=force_ckpt,
                       time_cap_s=args.probe_cap_s)
        if cell.time is not None and cell.time > args.probe_cap_s:
            cell.skipped = f"> {args.probe_cap_s:g} s ({cell.time:.0f} s)"
        out.append(cell)
        if cell.skipped:
            break
        history.append(cell)
        length *= 2
    return out


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


def _gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / GIB:.2f}"


def results_table(cells: list[Cell], lengths: list[int]) -> str:
    lines = ["| model | L | ckpt | tokens/s | step s (min / median) | step peak GiB | process peak GiB | note |",
             "|---|---:|---|---:|---:|---:|---:|---|"]
    for length in lengths:
        for case in CASES:
            c = next((c for c in cells if c.case == case and c.length == length), None)
            if c is None:
                continue
            if c.time is None:
                lines.append(f"| {CASES[case][0]} | {length} | | {c.skipped} | | | | {c.note} |")
                continue
            times = f"{c.time:.2f} / {statistics.median(c.seconds):.2f} (n={len(c.seconds)})"
            lines.append(f"| {CASES[case][0]} | {length} | {'yes' if c.checkpointing else 'no'} | "
                         f"{c.tokens_per_s:,.0f} | {times} | {_gib(c.step_peak_bytes)} | "
                         f"{_gib(c.process_peak_bytes)} | {c.note} |")
    return "\n".join(lines)


def targets_table(cells: list[Cell], target: int) -> str:
    def tps(case: str) -> float | None:
        c = next((c for c in cells if c.case == case and c.length == target), None)
        return c.tokens_per_s if c else None

    rows = [
        (f"Performer-Softmax / exact tokens/s @{target}", tps("softmax"), tps("exact"), 2.0),
        (f"Performer-ReLU / exact tokens/s @{target}", tps("relu"), tps("exact"), 2.0),
        (f"Performer-Softmax causal / masked tokens/s @{target}", tps("softmax_causal"), tps("softmax"), 0.7),
        (f"(info) Performer-Softmax causal / exact causal @{target}", tps("softmax_causal"), tps("exact_causal"), None),
    ]
    lines = ["| criterion | measured | target | status |", "|---|---:|---:|---|"]
    for name, a, b, goal in rows:
        if a is None or not b:
            lines.append(f"| {name} | n/a | {'>= %gx' % goal if goal else ''} | n/a |")
            continue
        r = a / b
        status = "" if goal is None else ("PASS" if r >= goal else "MISS")
        lines.append(f"| {name} | {r:.2f}x | {'>= %gx' % goal if goal else ''} | {status} |")
    return "\n".join(lines)


def probe_table(probes: dict[str, list[Cell]], args: argparse.Namespace) -> str:
    lines = ["| model | L | ckpt | fwd+bwd s | step peak GiB | process peak GiB | result |",
             "|---|---:|---|---:|---:|---:|---|"]
    for case, cells in probes.items():
        for c in cells:
            if c.time is None:
                lines.append(f"| {CASES[case][0]} | {c.length} | | | | | {c.skipped} {c.note} |")
            else:
                result = "fits" if not c.skipped else c.skipped
                lines.append(f"| {CASES[case][0]} | {c.length} | {'yes' if c.checkpointing else 'no'} | "
                             f"{c.time:.1f} | {_gib(c.step_peak_bytes)} | {_gib(c.process_peak_bytes)} | "
                             f"{result} {c.note} |")
    return "\n".join(lines)


def longest_fit(cells: list[Cell], probes: list[Cell], case: str, cap_s: float) -> str:
    ok = [c.length for c in [*cells, *probes] if c.case == case and c.time is not None and c.time <= cap_s]
    first_fail = next((c for c in probes if c.skipped), None)
    text = f"{max(ok)}" if ok else "none"
    return text + (f" (next, {first_fail.length}: {first_fail.skipped})" if first_fail else "")


def report(cells: list[Cell], probes: dict[str, list[Cell]], args: argparse.Namespace, command: str) -> str:
    target = TARGET_L if TARGET_L in args.lengths else max(args.lengths)
    cap = (f"address space capped at {args.mem_cap_gib:g} GiB" if args.device == "cpu"
           else f"checkpointing chosen against {args.mem_cap_gib:g} GiB")
    process = ("whole-process VmHWM (includes the model, AdamW state and the interpreter)" if args.device == "cpu"
               else "torch.cuda.max_memory_allocated (includes the model and AdamW state)")
    lines = [
        f"Measured {datetime.date.today().isoformat()} on {machine_description(args.device)}; {setting(args)}. "
        f"Fresh process per cell, {cap}; min (and median) of {args.repeats} timed steps (1 at L >= "
        f"{args.single_step_length}) after one warm-up step at L = min(L, {WARMUP_LENGTH}). Step peak = "
        f"{peak_definition(args.device)}, so it covers activations, gradients and transients; process peak = "
        f"{process}. Cells are skipped when predicted past the {args.budget_s:g} s run budget.",
        "",
        f"Command: `{command}`",
        "",
        results_table(cells, args.lengths),
        "",
        "Targets:",
        "",
        targets_table(cells, target),
    ]
    if probes:
        lines += ["", f"Longest length (powers of two up to {args.probe_max}) whose forward + backward fits "
                  f"{args.mem_cap_gib:g} GiB within {args.probe_cap_s:g} s:", "",
                  probe_table(probes, args), ""]
        lines += [f"- {CASES[case][0]}{' (checkpointing)' if case != 'exact' else ''}: "
                  f"{longest_fit(cells, p, case, args.probe_cap_s)}" for case, p in probes.items()]
    return "\n".join(lines)


def bound_table(rows: list[BoundRow]) -> str:
    lines = ["| L | ckpt | model | step s (median; rounds) | time / bound | step peak GiB | memory / bound |",
             "|---:|---|---|---:|---:|---:|---:|"]
    for row in rows:
        if row.skipped:
            lines.append(f"| {row.length} | | | {row.skipped} | | | |")
            continue
        for case in BOUND_CASES:
            label = BOUND_LABEL if case == "bound" else CASES[case][0]
            ratio, mem = row.time_ratio(case), row.memory_ratio(case)
            lines.append(f"| {row.length} | {'yes' if row.checkpointing else 'no'} | {label} | "
                         f"{statistics.median(row.seconds[case]):.3g} (n={len(row.seconds[case])}) | {ratio:.2f}x | "
                         f"{_gib(row.peak(case))} | {'n/a' if mem is None else f'{mem:.2f}x'} |")
    return "\n".join(lines)


def bound_targets_table(rows: list[BoundRow], target: int) -> str:
    row = next((r for r in rows if r.length == target and not r.skipped), None)
    lines = ["| criterion | measured | target | status |", "|---|---:|---:|---|"]
    for case in ("softmax", "softmax_causal"):
        ratio = row.time_ratio(case) if row else None
        shown, status = ("n/a", "n/a") if ratio is None else (f"{ratio:.2f}x", "PASS" if ratio <= BOUND_TARGET else "MISS")
        lines.append(f"| {CASES[case][0]} / bound step time @{target} | {shown} | <= {BOUND_TARGET:g}x | {status} |")
    return "\n".join(lines)


def bound_report(rows: list[BoundRow], args: argparse.Namespace, command: str) -> str:
    target = TARGET_L if TARGET_L in args.lengths else max(args.lengths)
    ckpt = f"activation checkpointing (all three models) from L = {args.ckpt_from}" if args.ckpt_from else "no checkpointing"
    lines = [
        f"Measured {datetime.date.today().isoformat()} on {machine_description(args.device)}; {setting(args)}; "
        f"{ckpt}. The bound is the same PerformerLM whose every block's attention returns V: the block's own "
        "q/k/v and output projections run as before, v goes straight to the output projection, and nothing "
        "mixes positions (no rotary, features or sums), so one bound serves the masked and the causal model. "
        f"One fresh process per L; the three models take turns for {args.rounds} rounds ({args.long_rounds} "
        f"at L >= {args.single_step_length}), the order rotating, after one warm-up step each at "
        f"L = min(L, {WARMUP_LENGTH}). Time / bound = median over rounds of the two models' step times in the "
        f"same round. Step peak = {peak_definition(args.device)}, in one extra step per model after the timed rounds (the timed rounds run on a warm allocator: returning freed memory to the kernel before every step made each step fault its pages in again, which inflated the larger models' times). Each process runs with `protein_performer.allocator.keep_freed_memory()` as every protein-performer command does (glibc keeps freed large blocks for reuse; `PROTEIN_PERFORMER_MALLOC=system` turns it off).",
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


def setting(args: argparse.Namespace) -> str:
    """Device, precision, threads, batch and model of a run, for the reports' first line."""
    precision = "bf16 autocast" if args.device == "cuda" else "fp32"
    model = (f"tiny config {QUICK_CONFIG}" if args.quick
             else "default PerformerConfig (dim 512, depth 6, heads 8, ff_mult 4, m=256, rotary)")
    return f"device {args.device}, {precision}, {args.threads} threads, batch 1, {model}, AdamW"


def peak_definition(device: str) -> str:
    if device == "cuda":
        return "torch.cuda.max_memory_allocated during the timed steps over what was allocated before them"
    return ("VmHWM during the timed steps - VmRSS before them (free heap returned to the kernel and the peak "
            "counter reset first)")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=_ints, default=[1024, 8192, 32768], help="comma-separated L")
    parser.add_argument("--repeats", type=int, default=2, help="timed steps per cell after one warm-up")
    parser.add_argument("--single-step-length", type=int, default=32768, help="from this L on, 1 timed step")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--mem-cap-gib", type=float, default=14.0, help="address-space cap of each case process")
    parser.add_argument("--budget-s", type=float, default=1500.0, help="skip cells predicted to end after this")
    parser.add_argument("--time-cap-s", type=float, default=600.0, help="skip a cell predicted slower per step")
    parser.add_argument("--probe-cap-s", type=float, default=120.0, help="time cap of one longest-length probe")
    parser.add_argument("--probe-max", type=int, default=131072, help="longest length to probe")
    parser.add_argument("--no-probe", action="store_true", help="skip the longest-length search")
    parser.add_argument("--out-md", type=Path, default=None, help="write the results block into this markdown file")
    parser.add_argument("--out-json", type=Path, default=None, help="raw cells")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny config, L=128,256, probes to 1024")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: bf16 autocast")
    parser.add_argument("--bound", action="store_true",
                        help="instead of the sweep: Performer-Softmax (masked, causal) vs attention that returns V")
    parser.add_argument("--rounds", type=int, default=5, help="--bound: turns each model takes per L")
    parser.add_argument("--long-rounds", type=int, default=2, help="--bound: rounds from --single-step-length on")
    parser.add_argument("--ckpt-from", type=int, default=32768,
                        help="--bound: activation checkpointing (all models) from this L on; 0: never")
    parser.add_argument("--precision", action="store_true",
                        help="instead of the sweep: fp32 vs bf16-mixed step time of the --configs' shapes")
    parser.add_argument("--configs", default="demo,performer_softmax_mlm",
                        help="--precision: comma-separated names of configs/NAME.yaml")
    parser.add_argument("--profile", type=int, default=0, help="--precision: print the top N ops of a bf16 step")
    parser.add_argument("--case", default=None, choices=list(CASES), help=argparse.SUPPRESS)  # worker mode
    parser.add_argument("--bound-case", action="store_true", help=argparse.SUPPRESS)  # worker mode, --bound
    parser.add_argument("--case-length", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--case-ckpt", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--timed", type=int, default=2, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = create_parser().parse_args(argv)
    if args.case is not None or args.bound_case:
        keep_freed_memory()  # as every protein-performer command does (PROTEIN_PERFORMER_MALLOC=system: off)
        run_worker(args)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.quick:
        args.lengths, args.probe_max, args.repeats, args.rounds = [128, 256], 1024, 1, 1
    args.deadline = time.monotonic() + args.budget_s
    command = "python scripts/bench_train.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.precision:
        keep_freed_memory()  # as every protein-performer command does
        torch.set_num_threads(args.threads)
        results = []
        for name in ["demo"] if args.quick else args.configs.split(","):
            length = config_shape(name)[2]
            results.append(run_precision(name, rounds=args.long_rounds if length >= TARGET_L else args.rounds,
                                         profile_rows=args.profile, device=args.device))
            log.info("%s: %s", name, "; ".join(f"{p} {', '.join(f'{t:.3f}' for t in s)} s"
                                               for p, s in results[-1]["seconds"].items()))
        if args.out_json:
            args.out_json.write_text(json.dumps({"command": command, "precision": results}, indent=1))
        block = precision_report(results, args, command)
        if args.out_md:
            write_marked_block(args.out_md, block, "bench_train_precision", "Training-step benchmark")
        print(block)
        for r in results:
            if r["profile"]:
                print(f"\nOne bf16-mixed step of {r['config']}, ops by self CPU time:\n{r['profile']}")
        return
    if args.bound:
        rows = bound_sweep(args)
        if args.out_json:
            args.out_json.write_text(json.dumps({"command": command, "bound": [asdict(r) for r in rows]}, indent=1))
        block = bound_report(rows, args, command)
        if args.out_md:
            write_marked_block(args.out_md, block, "bench_train_bound", "Training-step benchmark")
        print(block)
        return
    cells = sweep(args)
    probes: dict[str, list[Cell]] = {}
    if not args.no_probe:
        probes["softmax"] = probe(args, cells, "softmax", force_ckpt=True)
        probes["exact"] = probe(args, cells, "exact", force_ckpt=False)
    if args.out_json:
        args.out_json.write_text(json.dumps({
            "command": command, "cells": [asdict(c) for c in cells],
            "probes": {k: [asdict(c) for c in v] for k, v in probes.items()},
        }, indent=1))
    block = report(cells, probes, args, command)
    if args.out_md:
        write_marked_block(args.out_md, block, "bench_train", "Training-step benchmark")
    print(block)


if __name__ == "__main__":
    main()
