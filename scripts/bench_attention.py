"""Attention benchmark: FAVOR+ vs exact SDPA vs performer-pytorch, forward + backward (Fig. 3 of the paper).

For each sequence length L and implementation, one forward + backward pass of attention on
q, k, v of shape (B=1, H=8, L, D=64), m=256 random features, fp32 (bf16 autocast on CUDA).
On CPU every (implementation, L) case runs in a fresh subprocess of this script (``--case``), so its
peak memory is its own: ``VmHWM - VmRSS`` after creating the inputs. On CUDA (``--device cuda``)
the cases run in this process, the device synchronised around each timer, and the peak is
``torch.cuda.max_memory_allocated`` minus the inputs. Competitors are interleaved: for each L,
each repeat runs every implementation once (in rotating order) and the minimum time is kept.

A case is skipped at L (and above) when extrapolation from the smaller lengths predicts one
run longer than ``--time-cap-s`` or more memory than ``--mem-cap-gib``.

    python scripts/bench_attention.py [--lengths 1024,...,65536] [--repeats 3] [--threads 2]
        [--device cpu|cuda] [--out-md docs/benchmarks/attention.md]
        [--out-png docs/figures/attention_time.png] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import logging
import math
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
B, H, D, M = 1, 8, 64, 256
MATMUL_N = 4096
TARGET_L, LONG_L = 8192, 65536

from bench_common import (  # noqa: E402  (scripts/)
    BestOfRepeats, PeakMemory, autocast, machine_description, time_call, write_marked_block)

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

    from protein_performer.attention import exact_attention, favor_attention, gaussian_orthogonal_matrix

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
    """Run ``--case`` in a fresh interpreter (on CUDA: in this process); returns its JSON, or
    ``{"error": ...}``."""
    if args.device == "cuda":
        return run_in_process(case, length, args)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", case, "--case-length", str(length),
           "--device", args.device, "--threads", str(args.threads), "--timed", str(args.timed)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=REPO_ROOT)
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


def favor_flops(length: int) -> float:
    """Analytic FLOPs of bidirectional FAVOR+ forward + backward (backward counted as 2x forward)."""
    features = 2 * (2 * length * D * M)  # q and k projections
    products = 2 * (2 * length * M * (D + 1))  # K^T [V 1] and Q (K^T [V 1])
    return 3 * H * B * (features + products)


# ----------------------------------------------------------------------------- reporting


def _fmt_cell(cell: Cell | None) -> str:
    if cell is None:
        return ""
    if cell.time is None:
        return cell.skipped or "n/a"
    return f"{cell.time:.3g} s / {cell.peak / 2**20:,.0f} MiB"


def results_table(cells: dict[tuple[str, int], Cell], impls: list[str], lengths: list[int]) -> str:
    """Markdown: one row per L, one column per implementation (time / peak memory)."""
    lines = ["| L | " + " | ".join(IMPLS[i] for i in impls) + " |", "|---:|" + "---:|" * len(impls)]
    for length in lengths:
        lines.append(f"| {length} | " + " | ".join(_fmt_cell(cells.get((i, length))) for i in impls) + " |")
    return "\n".join(lines)


def targets(cells: dict[tuple[str, int], Cell], matmul: list[float]) -> list[tuple[str, str, str, str]]:
    """(criterion, measured, target, PASS/MISS/n/a) rows, at L = 8192 and 65536."""

    def t(impl: str, length: int = TARGET_L) -> float | None:
        cell = cells.get((impl, length))
        return cell.time if cell else None

    def p(impl: str, length: int) -> int | None:
        cell = cells.get((impl, length))
        return cell.peak if cell else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    def speedup(slow: str, fast: str) -> tuple[str, float | None]:
        """t(slow) / t(fast) at TARGET_L, else at the largest L where both ran (named in the label)."""
        if ratio(t(slow), t(fast)) is not None:
            return f"@{TARGET_L}", ratio(t(slow), t(fast))
        both = [L for (i, L), c in cells.items() if i == slow and c.time is not None and t(fast, L) is not None]
        if not both:
            return f"@{TARGET_L}", None
        L = max(both)
        why = cells[(slow, TARGET_L)].skipped if (slow, TARGET_L) in cells else "not run"
        return f"@{L} ({TARGET_L}: {why or 'n/a'})", ratio(t(slow, L), t(fast, L))

    at1, r1 = speedup("sdpa", "favor")
    at2, r2 = speedup("performer", "favor")
    at3, r3 = speedup("sdpa_causal", "favor_causal")
    at4, r4 = speedup("performer_causal", "favor_causal")
    rows: list[tuple[str, float | None, str, Callable[[float], bool]]] = [
        (f"bid. FAVOR+ vs SDPA speed-up {at1}", r1, ">= 3x", lambda x: x >= 3),
        (f"bid. FAVOR+ vs performer-pytorch {at2}", r2, ">= 2x", lambda x: x >= 2),
        (f"causal FAVOR+ vs SDPA causal {at3}", r3, ">= 2.5x", lambda x: x >= 2.5),
        (f"causal FAVOR+ vs performer-pytorch causal {at4}", r4, ">= 20x", lambda x: x >= 20),
        (f"causal / bid. FAVOR+ time @{TARGET_L}", ratio(t("favor_causal"), t("favor")), "<= 1.3x",
         lambda x: x <= 1.3),
        (f"peak({LONG_L}) / peak({TARGET_L}) FAVOR+ bid.", ratio(p("favor", LONG_L), p("favor", TARGET_L)), "<= 9",
         lambda x: x <= 9),
        (f"peak({LONG_L}) / peak({TARGET_L}) FAVOR+ causal",
         ratio(p("favor_causal", LONG_L), p("favor_causal", TARGET_L)), "<= 9", lambda x: x <= 9),
        (f"FAVOR+ causal peak @{LONG_L} (GiB)", ratio(p("favor_causal", LONG_L), 2**30), "< 4",
         lambda x: x < 4),
    ]
    gflops = favor_flops(TARGET_L) / t("favor") / 1e9 if t("favor") else None
    best_matmul = max(matmul) if matmul else None
    rows.append((f"FAVOR+ bid. GFLOP/s / matmul GFLOP/s @{TARGET_L}", ratio(gflops, best_matmul), ">= 25%",
                 lambda x: x >= 0.25))
    out = []
    for name, value, goal, ok in rows:
        if value is None:
            out.append((name, "n/a", goal, "n/a"))
            continue
        shown = f"{100 * value:.0f}%" if goal.endswith("%") else f"{value:.2f}"
        out.append((name, shown, goal, "PASS" if ok(value) else "MISS"))
    if gflops is not None and best_matmul is not None:
        out.append(("(FAVOR+ bid. achieved / matmul GFLOP/s)", f"{gflops:.1f} / {best_matmul:.1f}", "", ""))
    return out


def targets_table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| criterion | measured | target | status |", "|---|---:|---:|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def notes(cells: dict[tuple[str, int], Cell]) -> list[str]:
    seen = sorted({(impl, c.note) for (impl, _), c in cells.items() if c.note})
    return [f"- {IMPLS[impl]}: {note}" for impl, note in seen]


def plot(cells: dict[tuple[str, int], Cell], impls: list[str], path: Path, *, memory: bool, device: str) -> None:
    """Log-log time (or peak memory) vs L, one line per implementation (cf. Fig. 3 of the paper)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.8))
    for impl in impls:
        pts = sorted((L, c.peak / 2**20 if memory else c.time) for (name, L), c in cells.items()
                     if name == impl and c.time is not None)
        if not pts:
            continue
        family = impl.removesuffix("_causal")
        color, marker = {"favor": ("C0", "o"), "favor_relu": ("C2", "s"), "sdpa": ("C3", "^"),
                         "performer": ("C7", "D")}[family]
        style = "--" if impl.endswith("causal") else "-"
        ax.plot(*zip(*pts), style, color=color, marker=marker, label=IMPLS[impl])
    ax.set_xscale("log", base=2)
    lengths = sorted({L for (_, L) in cells})
    ax.set_xticks(lengths, [f"{L // 1024}k" if L >= 1024 else str(L) for L in lengths])

    ax.set_yscale("log")
    ax.set_xlabel("sequence length L")
    ax.set_ylabel("peak memory above inputs (MiB)" if memory else "forward + backward time (s)")
    what = "Peak memory" if memory else "Time"
    ax.set_title(f"{what}: attention fwd+bwd, B={B} H={H} D={D} m={M} ({device})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    log.info("wrote %s", path)


def report(cells: dict[tuple[str, int], Cell], matmul: list[float], impls: list[str],
           args: argparse.Namespace, command: str) -> str:
    """The markdown block: date, machine, command, results table, targets, notes."""
    lines = [
        f"Measured {datetime.date.today().isoformat()} on {machine_description(args.device)}; "
        f"{args.threads} threads, device {args.device}, B={B}, H={H}, D={D}, m={M}, "
        f"{'bf16 autocast' if args.device == 'cuda' else 'fp32'}, min of {args.repeats} interleaved repeats "
        f"(1 for runs > {args.long_run_s:g} s).",
        "",
        f"Command: `{command}`",
        "",
        "Forward + backward time / peak memory above the inputs ("
        + ("fresh process per cell" if args.device == "cpu" else "one process, the CUDA allocator's peak reset per cell")
        + "):",
        "",
        results_table(cells, impls, args.lengths),
        "",
        "Targets:",
        "",
        targets_table(targets(cells, matmul)),
    ]
    extra = notes(cells)
    if extra:
        lines += ["", "Notes:", "", *extra]
    return "\n".join(lines)


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1024, 2048, 4096, 8192, 16384, 32768, 65536], help="comma-separated L")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved fresh-process repeats per cell")
    parser.add_argument("--timed", type=int, default=1, help="timed passes per process after one warm-up")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--impls", type=lambda s: s.split(","), default=list(IMPLS),
                        help=f"comma-separated subset of {','.join(IMPLS)}")
    parser.add_argument("--time-cap-s", type=float, default=60.0, help="skip a cell whose one run is predicted longer")
    parser.add_argument("--mem-cap-gib", type=float, default=12.0, help="skip a cell predicted to need more memory")
    parser.add_argument("--long-run-s", type=float, default=15.0, help="runs longer than this are not repeated")
    parser.add_argument("--out-md", type=Path, default=None, help="write the results block into this markdown file")
    parser.add_argument("--out-png", type=Path, default=None, help="log-log time-vs-length plot")
    parser.add_argument("--out-mem-png", type=Path, default=None, help="log-log peak-memory-vs-length plot")
    parser.add_argument("--out-json", type=Path, default=None, help="raw cells, for --from-json")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None,
                        help="re-render from earlier --out-json files (later files fill or replace cells)")
    parser.add_argument("--quick", action="store_true", help="smoke run: L=256,512, 1 repeat")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # worker mode
    parser.add_argument("--case-length", type=int, default=0, help=argparse.SUPPRESS)
    return parser


