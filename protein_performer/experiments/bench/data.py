"""Data-pipeline benchmarks; prints a markdown table (kept in docs/benchmarks/data_prepare.md).

Sections (each a function returning table rows; ``main()`` calls them in turn):

* ``bench_prepare_throughput``: ``prepare`` vs a plain ``Bio.SeqIO.parse(handle, "fasta")``
  loop over the same gzip FASTA, in uncompressed MB/s (target: ratio >= 0.5).
* ``bench_prepare_memory``: peak RSS (VmHWM) of ``prepare`` in a fresh subprocess on the file and on
  ``--copies`` concatenated copies of it (target: ratio <= 1.2, i.e. streaming).

    python scripts/bench_data.py [--fasta FILE] [--copies 50] [--output docs/benchmarks/data_prepare.md]
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from protein_performer.experiments import places
from protein_performer.experiments.report.tables import md_table


log = logging.getLogger("bench_data")
Row = tuple[str, str, str, str]  # section, metric, value, note

# Peak RSS is machine.peak_rss_bytes (VmHWM): it starts afresh in the fresh interpreter.
_MEASURE = """
import json, sys, time
from pathlib import Path
from protein_performer.experiments.machine import peak_rss_bytes
from protein_performer.corpus.prepare import prepare
def hwm_kib():
    return peak_rss_bytes() // 1024
baseline = hwm_kib()
import numpy, tqdm  # what any prepare imports, to report the data-independent part
imports = hwm_kib()
start = time.perf_counter()
manifest = prepare([Path(sys.argv[1])], Path(sys.argv[2]), progress=False)
seconds = time.perf_counter() - start
print(json.dumps({"peak_kib": hwm_kib(), "imports_kib": imports, "seconds": seconds,
                  "kept": manifest["counts"]["kept"], "residues": manifest["residues"]}))
"""


def concatenated_copies(fasta: Path, copies: int, directory: Path) -> Path:
    """``copies`` gzip members of ``fasta`` back to back (a valid multi-member gzip file)."""
    out = directory / f"{copies}x_{fasta.name}"
    data = fasta.read_bytes()
    with open(out, "wb") as fh:
        for _ in range(copies):
            fh.write(data)
    return out


def uncompressed_mb(path: Path) -> float:
    with gzip.open(path, "rb") as fh:
        return sum(len(chunk) for chunk in iter(lambda: fh.read(1 << 20), b"")) / 1e6


def _seqio_seconds(path: Path) -> float:
    from Bio import SeqIO

    start = time.perf_counter()
    with gzip.open(path, "rt") as handle:
        residues = sum(len(record.seq) for record in SeqIO.parse(handle, "fasta"))
    assert residues > 0
    return time.perf_counter() - start


def _prepare_seconds(path: Path, out: Path) -> float:
    from protein_performer.corpus.prepare import prepare

    start = time.perf_counter()
    prepare([path], out, progress=False, overwrite=True)
    seconds = time.perf_counter() - start
    shutil.rmtree(out)  # the next repeat rebuilds from scratch
    return seconds


def bench_prepare_throughput(fasta: Path, copies: int, repeats: int, workdir: Path) -> list[Row]:
    """Best-of-``repeats`` wall time of prepare and of a plain SeqIO parse over the same file."""
    path = concatenated_copies(fasta, copies, workdir) if copies > 1 else fasta
    mb = uncompressed_mb(path)
    seqio = min(_seqio_seconds(path) for _ in range(repeats))
    (workdir / "tp").mkdir()
    prep = min(_prepare_seconds(path, workdir / "tp" / "out") for _ in range(repeats))
    label = f"{copies}x file, {mb:.1f} MB uncompressed, best of {repeats}"
    return [
        ("prepare throughput", "Bio.SeqIO.parse fasta loop (gzip)", f"{mb / seqio:.1f} MB/s", label),
        ("prepare throughput", "protein-performer prepare", f"{mb / prep:.1f} MB/s",
         "read + clean + tokenise + split + write shards, sha256 of input"),
        ("prepare throughput", "ratio prepare / SeqIO", f"{seqio / prep:.2f}", "target >= 0.5"),
    ]


def _measure_subprocess(path: Path, out: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(path), str(out)], check=True, capture_output=True,
                            text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_prepare_memory(fasta: Path, copies: int, workdir: Path) -> list[Row]:
    """Peak RSS of prepare, each run in a fresh interpreter, on 1x and ``copies``x the input."""
    big = concatenated_copies(fasta, copies, workdir)
    one = _measure_subprocess(fasta, workdir / "mem1")
    many = _measure_subprocess(big, workdir / f"mem{copies}")
    mb_one, mb_many = one["peak_kib"] / 1024, many["peak_kib"] / 1024
    return [
        ("prepare memory", "peak RSS after imports (interpreter, numpy, tqdm)",
         f"{one['imports_kib'] / 1024:.1f} MiB", "data-independent part of the figures below"),
        ("prepare memory", "peak RSS, 1x", f"{mb_one:.1f} MiB",
         f"{one['residues']:,} residues, {one['seconds']:.2f} s"),
        ("prepare memory", f"peak RSS, {copies}x", f"{mb_many:.1f} MiB",
         f"{many['residues']:,} residues, {many['seconds']:.2f} s "
         f"({uncompressed_mb(big) / many['seconds']:.1f} MB/s)"),
        ("prepare memory", f"ratio {copies}x / 1x", f"{mb_many / mb_one:.2f}", "target <= 1.2"),
    ]


def markdown_table(rows: list[Row]) -> str:
    return md_table(["section", "metric", "value", "note"], [list(row) for row in rows])


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fasta", type=Path, default=places.ecoli(), help="gzip FASTA to benchmark on")
    parser.add_argument("--copies", type=int, default=50, help="copies for the peak-memory comparison")
    parser.add_argument("--throughput-copies", type=int, default=10, help="copies for the throughput file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None, help="also write the table (markdown) here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = create_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.fasta.is_file():
        raise SystemExit(f"{args.fasta}: not found; pass --fasta FILE (a gzip FASTA)")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        workdir = Path(tmp)
        log.info("prepare throughput on %dx %s", args.throughput_copies, args.fasta.name)
        (workdir / "throughput").mkdir()
        rows += bench_prepare_throughput(args.fasta, args.throughput_copies, args.repeats, workdir / "throughput")
        log.info("prepare peak memory on 1x and %dx", args.copies)
        (workdir / "memory").mkdir()
        rows += bench_prepare_memory(args.fasta, args.copies, workdir / "memory")
        # More sections go here, e.g. rows += bench_datamodule(...) (DataModule windows/s).
    machine = f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}"
    table = markdown_table(rows)
    print(f"Input: `{args.fasta.name}`; machine: {machine}.\n\n{table}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(f"Input: `{args.fasta.name}`; machine: {machine}.\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
