"""The reporting side of :mod:`.attention` (``scripts/bench_attention.py``): the markdown block (results table, the
targets at L = 8192 and 65536, notes), the log-log plots of time and peak memory against L (cf.
Fig. 3 of the paper), and the raw cells as JSON, which ``--from-json`` renders again."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from protein_performer.experiments.bench.common import targets_table
from protein_performer.experiments.bench.attention_sweep import IMPLS, LONG_L, TARGET_L, B, Cell, D, H, M
from protein_performer.experiments.machine import machine_description
from protein_performer.experiments.report.tables import md_table

log = logging.getLogger("bench_attention")


def favor_flops(length: int) -> float:
    """Analytic FLOPs of bidirectional FAVOR+ forward + backward (backward counted as 2x forward)."""
    features = 2 * (2 * length * D * M)  # q and k projections
    products = 2 * (2 * length * M * (D + 1))  # K^T [V 1] and Q (K^T [V 1])
    return 3 * H * B * (features + products)


def _fmt_cell(cell: Cell | None) -> str:
    if cell is None:
        return ""
    if cell.time is None:
        return cell.skipped or "n/a"
    return f"{cell.time:.3g} s / {cell.peak / 2**20:,.0f} MiB"


def results_table(cells: dict[tuple[str, int], Cell], impls: list[str], lengths: list[int]) -> str:
    """Markdown: one row per L, one column per implementation (time / peak memory)."""
    return md_table(["L", *(IMPLS[i] for i in impls)],
                    [[length, *(_fmt_cell(cells.get((i, length))) for i in impls)] for length in lengths],
                    align="r" * (len(impls) + 1))


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
        (f"Measured {datetime.date.today().isoformat()} on {machine_description(args.device)}; "
        f"{args.threads} threads, device {args.device}, B={B}, H={H}, D={D}, m={M}, "
        f"{'bf16 autocast' if args.device == 'cuda' else 'fp32'}, min of {args.repeats} interleaved repeats "
        f"(1 for runs > {args.long_run_s:g} s)."),
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


def save_json(path: Path, cells: dict[tuple[str, int], Cell], matmul: list[float], args: argparse.Namespace,
              command: str) -> None:
    """The raw cells, matmul GFLOP/s and the run's settings, for ``--from-json``."""
    path.write_text(json.dumps({
        "command": command, "lengths": args.lengths, "matmul": matmul, "repeats": args.repeats,
        "threads": args.threads,
        "cells": [{"impl": i, "length": L, **asdict(c)} for (i, L), c in cells.items()],
    }, indent=1))


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
