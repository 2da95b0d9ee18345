"""``protein-performer similarity``: amino-acid similarity from attention and embeddings vs BLOSUM62,
beside controls.

    protein-performer similarity --checkpoint CKPT (--fasta IN | --homologs ALN [ALN ...]) --out DIR
        [--controls untrained shuffled] [--bootstrap N] [--windows N] [--window-tokens N] [--quiet]

``--fasta``: proteins read one at a time (single-protein models). ``--homologs``: one or more homolog
sets in any format ``prepare --family`` reads; the model reads family windows drawn as in its
training (:mod:`protein_performer.analysis.similarity_inputs`), ``--windows`` per set.

Writes into DIR: ``similarity.csv`` (attention profiles, 20 x 20), ``pair_similarity.csv``
(attention-pair log-odds), ``context_similarity.csv`` (attention contexts),
``embedding_similarity.csv``, ``attention_profiles.csv`` (enrichment per layer/head and amino
acid), ``blosum_comparison.json`` (the trained model's figures, and under ``"study"`` every figure of
every source, head group and measure with its 95% bootstrap interval and ``above_controls``),
``similarity_table.csv`` (the same figures as a table), ``heads.csv`` (head by head),
``pair_similarity_by_offset.csv`` / ``context_similarity_by_offset.csv`` (the two against the offset
null), and a heatmap of each matrix (``similarity``, ``pair_similarity``, ``context_similarity``,
``pair_similarity_by_offset``, ``context_similarity_by_offset``, ``embedding_similarity``; PNG and
SVG: the matrix, BLOSUM62 and their standardised difference, in hierarchical-clustering order). See :mod:`protein_performer.analysis.similarity_study`.

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
from protein_performer.corpus.families import add_family_arguments
from protein_performer.corpus.fasta import add_unknown_argument
from protein_performer.progress import add_quiet_argument, from_args

log = logging.getLogger(__name__)

FIGURES = ("similarity", "pair_similarity", "context_similarity", "pair_similarity_by_offset",
           "context_similarity_by_offset", "embedding_similarity")
OUTPUT_FILES = ("similarity.csv", "pair_similarity.csv", "context_similarity.csv", "embedding_similarity.csv",
                "pair_similarity_by_offset.csv", "context_similarity_by_offset.csv",
                "attention_profiles.csv", "blosum_comparison.json", "similarity_table.csv", "heads.csv",
                *(f"{stem}.{fmt}" for stem in FIGURES for fmt in ("png", "svg")))
"""Every file ``similarity`` writes into ``--out``."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="ProteinLM checkpoint (.ckpt)")
    inputs = parser.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--fasta", type=Path, help="proteins to analyse one at a time (FASTA / UniProt, may be compressed)")
    inputs.add_argument("--homologs", type=Path, nargs="+", metavar="ALN",
                        help="homolog sets (A3M, A2M, Stockholm, aligned or plain FASTA): the model reads family "
                             "windows of each, drawn by sequence weight as in its training")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--max-proteins", type=int, default=500,
                        help="--fasta: analyse the first N proteins of the file (default 500; 0 = all)")
    family = parser.add_argument_group("family windows (--homologs)")
    add_family_arguments(family, query_help="the query's id, when it is not the first record (one --homologs file)")
    family.add_argument("--windows", type=int, default=16, help="family windows per homolog set (default 16)")
    family.add_argument("--window-tokens", type=int, default=8192,
                        help="tokens per family window, as the model trained (default 8192)")
    parser.add_argument("--query-rows", type=int, default=None,
                        help="analyse this many residue queries of each protein / window, drawn at random "
                             "(default: all; 2048 makes an 8,192-token family window a few forward passes)")
    parser.add_argument("--controls", nargs="*", choices=("untrained", "shuffled"), default=["untrained", "shuffled"],
                        help="controls to analyse beside the model (default both; none: `--controls` alone): an "
                             "untrained model of the same shape, and the model on shuffled inputs (columns "
                             "shuffled among members; residues within each protein)")
    parser.add_argument("--bootstrap", type=int, default=1000,
                        help="bootstrap draws over proteins / windows / families for 95%% intervals (default 1000; 0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of windows, shuffles, bootstrap and the untrained model")
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

    check_at_least(args, {"--max-proteins": 0, "--row-block": 1, "--top": 1, "--windows": 1,
                          "--window-tokens": 3, "--bootstrap": 0, "--seed": 0, "--query-rows": 1})
    inputs = [args.checkpoint, *([args.fasta] if args.fasta else args.homologs)]
    check_output(args.out, "dir", inputs=inputs)
    for name in OUTPUT_FILES:
        check_output(args.out / name, "file", inputs=inputs, existing_ok=args.overwrite)


def draw(result, out_dir: Path, unit: str = "proteins") -> list[Path]:
    """The heatmap figures (PNG + SVG) of a :class:`SimilarityResult`; ``unit``: what was analysed."""
    import matplotlib.pyplot as plt

    from protein_performer.analysis.blosum import blosum62
    from protein_performer.analysis.plots import save_figure, similarity_heatmaps
    from protein_performer.analysis.similarity import AMINO_ACIDS, cluster_order

    written = []
    for stem, matrix, comparison, title in (
        ("similarity", result.attention, result.attention_vs_blosum,
         f"attention profiles ({result.method}, {result.profiles.proteins} {unit})"),
        ("pair_similarity", result.pairs, result.pairs_vs_blosum,
         f"attention pairs, log(observed / expected) ({result.profiles.proteins} {unit})"),
        ("context_similarity", result.context, result.context_vs_blosum,
         f"attention contexts, per-head log-odds profiles (Pearson, {result.profiles.proteins} {unit})"),
        ("pair_similarity_by_offset", result.pairs_by_offset, result.pairs_by_offset_vs_blosum,
         f"attention pairs against the offset null ({result.profiles.proteins} {unit})"),
        ("context_similarity_by_offset", result.context_by_offset, result.context_by_offset_vs_blosum,
         f"attention contexts against the offset null ({result.profiles.proteins} {unit})"),
        ("embedding_similarity", result.embedding, result.embedding_vs_blosum, "token embeddings (cosine)"),
    ):
        fig = similarity_heatmaps(
            matrix, blosum62(), AMINO_ACIDS, cluster_order(matrix), title=title,
            subtitle=f"vs BLOSUM62 over {comparison.n_pairs} pairs: Pearson {comparison.pearson:.3f}, "
                     f"Spearman {comparison.spearman:.3f} (order: average-linkage clustering of the left matrix)")
        written += save_figure(fig, out_dir / stem)
        plt.close(fig)
    return written


