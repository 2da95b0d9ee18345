"""``protein-performer similarity``: amino-acid similarity from attention and embeddings vs BLOSUM62.

    protein-performer similarity --checkpoint CKPT --fasta IN --out DIR [--max-proteins N] [--blocks ...] [--quiet]

Writes into DIR: ``similarity.csv`` (attention profiles, 20 x 20), ``pair_similarity.csv``
(attention-pair log-odds), ``context_similarity.csv`` (attention contexts),
``embedding_similarity.csv``, ``attention_profiles.csv`` (enrichment per layer/head and amino
acid), ``blosum_comparison.json``, and ``similarity.{png,svg}`` / ``pair_similarity.{png,svg}`` /
``context_similarity.{png,svg}`` / ``embedding_similarity.{png,svg}`` (heatmap in
hierarchical-clustering order beside BLOSUM62 in the same order). See :mod:`protein_performer.analysis.similarity`.

DIR may hold other files, which stay; none of these may exist already unless ``--overwrite``. They
are written into a hidden folder beside DIR and moved in together at the end, so a failure, an
interrupt or a full disk leaves none of them.
"""

from __future__ import annotations

import argparse
import itertools
import logging
from pathlib import Path

from protein_performer.checkpoint import add_device_argument
from protein_performer.cli_args import deprecated_alias
from protein_performer.corpus.fasta import add_unknown_argument
from protein_performer.progress import add_quiet_argument, from_args

log = logging.getLogger(__name__)

FIGURES = ("similarity", "pair_similarity", "context_similarity", "embedding_similarity")
OUTPUT_FILES = ("similarity.csv", "pair_similarity.csv", "context_similarity.csv", "embedding_similarity.csv",
                "attention_profiles.csv", "blosum_comparison.json",
                *(f"{stem}.{fmt}" for stem in FIGURES for fmt in ("png", "svg")))
"""Every file ``similarity`` writes into ``--out``."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="ProteinLM checkpoint (.ckpt)")
    parser.add_argument("--fasta", required=True, type=Path, help="proteins to analyse (FASTA / UniProt, may be compressed)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--max-proteins", type=int, default=500,
                        help="analyse the first N proteins of the file (default 500; 0 = all)")
    deprecated_alias(parser, parser.add_argument(
        "--blocks", type=int, nargs="+", default=None, metavar="K",
        help="attention blocks to analyse, 1..depth (the blocks whose outputs are embed's --layers 1..depth), "
             "negatives from the end (default: all)"), "--layers")
    parser.add_argument("--method", choices=("pearson", "cosine"), default="pearson",
                        help="similarity of amino-acid attention profiles (default pearson)")
    parser.add_argument("--row-block", type=int, default=256, help="query rows per attention block (default 256)")
    parser.add_argument("--top", type=int, default=10, help="top similar pairs to report (default 10)")
    add_unknown_argument(parser)
    add_device_argument(parser)
    add_quiet_argument(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the files of an earlier run in --out (other files there always stay)")


def check_outputs(args: argparse.Namespace) -> None:
    """``--out`` and every file it will hold, before any work: not an input, none existing unless
    ``--overwrite``."""
    from protein_performer.outputs import check_at_least, check_output

    check_at_least(args, {"--max-proteins": 0, "--row-block": 1, "--top": 1})
    inputs = [args.checkpoint, args.fasta]
    check_output(args.out, "dir", inputs=inputs)
    for name in OUTPUT_FILES:
        check_output(args.out / name, "file", inputs=inputs, existing_ok=args.overwrite)


def draw(result, out_dir: Path) -> list[Path]:
    """The four heatmap figures (PNG + SVG) of a :class:`SimilarityResult`."""
    import matplotlib.pyplot as plt

    from protein_performer.analysis.blosum import blosum62
    from protein_performer.analysis.plots import save_figure, similarity_heatmaps
    from protein_performer.analysis.similarity import AMINO_ACIDS, cluster_order

    written = []
    for stem, matrix, comparison, title in (
        ("similarity", result.attention, result.attention_vs_blosum,
         f"attention profiles ({result.method}, {result.profiles.proteins} proteins)"),
        ("pair_similarity", result.pairs, result.pairs_vs_blosum,
         f"attention pairs, log(observed / expected) ({result.profiles.proteins} proteins)"),
        ("context_similarity", result.context, result.context_vs_blosum,
         f"attention contexts, per-head log-odds profiles (Pearson, {result.profiles.proteins} proteins)"),
        ("embedding_similarity", result.embedding, result.embedding_vs_blosum, "token embeddings (cosine)"),
    ):
        fig = similarity_heatmaps(
            matrix, blosum62(), AMINO_ACIDS, cluster_order(matrix), title=title,
            subtitle=f"vs BLOSUM62 over {comparison.n_pairs} pairs: Pearson {comparison.pearson:.3f}, "
                     f"Spearman {comparison.spearman:.3f} (order: average-linkage clustering of the left matrix)")
        written += save_figure(fig, out_dir / stem)
        plt.close(fig)
    return written


def report(result) -> None:
    """Final summary table (rich)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="amino-acid similarity vs BLOSUM62 (190 off-diagonal pairs)")
    for col in ("source", "Pearson", "Spearman", "top pairs", "ranks D-E F-Y I-V K-R"):
        table.add_column(col)
    for name, c in (("attention profiles", result.attention_vs_blosum), ("attention pairs", result.pairs_vs_blosum),
                    ("attention contexts", result.context_vs_blosum), ("embedding", result.embedding_vs_blosum)):
        table.add_row(name, f"{c.pearson:.3f}", f"{c.spearman:.3f}", " ".join(p for p, _, _ in c.top_pairs),
                      " ".join(str(r) for r in c.landmark_ranks.values()))
    Console(stderr=False).print(table)


def run(args: argparse.Namespace) -> int:
    from protein_performer.analysis.similarity import analyse
    from protein_performer.checkpoint import default_device, load_checkpoint
    from protein_performer.corpus.fasta import CleaningPolicy, ReadCounts, read_records
    from protein_performer.outputs import locked, written_into

    check_outputs(args)
    with locked(args.out):
        loaded = load_checkpoint(args.checkpoint)
        model = loaded.model.to(args.device or default_device())
        counts = ReadCounts()
        records = read_records(args.fasta, CleaningPolicy(unknown=args.unknown), counts)
        if args.max_proteins:
            records = itertools.islice(records, args.max_proteins)
        sequences = [r.sequence for r in records]  # read first: the progress bar knows the total
        result = analyse(model, sequences, layers=args.blocks, method=args.method, row_block=args.row_block,
                         top=args.top, progress=from_args(args))
        with written_into(args.out, what="similarity.csv") as stage:
            written = list(result.save(stage).values()) + draw(result, stage)
    paths = [args.out / p.name for p in written]
    log.info("%d proteins, blocks %s: attention profiles vs BLOSUM62 Pearson %.3f Spearman %.3f; "
             "attention pairs Pearson %.3f; attention contexts Pearson %.3f; embedding vs BLOSUM62 Pearson %.3f "
             "Spearman %.3f; wrote %s",
             result.profiles.proteins, list(result.profiles.layers), result.attention_vs_blosum.pearson,
             result.attention_vs_blosum.spearman, result.pairs_vs_blosum.pearson, result.context_vs_blosum.pearson,
             result.embedding_vs_blosum.pearson, result.embedding_vs_blosum.spearman,
             ", ".join(str(p) for p in paths))
    if counts.unknown_to_x:
        log.warning("%s: %d characters that are not amino-acid codes were read as X (--unknown x)", args.fasta,
                    counts.unknown_to_x)
    report(result)
    return 0