def load_json(paths: list[Path]) -> tuple[dict[tuple[str, int], Cell], list[float], list[str]]:
    """Cells, matmul GFLOP/s and commands of ``--out-json`` files; a measured cell replaces a skipped one."""
    cells: dict[tuple[str, int], Cell] = {}
    matmul: list[float] = []
    commands: list[str] = []
    for path in paths:
        raw = json.loads(path.read_text())
        commands.append(raw["command"])
        if TARGET_L in raw["lengths"]:  # matmul runs beside the TARGET_L round: same machine load
            matmul += raw["matmul"]
        for c in raw["cells"]:
            cell = Cell(c["seconds"], c["peak_bytes"], c["skipped"], c["note"])
            key = (c["impl"], c["length"])
            if key not in cells or cell.time is not None:
                cells[key] = cell
    return cells, matmul, commands


def run_worker(args: argparse.Namespace) -> None:
    """``--case``: measure one cell in this fresh process and print its JSON on the last line."""
    if args.case == "matmul":
        print(json.dumps({"gflops": run_matmul(args.device, args.threads)}))
        return
    print(json.dumps(asdict(run_case(args.case, args.case_length, args.device, args.threads, args.timed))))


def main(argv: list[str] | None = None) -> None:
    args = create_parser().parse_args(argv)
    if args.case is not None:
        from protein_performer.allocator import keep_freed_memory

        keep_freed_memory()  # as every protein-performer command does (PROTEIN_PERFORMER_MALLOC=system: off)
        run_worker(args)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.quick:
        args.lengths, args.repeats = [256, 512], 1
    unknown = [i for i in args.impls if i not in IMPLS]
    if unknown:
        raise SystemExit(f"--impls: unknown {unknown}; choose from {', '.join(IMPLS)}")
    impls = [i for i in IMPLS if i in args.impls]
    command = "python scripts/bench_attention.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.from_json:
        cells, matmul, commands = load_json(args.from_json)
        command = " && ".join(commands)
        args.lengths = sorted({L for _, L in cells})
    else:
        cells, matmul = sweep(args, impls)
    if args.out_json:
        args.out_json.write_text(json.dumps({
            "command": command, "lengths": args.lengths, "matmul": matmul, "repeats": args.repeats,
            "threads": args.threads,
            "cells": [{"impl": i, "length": L, **asdict(c)} for (i, L), c in cells.items()],
        }, indent=1))
    block = report(cells, matmul, impls, args, command)
    if args.out_png:
        plot(cells, impls, args.out_png, memory=False, device=args.device)
    if args.out_mem_png:
        plot(cells, impls, args.out_mem_png, memory=True, device=args.device)
    if args.out_md:
        write_marked_block(args.out_md, block, "bench_attention", "Attention benchmarks")
    print(block)


if __name__ == "__main__":
    main()
