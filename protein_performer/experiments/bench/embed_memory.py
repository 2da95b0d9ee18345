"""Peak memory of embedding one long protein in one window with a converted ESM-2 Performer.

A random-weight ESM-2 of the esm2_t6_8M shape (320 dim, 6 layers, 20 heads; ``transformers``,
nothing downloaded) is converted to FAVOR+ (m = 256) and embeds one random protein of L residues
(per-residue output, whole protein in one window) in a fresh process per L. Reported: the process's
peak resident memory during the embedding minus its resident memory just before (the model loaded,
a 64-residue warm-up done), and that increment's ratio to the one at 2,048 residues. Linear memory
means about 8x at 16,384. Writes the marked block ``esm-embed-memory`` of docs/benchmarks/embed.md.

    python scripts/bench_embed_memory.py [--lengths 2048,4096,8192,16384,20000]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from protein_performer.experiments.machine import machine_description, peak_rss_bytes, rss_bytes, write_marked_block
from protein_performer.experiments.report.tables import md_table

log = logging.getLogger("bench_embed_memory")
MODULE = "protein_performer.experiments.bench.embed_memory"  # what a child process runs (``--one``)
DOC = Path("docs/benchmarks/embed.md")
"""The document the block goes into (relative to the working directory: run from the checkout's root)."""


def measure_one(length: int, nb_features: int) -> dict:
    """In this process: convert, warm up, embed one protein of ``length`` residues; memory in MiB."""
    import numpy as np
    import torch

    from protein_performer.alphabet import STANDARD_AMINO_ACIDS
    from protein_performer.convert.esm import convert, read_transformers
    from protein_performer.embed import Embedder
    from protein_performer.experiments.bench.esm_gap import random_esm

    torch.set_num_threads(1)
    model = convert(read_transformers(random_esm(0.02), "random"), "softmax", nb_features=nb_features).model
    seq = "".join(np.random.default_rng(0).choice(list(STANDARD_AMINO_ACIDS), size=length))
    embedder = Embedder(model, per_residue=True, token_budget=length + 2, device="cpu")
    embedder.embed([("warm", seq[:64])])
    before = rss_bytes() / 1024
    start = time.perf_counter()
    result = embedder.embed([("p", seq)])
    seconds = time.perf_counter() - start
    peak = peak_rss_bytes() / 1024
    states = result["p"].per_residue[-1] if -1 in result["p"].per_residue else next(iter(result["p"].per_residue.values()))
    assert states.shape[0] == length and not result["p"].windowed
    return {"length": length, "before_mib": before / 1024, "peak_mib": peak / 1024,
            "increment_mib": (peak - before) / 1024, "seconds": seconds}


def render(rows: list[dict], nb_features: int, machine: str) -> str:
    """The marked block, from the measurements alone."""
    base = next(r for r in rows if r["length"] == min(r["length"] for r in rows))
    lines = [f"`python scripts/bench_embed_memory.py`: a converted FAVOR+ ESM-2 (random weights, esm2_t6_8M shape: "
             f"320 dim, 6 layers, 20 heads, m={nb_features}) embeds one random protein whole (one window, "
             "per-residue output), one fresh process per length, 1 thread. Increment: peak resident memory "
             "during the embedding minus resident memory before it. " f"Machine: {machine}.", "",
             md_table(["residues", "increment (MiB)", f"increment / increment at {base['length']:,}",
                       "process peak (MiB)", "seconds"],
                      [[f"{r['length']:,}", f"{r['increment_mib']:.0f}",
                        f"{r['increment_mib'] / base['increment_mib']:.2f}", f"{r['peak_mib']:.0f}",
                        f"{r['seconds']:.1f}"] for r in rows], align="rrrrr")]
    ratio = {r["length"]: r["increment_mib"] / base["increment_mib"] for r in rows}
    if 16384 in ratio and base["length"] == 2048:
        verdict = "met" if ratio[16384] <= 9 else "not met"
        lines += ["", f"Peak at 16k over peak at 2k (increments): **{ratio[16384]:.2f}x** (target <= 9x: {verdict})."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", default="2048,4096,8192,16384,20000")
    parser.add_argument("--nb-features", type=int, default=256)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child process: one length
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure_one(args.one, args.nb_features)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rows = []
    for length in (int(x) for x in args.lengths.split(",")):
        out = subprocess.run([sys.executable, "-m", MODULE, "--one", str(length),
                              "--nb-features", str(args.nb_features)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        log.info("%s", rows[-1])
    write_marked_block(args.doc, render(rows, args.nb_features, machine_description()), "esm-embed-memory",
                       "Embedding throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
