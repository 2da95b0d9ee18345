"""Throughput of ProteinDataModule: windows/s and tokens/s served to the training loop.

Prepares the E. coli proteome once (``protein_performer.corpus.prepare.prepare``, into a temporary
directory unless ``--data-dir`` is given), then iterates the train dataloader for whole epochs
(calling ``set_epoch`` between them, as Lightning does, so worker start-up is counted) and
prints a markdown table (the one in ``docs/benchmarks/data_serving.md``).

    python scripts/bench_datamodule.py                     # MLM, L=8192, batch 1, workers 0 and 2
    python scripts/bench_datamodule.py --max-length 65536 --workers 0
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning_fabric.utilities.data import _set_sampler_epoch

from protein_performer.corpus.prepare import prepare
from protein_performer.datamodule import ProteinDataModule
from protein_performer.experiments import places
from protein_performer.experiments.report.tables import md_table

log = logging.getLogger("bench_datamodule")


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fasta", type=Path, default=places.ecoli(), help="proteome to serve (default: shared E. coli)")
    parser.add_argument("--data-dir", type=Path, help="prepared dataset to use (or create); default: a temp dir")
    parser.add_argument("--objective", default="mlm", choices=("mlm", "clm"))
    parser.add_argument("--max-length", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="num_workers values to measure")
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum time per measurement")
    return parser


def prepare_data(fasta: Path, out: Path) -> None:
    if (out / "manifest.json").is_file():
        return
    prepare([fasta], out)


def measure(dm: ProteinDataModule, seconds: float) -> dict[str, float]:
    """Rates over whole epochs lasting at least ``seconds`` in total.

    ``windows/s``, ``tokens/s``: everything counted (worker start-up each epoch included);
    ``steady windows/s``: from each epoch's first batch on (start-up and first batch excluded).
    """
    loader = dm.train_dataloader()
    windows = tokens = steady_windows = epoch = 0
    steady_time = 0.0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        _set_sampler_epoch(loader, epoch)
        first = None
        for batch in loader:
            if first is None:
                first = time.perf_counter()
            else:
                steady_windows += batch["input_ids"].shape[0]
            windows += batch["input_ids"].shape[0]
            tokens += batch["input_ids"].numel()
        steady_time += time.perf_counter() - (first or time.perf_counter())
        epoch += 1
    elapsed = time.perf_counter() - start
    return {"windows/s": windows / elapsed, "tokens/s": tokens / elapsed, "windows": windows,
            "steady windows/s": steady_windows / steady_time, "epochs": epoch}


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or Path(tmp) / "ecoli"
        prepare_data(args.fasta, data_dir)
        rows = []
        for workers in args.workers:
            dm = ProteinDataModule(str(data_dir), objective=args.objective, window_tokens=args.max_length,
                                   batch_size=args.batch_size, num_workers=workers, seed=0)
            dm.setup("fit")
            log.info("measuring num_workers=%d (%d windows per epoch)", workers, len(dm.dataset("train")))
            rows.append((workers, measure(dm, args.seconds)))
    print(f"{args.objective.upper()}, L={args.max_length}, batch {args.batch_size}; "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads\n")
    print(md_table(["num_workers", "windows/s", "tokens/s", "steady windows/s (no start-up)",
                    "windows timed (epochs)"],
                   [[workers, f"{r['windows/s']:,.0f}", f"{r['tokens/s'] / 1e6:,.1f} M",
                     f"{r['steady windows/s']:,.0f}", f"{r['windows']:,} ({r['epochs']})"] for workers, r in rows],
                   align="rrrrr"))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(create_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
