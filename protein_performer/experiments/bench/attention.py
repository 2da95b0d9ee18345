"""Attention benchmark: FAVOR+ vs exact SDPA vs performer-pytorch, forward + backward (Fig. 3 of the paper).

For each sequence length L and implementation, one forward + backward pass of attention on
q, k, v of shape (B=1, H=8, L, D=64), m=256 random features, fp32 (bf16 autocast on CUDA).
On CPU every (implementation, L) case runs in a fresh process of this module (``--case``), so its
peak memory is its own: ``VmHWM - VmRSS`` after creating the inputs. On CUDA (``--device cuda``)
the cases run in this process, the device synchronised around each timer, and the peak is
``torch.cuda.max_memory_allocated`` minus the inputs. Competitors are interleaved: for each L,
each repeat runs every implementation once (in rotating order) and the minimum time is kept.

A case is skipped at L (and above) when extrapolation from the smaller lengths predicts one
run longer than ``--time-cap-s`` or more memory than ``--mem-cap-gib``.

    python scripts/bench_attention.py [--lengths 1024,...,65536] [--repeats 3] [--threads 2]
        [--device cpu|cuda] [--out-md docs/benchmarks/attention.md]
        [--out-png docs/figures/attention_time.png] [--quick]

The measuring (worker and sweep) is in :mod:`.attention_sweep`; the markdown block, the plots and the
JSON of the cells are in :mod:`.attention_report`. ``scripts/bench_attention.py`` runs :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from protein_performer.experiments.bench.attention_report import load_json, plot, report, save_json
from protein_performer.experiments.bench.attention_sweep import IMPLS, run_case, run_matmul, sweep
from protein_performer.experiments.machine import write_marked_block


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
        save_json(args.out_json, cells, matmul, args, command)
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