def report(study) -> None:
    """Final summary table (rich): every source's figures on all heads."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"amino-acid similarity vs BLOSUM62 (190 pairs; 95% bootstrap over {study.units} {study.unit})")
    for col in ("source", "measure", "Pearson [95% CI]", "above controls", "top pairs", "ranks D-E F-Y I-V K-R"):
        table.add_column(col)
    for f in [*study.figures, *study.embedding.values()]:
        if f.heads not in ("all", "-"):
            continue
        ci = f" [{f.ci[0]:.3f}, {f.ci[1]:.3f}]" if f.ci else ""
        above = "" if f.above_controls is None else f"{f.above_controls:+.3f}"
        table.add_row(f.source, f.measure, f"{f.pearson:.3f}{ci}", above, " ".join(f.top_pairs),
                      " ".join(str(r) for r in f.landmark_ranks.values()))
    Console(stderr=False).print(table)


def read_inputs(args: argparse.Namespace, model, counts) -> tuple[list, list, list, str]:
    """(windows, shuffled windows, families, bootstrap unit) of ``--fasta`` or ``--homologs``."""
    import numpy as np

    from protein_performer.analysis import similarity_inputs as inputs
    from protein_performer.corpus.fasta import CleaningPolicy, read_records

    rng = np.random.default_rng(np.random.SeedSequence([args.seed, 3]))
    if args.fasta is not None:
        records = read_records(args.fasta, CleaningPolicy(unknown=args.unknown), counts)
        if args.max_proteins:
            records = itertools.islice(records, args.max_proteins)
        sequences = [r.sequence for r in records]  # read first: the progress bar knows the total
        return (list(inputs.protein_windows(sequences)), list(inputs.protein_windows(inputs.shuffle_residues(sequences, rng))),
                [], "proteins")
    families = inputs.read_families(args.homologs, query=args.query, format=args.family_format)
    aligned = bool(model.config.aligned_positions)
    several = len(families) > 1
    windows, shuffled = [], []
    for family in families:
        unit = family.path.name if several else None
        options = dict(window_tokens=args.window_tokens, windows=args.windows, aligned=aligned, seed=args.seed, unit=unit)
        windows += inputs.family_windows(family, **options)
        if "shuffled" in args.controls:
            shuffled += inputs.family_windows(inputs.shuffle_columns(family, rng), **options)
    return windows, shuffled, families, "families" if several else "family windows"


def run(args: argparse.Namespace) -> int:
    from protein_performer.analysis.attention_counts import count_attention
    from protein_performer.analysis.similarity import AttentionProfiles, result_of
    from protein_performer.analysis.similarity_study import study, untrained_like
    from protein_performer.checkpoint import default_device, load_checkpoint
    from protein_performer.corpus.fasta import ReadCounts
    from protein_performer.outputs import locked, written_into

    check_outputs(args)
    with locked(args.out):
        loaded = load_checkpoint(args.checkpoint)
        model = loaded.model.to(args.device or default_device())
        counts = ReadCounts()
        windows, shuffled, families, unit = read_inputs(args, model, counts)
        options = dict(layers=args.blocks, row_block=args.row_block, query_rows=args.query_rows, seed=args.seed,
                       progress=from_args(args))
        sources = {"trained": count_attention(model, windows, desc="similarity: trained", **options)}
        models = {"trained": model}
        if "untrained" in args.controls:
            models["untrained"] = untrained_like(model, args.seed)
            sources["untrained"] = count_attention(models["untrained"], windows, desc="similarity: untrained", **options)
        if "shuffled" in args.controls:
            sources["shuffled"] = count_attention(model, shuffled, desc="similarity: shuffled", **options)
        result = result_of(AttentionProfiles.from_counts(sources["trained"]), model, method=args.method, top=args.top)
        figures = study(sources, models, draws=args.bootstrap, seed=args.seed, top=args.top, families=families, unit=unit)
        with written_into(args.out, what="similarity.csv") as stage:
            written = list(result.save(stage, figures).values()) + draw(result, stage, unit)
    paths = [args.out / p.name for p in written]
    summary = {f"{f.source} {f.measure}": f.pearson for f in figures.figures if f.heads == "all"}
    log.info("%d %s, blocks %s: Pearson with BLOSUM62 %s; embedding %.3f; wrote %s", figures.units, unit,
             list(result.profiles.layers), ", ".join(f"{k} {v:.3f}" for k, v in summary.items()),
             result.embedding_vs_blosum.pearson, ", ".join(str(p) for p in paths))
    if counts.unknown_to_x:
        log.warning("%s: %d characters that are not amino-acid codes were read as X (--unknown x)", args.fasta,
                    counts.unknown_to_x)
    report(figures)
    return 0
