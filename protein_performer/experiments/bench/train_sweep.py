"""The default mode of ``scripts/bench_train.py`` (:mod:`.train`): tokens/s and peak memory of one training step of
the full protein LM, Performer vs exact, at every (model, L), then the longest length that fits.

Models are the default :class:`PerformerConfig` (dim 512, depth 6, heads 8, ff_mult 4, m=256,
rotary) with ``attention`` = softmax / relu / exact (:data:`CASES`). Every (model, L) cell runs in a
fresh process (``--case``, :func:`run_case`) whose address space is capped (``RLIMIT_AS`` =
``--mem-cap-gib``): an allocation failure there is reported as OOM. Peak memory is the step's own:
the kernel's peak-RSS counter is reset (``/proc/self/clear_refs``) after the model, optimizer and
inputs exist, and ``VmHWM - VmRSS(before)`` is reported; the whole process's ``VmHWM`` is reported
too. Each cell first runs without activation checkpointing; when extrapolation from the shorter
lengths predicts more than the cap, or the run hits OOM, it is (re)run with ``checkpointing=True``.
Cells predicted to take longer than ``--time-cap-s`` per step are skipped. Models are interleaved:
the order rotates from one length to the next.

Afterwards (:func:`probe`) the longest power-of-two length whose single forward + backward fits the
memory cap within ``--probe-cap-s`` is searched for Performer-Softmax (checkpointing) and the exact
baseline.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from protein_performer.experiments.bench.common import BestOfRepeats, PeakMemory, targets_table, time_call
from protein_performer.experiments.bench.train_common import (
    CASES,
    GIB,
    TARGET_L,
    WARMUP_LENGTH,
    fmt_gib,
    make_batch,
    make_model,
    peak_definition,
    setting,
    spawn,
    training_step,
)
from protein_performer.experiments.machine import machine_description, peak_rss_bytes, write_marked_block
from protein_performer.experiments.report.tables import md_table

log = logging.getLogger("bench_train")


# ----------------------------------------------------------------------------- worker side


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


# ----------------------------------------------------------------------------- reporting


def results_table(cells: list[Cell], lengths: list[int]) -> str:
    body = []
    for length in lengths:
        for case in CASES:
            c = next((c for c in cells if c.case == case and c.length == length), None)
            if c is None:
                continue
            if c.time is None:
                body.append([CASES[case][0], length, "", c.skipped, "", "", "", c.note])
                continue
            times = f"{c.time:.2f} / {statistics.median(c.seconds):.2f} (n={len(c.seconds)})"
            body.append([CASES[case][0], length, "yes" if c.checkpointing else "no", f"{c.tokens_per_s:,.0f}", times,
                         fmt_gib(c.step_peak_bytes), fmt_gib(c.process_peak_bytes), c.note])
    return md_table(["model", "L", "ckpt", "tokens/s", "step s (min / median)", "step peak GiB", "process peak GiB",
                     "note"], body, align="lrlrrrrl")


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
    out = []
    for name, a, b, goal in rows:
        wanted = f">= {goal:g}x" if goal else ""
        if a is None or not b:
            out.append((name, "n/a", wanted, "n/a"))
            continue
        r = a / b
        out.append((name, f"{r:.2f}x", wanted, "" if goal is None else ("PASS" if r >= goal else "MISS")))
    return targets_table(out)


def probe_table(probes: dict[str, list[Cell]], args: argparse.Namespace) -> str:
    body = []
    for case, cells in probes.items():
        for c in cells:
            if c.time is None:
                body.append([CASES[case][0], c.length, "", "", "", "", f"{c.skipped} {c.note}"])
            else:
                result = "fits" if not c.skipped else c.skipped
                body.append([CASES[case][0], c.length, "yes" if c.checkpointing else "no", f"{c.time:.1f}",
                             fmt_gib(c.step_peak_bytes), fmt_gib(c.process_peak_bytes), f"{result} {c.note}"])
    return md_table(["model", "L", "ckpt", "fwd+bwd s", "step peak GiB", "process peak GiB", "result"], body,
                    align="lrlrrrl")


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
        (f"Measured {datetime.date.today().isoformat()} on {machine_description(args.device)}; {setting(args)}. "
        f"Fresh process per cell, {cap}; min (and median) of {args.repeats} timed steps (1 at L >= "
        f"{args.single_step_length}) after one warm-up step at L = min(L, {WARMUP_LENGTH}). Step peak = "
        f"{peak_definition(args.device)}, so it covers activations, gradients and transients; process peak = "
        f"{process}. Cells are skipped when predicted past the {args.budget_s:g} s run budget."),
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
        lines += ["", (f"Longest length (powers of two up to {args.probe_max}) whose forward + backward fits "
                  f"{args.mem_cap_gib:g} GiB within {args.probe_cap_s:g} s:"), "",
                  probe_table(probes, args), ""]
        lines += [f"- {CASES[case][0]}{' (checkpointing)' if case != 'exact' else ''}: "
                  f"{longest_fit(cells, p, case, args.probe_cap_s)}" for case, p in probes.items()]
    return "\n".join(lines)


def run(args: argparse.Namespace, command: str) -> None:
    """The sweep, then (unless ``--no-probe``) the longest-length probes; writes ``--out-json`` and the
    ``bench_train`` block of ``--out-md``, and prints the block."""
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
