"""The measuring side of :mod:`.attention` (``scripts/bench_attention.py``): one forward + backward pass of
attention per (implementation, L) and the interleaved sweep over lengths that skips what would not fit.

A case is q, k, v of shape (B=1, H=8, L, D=64), m=256 random features, fp32 (bf16 autocast on CUDA).
On CPU every case runs in a fresh process of :mod:`.attention` (``--case``), so its peak
memory is its own: ``VmHWM - VmRSS`` after creating the inputs. On CUDA the cases run in this
process, the device synchronised around each timer, and the peak is ``torch.cuda.max_memory_allocated``
minus the inputs. For each L, each repeat runs every implementation once (in rotating order) and the
minimum time is kept. A case is skipped at L (and above) when extrapolation from the smaller lengths
predicts one run longer than ``--time-cap-s`` or more memory than ``--mem-cap-gib``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from protein_performer.experiments.bench.common import BestOfRepeats, PeakMemory, autocast, time_call

ENTRY_POINT = "protein_performer.experiments.bench.attention"  # the module a worker process runs
B, H, D, M = 1, 8, 64, 256
MATMUL_N = 4096
TARGET_L, LONG_L = 8192, 65536

log = logging.getLogger("bench_attention")

# name -> column label; the order is the table's column order.
IMPLS: dict[str, str] = {
    "favor": "FAVOR+ softmax",
    "favor_causal": "FAVOR+ softmax causal",
    "favor_relu": "FAVOR+ ReLU",
    "favor_relu_causal": "FAVOR+ ReLU causal",
    "sdpa": "SDPA exact",
    "sdpa_causal": "SDPA exact causal",
    "performer": "performer-pytorch",
    "performer_causal": "performer-pytorch causal",
}
# Time complexity exponent in L: used for the time extrapolation (measured slopes are too noisy on a
# shared machine) and as the first memory exponent, before two points exist.
DEFAULT_EXPONENT = {name: (2.0 if name.startswith("sdpa") else 1.0) for name in IMPLS}


@dataclass
class CaseResult:
    """One fresh-process run of one implementation at one length."""

    impl: str
    length: int
    seconds: float  # min over the timed runs of forward + backward
    peak_bytes: int  # peak memory above the inputs
    note: str = ""


@dataclass
class Cell(BestOfRepeats):
    """All repeats of one (impl, L), or the reason it was not run."""

    seconds: list[float] = field(default_factory=list)
    peak_bytes: list[int] = field(default_factory=list)
    skipped: str = ""
    note: str = ""

    @property
    def peak(self) -> int | None:
        return max(self.peak_bytes) if self.peak_bytes else None


# ----------------------------------------------------------------------------- worker side


def make_attention(impl: str, device: str) -> tuple[Callable, str]:
    """A callable ``(q, k, v) -> out`` on (B, H, L, D) tensors, and a note on what it does."""
    import torch

    from protein_performer.attention import (
        exact_attention,
        favor_attention,
        gaussian_orthogonal_matrix,
    )

    if impl.startswith("favor"):
        projection = gaussian_orthogonal_matrix(M, D, generator=torch.Generator().manual_seed(0), device=device)
        kernel = "relu" if "relu" in impl else "softmax"
        causal = impl.endswith("causal")
        return (lambda q, k, v: favor_attention(q, k, v, projection, kernel=kernel, causal=causal)), ""
    if impl.startswith("sdpa"):
        causal = impl.endswith("causal")
        return (lambda q, k, v: exact_attention(q, k, v, causal=causal)), ""
    if impl.startswith("performer"):
        from performer_pytorch import FastAttention

        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):  # it prints when it falls back to the non-CUDA causal path
            module = FastAttention(dim_heads=D, nb_features=M, causal=impl.endswith("causal")).to(device)
        note = "fallback: causal_linear_attention_noncuda" if "unable to import" in printed.getvalue() else ""
        return module, note
    raise ValueError(f"unknown implementation {impl!r}; choose from {', '.join(IMPLS)}")


def run_case(impl: str, length: int, device: str, threads: int, timed: int) -> CaseResult:
    """Warm-up + ``timed`` forward/backward passes; returns the best time and the peak memory above
    the inputs (bf16 autocast on CUDA, the device synchronised around every timer)."""
    import torch

    torch.set_num_threads(threads)
    fn, note = make_attention(impl, device)
    gen = torch.Generator(device=device).manual_seed(1)
    q, k, v = (torch.randn(B, H, length, D, device=device, generator=gen).requires_grad_() for _ in range(3))
    grad_out = torch.randn(B, H, length, D, device=device, generator=gen)

    def step() -> None:
        for t in (q, k, v):
            t.grad = None
        with autocast(device):
            out = fn(q, k, v)
        out.backward(grad_out.to(out.dtype))

    with PeakMemory(device) as peak:
        first = time_call(step, device)
        seconds = [time_call(step, device) for _ in range(timed)] or [first]
    return CaseResult(impl, length, min(seconds), peak.bytes or 0, note)


def run_matmul(device: str, threads: int) -> float:
    """GFLOP/s of one fp32 ``(N, N) @ (N, N)`` (best of three) with ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(MATMUL_N, MATMUL_N, device=device), torch.randn(MATMUL_N, MATMUL_N, device=device)
    best = min(time_call(lambda: a @ b, device) for _ in range(4))  # the first is a warm-up
    return 2 * MATMUL_N**3 / best / 1e9


