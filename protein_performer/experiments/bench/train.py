"""Training-step benchmark: tokens/s and peak memory of the full protein LM, Performer vs exact.

One training step = forward + cross-entropy + backward + AdamW step, fp32, batch 1, random token
ids in 5..24 (amino acids); models, batches and the step are in :mod:`.train_common`. This
module parses the command line and runs one of three modes, each in a module of its own:

- the sweep (default, :mod:`.train_sweep`): every (model, L) cell of Performer-Softmax,
  Performer-ReLU and exact attention, masked and causal, in a fresh process under an address-space
  cap, checkpointing when predicted or found necessary; then the longest length that fits.
- ``--bound`` (:mod:`.train_bound`): Performer-Softmax, masked and causal, against the same
  model whose attention returns V (the paper's bound), taking turns in one process per L.
- ``--precision`` (:mod:`.train_precision`): float32 against ``bf16-mixed`` for the shapes of
  ``configs/demo.yaml`` and ``configs/performer_softmax_mlm.yaml``, in this process.

The sweep and the bound measure in fresh processes of this module (``--case``, ``--bound-case``).
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
import json
import logging
import resource
import sys
import time
from pathlib import Path

from protein_performer.allocator import keep_freed_memory
from protein_performer.experiments.bench import train_bound, train_precision, train_sweep
from protein_performer.experiments.bench.train_common import CASES, GIB


def run_worker(args: argparse.Namespace) -> None:
    """``--case`` / ``--bound-case``: measure in this process, under the address-space cap on CPU;
    the last stdout line is JSON."""
    if args.device == "cpu":  # CUDA reserves far more address space than it uses: no cap there
        cap = int(args.mem_cap_gib * GIB)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        if args.bound_case:
            result = train_bound.run_bound(args.case_length, rounds=args.timed, checkpointing=args.case_ckpt,
                                                 quick=args.quick, threads=args.threads, device=args.device)
        else:
            result = train_sweep.run_case(args.case, args.case_length, checkpointing=args.case_ckpt,
                                                timed=args.timed, probe=args.probe, quick=args.quick,
                                                threads=args.threads, device=args.device)
    except MemoryError:
        result = {"oom": True}
    except RuntimeError as exc:  # torch reports a failed allocation (CPU or CUDA) as RuntimeError
        if "alloc" not in str(exc).lower() and "memory" not in str(exc).lower():
            raise
        result = {"oom": True}
    print(json.dumps(result))


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
    mode = train_precision if args.precision else train_bound if args.bound else train_sweep
    mode.run(args, command)


if __name__ == "__main__":
    main()
