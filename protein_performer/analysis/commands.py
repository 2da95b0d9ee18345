"""``protein-performer similarity``: amino-acid similarity from attention and embeddings vs BLOSUM62.

    protein-performer similarity --checkpoint CKPT --fasta IN --out DIR [--max-proteins N] [--blocks ...] [--quiet]

Writes into DIR: ``similarity.csv`` (attention profiles, 20 x 20), ``pair_similarity.csv``
(attention-pair log-odds), ``context_similarity.csv`` (attention contexts),
``embedding_similarity.csv``, ``attention_profiles.csv`` (enrichment per layer/head and amino
acid), ``blosum_comparison.json``, and ``similarity.{png,svg}`` / ``pair_similarity.{png,svg}`` /
``context_similarity.{png,svg}`` / ``embedding_similarity.{png,svg}`` (heatmap in
hierarchical-clustering order beside BLOSUM62 in the same order). See :mod:`protein_performer.analysis.similarity`.
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
    from protein_performer.outputs import check_output

    if args.max_proteins < 0 or args.row_block < 1:
        raise ValueError("--max-proteins must be >= 0 and --row-block >= 1")
    check_output(args.out, "dir", inputs=[args.fasta])
    loaded = load_checkpoint(args.checkpoint)
    model = loaded.model.to(args.device or default_device())
    counts = ReadCounts()
    records = read_records(args.fasta, CleaningPolicy(unknown=args.unknown), counts)
    if args.max_proteins:
        records = itertools.islice(records, args.max_proteins)
    sequences = [r.sequence for r in records]  # read first: the progress bar knows the total
    result = analyse(model, sequences, layers=args.blocks, method=args.method, row_block=args.row_block,
                     top=args.top, progress=from_args(args))
    paths = list(result.save(args.out).values()) + draw(result, args.out)
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