def run_in_process(impl: str, length: int, args: argparse.Namespace) -> dict:
    """One case in this process (CUDA: the allocator's peak is per case, no fresh process needed)."""
    import torch

    try:
        if impl == "matmul":
            return {"gflops": run_matmul(args.device, args.threads)}
        return asdict(run_case(impl, length, args.device, args.threads, args.timed))
    except torch.cuda.OutOfMemoryError:
        return {"error": "OOM"}
    finally:
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- driver side


def spawn(args: argparse.Namespace, case: str, length: int, timeout_s: float) -> dict:
    """Run ``--case`` of :mod:`.attention` in a fresh interpreter (on CUDA: in this
    process); returns its JSON, or ``{"error": ...}``."""
    if args.device == "cuda":
        return run_in_process(case, length, args)
    cmd = [sys.executable, "-m", ENTRY_POINT, "--case", case, "--case-length", str(length),
           "--device", args.device, "--threads", str(args.threads), "--timed", str(args.timed)]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout >{timeout_s:.0f} s"}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        reason = "OOM (killed)" if proc.returncode in (-9, 137) else tail[0]
        return {"error": reason}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def extrapolate(points: list[tuple[int, float]], length: int, default_exponent: float, *, fit: bool) -> float:
    """Value at ``length`` from the last (L, value) point with ``default_exponent``, or with ``fit`` the
    log-log slope of the last two points (clipped to [1, 2.2])."""
    (l1, y1) = points[-1]
    exponent = default_exponent
    if fit and len(points) >= 2:
        l0, y0 = points[-2]
        if y0 > 0 and y1 > 0:
            exponent = min(2.2, max(1.0, math.log(y1 / y0) / math.log(l1 / l0)))
    return y1 * (length / l1) ** exponent


def skip_reason(impl: str, length: int, cells: dict[tuple[str, int], Cell], args: argparse.Namespace) -> str:
    """Why ``impl`` should not run at ``length``, from its smaller lengths; '' to run it."""
    done = sorted((L, c) for (name, L), c in cells.items() if name == impl and L < length)
    if any(c.skipped for _, c in done):
        return next(c.skipped for _, c in done if c.skipped)
    measured = [(L, c) for L, c in done if c.time is not None]
    if not measured:
        return ""
    t = extrapolate([(L, c.time) for L, c in measured], length, DEFAULT_EXPONENT[impl], fit=False)
    mem = extrapolate([(L, max(c.peak, 1)) for L, c in measured], length, DEFAULT_EXPONENT[impl], fit=True)
    if mem > args.mem_cap_gib * 2**30:
        return f"OOM/skipped (est. {mem / 2**30:.0f} GiB)"
    if t > args.time_cap_s:
        return f"skipped (est. {t:.0f} s)"
    return ""


def sweep(args: argparse.Namespace, impls: list[str]) -> tuple[dict[tuple[str, int], Cell], list[float]]:
    """All (impl, L) cells, interleaved by repeat, plus the matmul GFLOP/s measured alongside."""
    cells: dict[tuple[str, int], Cell] = {}
    matmul: list[float] = []
    target = TARGET_L if TARGET_L in args.lengths else max(args.lengths)
    for length in args.lengths:
        for impl in impls:
            cells[(impl, length)] = Cell(skipped=skip_reason(impl, length, cells, args))
            if cells[(impl, length)].skipped:
                log.info("L=%d %s: %s", length, impl, cells[(impl, length)].skipped)
        for rep in range(args.repeats):
            order = impls[rep % len(impls):] + impls[: rep % len(impls)]  # rotate to spread drift
            for impl in order:
                cell = cells[(impl, length)]
                if cell.skipped or cell.note.startswith("error"):
                    continue
                if rep > 0 and cell.time is not None and cell.time > args.long_run_s:
                    continue  # one repeat is enough for runs this long
                res = spawn(args, impl, length, timeout_s=max(60.0, 3 * (args.timed + 1) * args.time_cap_s))
                if "error" in res:
                    cell.skipped = res["error"]
                    log.warning("L=%d %s: %s", length, impl, res["error"])
                    continue
                cell.seconds.append(res["seconds"])
                cell.peak_bytes.append(res["peak_bytes"])
                cell.note = res["note"]
                log.info("L=%d rep %d %s: %.3f s, %.0f MiB", length, rep, impl, res["seconds"],
                         res["peak_bytes"] / 2**20)
            if length == target:
                res = spawn(args, "matmul", 0, timeout_s=300)
                if "gflops" in res:
                    matmul.append(res["gflops"])
                    log.info("matmul %d^3: %.1f GFLOP/s", MATMUL_N, res["gflops"])
    return cells, matmul
