"""``protein-performer plot-embeddings``: PCA and t-SNE of per-protein embeddings, and neighbours.

    protein-performer plot-embeddings --embeddings emb.h5 --out views.png [--color-by gn3|os|pe]
        [--layer N] [--neighbours P0A7Z4 -k 10]

Reads an ``embed`` output (HDF5, npz or .pt folder), projects the mean embeddings with PCA and
t-SNE (scikit-learn) and colours points by a UniProt header field: ``os`` (organism), ``pe``
(protein existence level), ``gn3`` (first three letters of the gene name, e.g. ``rpl``), or ``gn``.
The 2-D coordinates go to ``views.csv``; neighbours (cosine) of ``--neighbours`` to
``views.neighbours.csv`` and the log. None of these files may exist already unless ``--overwrite``
is given.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from protein_performer.corpus.fasta import parse_uniprot_fields

log = logging.getLogger(__name__)

FIELDS = ("gn3", "gn", "os", "pe")


def header_field(header: str, field: str) -> str:
    """The value of ``field`` (see :data:`FIELDS`) in a UniProt header; ``unknown`` when absent."""
    words = header.split(None, 1)
    fields = parse_uniprot_fields(words[1] if len(words) > 1 else "")
    if field == "os":
        value = fields.os
    elif field == "pe":
        value = None if fields.pe is None else f"PE {fields.pe}"
    elif field in ("gn", "gn3"):
        value = fields.gn if field == "gn" else (fields.gn or "")[:3].lower() or None
    else:
        raise ValueError(f"--color-by {field!r}: expected one of {', '.join(FIELDS)}")
    return value or "unknown"


def top_groups(values: Sequence[str], keep: int = 10) -> list[str]:
    """``values`` with all but the ``keep`` most frequent replaced by ``other``."""
    common = {v for v, _ in Counter(values).most_common(keep)}
    return [v if v in common else "other" for v in values]


@dataclass
class EmbeddingViews:
    """2-D projections of N proteins."""

    ids: list[str]
    groups: list[str]
    pca: np.ndarray
    """(N, 2)."""
    tsne: np.ndarray | None
    """(N, 2); None when there are too few proteins for t-SNE."""
    explained_variance: tuple[float, float]

    def frame(self) -> pd.DataFrame:
        data = {"id": self.ids, "group": self.groups, "pca1": self.pca[:, 0], "pca2": self.pca[:, 1]}
        if self.tsne is not None:
            data.update(tsne1=self.tsne[:, 0], tsne2=self.tsne[:, 1])
        return pd.DataFrame(data)


def project(matrix: np.ndarray, ids: list[str], groups: list[str], seed: int = 0) -> EmbeddingViews:
    """PCA (2 components) and t-SNE (perplexity ``min(30, (N - 1) / 3)``) of (N, dim) embeddings."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n = matrix.shape[0]
    if n < 3:
        raise ValueError(f"need at least 3 proteins for a 2-D view, got {n}")
    x = matrix.astype(np.float64)
    pca = PCA(n_components=2, random_state=seed).fit(x)
    tsne = None
    if n >= 5:
        perplexity = float(min(30.0, (n - 1) / 3))
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    ratio = pca.explained_variance_ratio_
    return EmbeddingViews(ids, groups, pca.transform(x), tsne, (float(ratio[0]), float(ratio[1])))


def nearest_neighbours(matrix: np.ndarray, ids: list[str], query: str, k: int = 10) -> pd.DataFrame:
    """The ``k`` proteins most cosine-similar to ``query`` (itself excluded), best first."""
    if query not in ids:
        raise ValueError(f"--neighbours {query!r}: not among the {len(ids)} embedded proteins")
    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    q = ids.index(query)
    sims = unit @ unit[q]
    sims[q] = -np.inf
    order = np.argsort(-sims, kind="stable")[:k]
    return pd.DataFrame({"rank": np.arange(1, len(order) + 1), "id": [ids[i] for i in order],
                         "cosine": sims[order]})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--embeddings", required=True, type=Path, help="output of `protein-performer embed`")
    parser.add_argument("--out", required=True, type=Path, help="output PNG (coordinates go to the .csv beside it)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--color-by", choices=FIELDS, default="gn3",
                        help="header field: gn3 (gene-name prefix, default), gn, os, pe")
    parser.add_argument("--top-groups", type=int, default=10, help="colours for the N most frequent values (default 10)")
    parser.add_argument("--layer", type=int, default=None,
                        help="hidden state to plot, one of the layers embed wrote, numbered as embed's --layers "
                             "stores them (0 = the token embeddings, k = the output of block k; default: the "
                             "first stored)")
    parser.add_argument("--neighbours", default=None, metavar="ID", help="print the nearest neighbours of this id")
    parser.add_argument("-k", type=int, default=10, help="number of neighbours (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of PCA / t-SNE")


def run(args: argparse.Namespace) -> int:
    import matplotlib.pyplot as plt

    from protein_performer.analysis.plots import embedding_scatter, save_figure
    from protein_performer.embed import read_embeddings
    from protein_performer.outputs import check_output, side_file

    out = args.out if args.out.suffix else args.out.with_suffix(".png")
    check_output(out, "file", inputs=[args.embeddings], existing_ok=args.overwrite)
    csv_path = side_file(out, ".csv", inputs=[args.embeddings], overwrite=args.overwrite)
    neighbours_path = side_file(out, ".neighbours.csv", inputs=[args.embeddings], outputs=[csv_path],
                                overwrite=args.overwrite) if args.neighbours else None
    stored = read_embeddings(args.embeddings)
    layer = stored.layers[0] if args.layer is None else args.layer
    if layer not in stored.layers:
        raise ValueError(f"{args.embeddings}: has layers {list(stored.layers)}, not {layer}")
    ids = list(stored.proteins)
    matrix = stored.matrix(layer)
    if args.neighbours:
        table = nearest_neighbours(matrix, ids, args.neighbours, args.k)
        table["header"] = [stored[i].header for i in table["id"]]
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(neighbours_path, index=False, float_format="%.4f")
        log.info("nearest neighbours of %s (cosine, layer %d), written to %s:\n%s", args.neighbours, layer,
                 neighbours_path, table.to_string(index=False))
    groups = top_groups([header_field(stored[i].header, args.color_by) for i in ids], args.top_groups)
    views = project(matrix, ids, groups, args.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    views.frame().to_csv(csv_path, index=False, float_format="%.5f")
    coords = {f"PCA ({views.explained_variance[0]:.0%}, {views.explained_variance[1]:.0%} var.)": views.pca}
    if views.tsne is not None:
        coords["t-SNE"] = views.tsne
    fig = embedding_scatter(coords, groups, title=f"{len(ids)} proteins, layer {layer}, coloured by {args.color_by}")
    save_figure(fig, out, formats=(out.suffix.lstrip(".").lower(),))
    plt.close(fig)
    log.info("wrote %s and %s", out, csv_path)
    return 0
