"""Figures drawn from analysis results (the results themselves are saved as CSV / JSON elsewhere).

Every function returns a matplotlib ``Figure``; :func:`save_figure` writes PNG (and SVG).
Callers close figures (``plt.close(fig)``) once saved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure


def save_figure(fig: Figure, path: str | Path, formats: Sequence[str] = ("png", "svg"), dpi: int = 150) -> list[Path]:
    """Save ``fig`` as ``path`` with each suffix in ``formats``; returns the files written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        fig.savefig(target, dpi=dpi, bbox_inches="tight")
        written.append(target)
    return written


def standardised_difference(matrix: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(n, n) ``z(matrix) - z(reference)``, each standardised over its off-diagonal pairs (the two
    live on different scales); the diagonal is NaN. Positive: the model calls a pair more similar
    than the reference does."""
    m, r = np.asarray(matrix, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    off = ~np.eye(len(m), dtype=bool)

    def z(x: np.ndarray) -> np.ndarray:
        return (x - x[off].mean()) / (x[off].std() or 1.0)

    out = z(m) - z(r)
    out[~off] = np.nan
    return out


def similarity_heatmaps(
    matrix: np.ndarray,
    reference: np.ndarray,
    labels: Sequence[str],
    order: Sequence[int],
    *,
    title: str,
    reference_title: str = "BLOSUM62",
    subtitle: str = "",
) -> Figure:
    """Three heatmaps, rows and columns in ``order``: ``matrix``, ``reference`` (annotated with its
    integer scores), both coloured around 0, and their :func:`standardised_difference`."""
    order = list(order)
    names = [labels[i] for i in order]
    fig, axes = plt.subplots(1, 3, figsize=(19, 5.8), constrained_layout=True)
    difference = standardised_difference(matrix, reference)
    panels = ((axes[0], matrix, title, False), (axes[1], reference, reference_title, True),
              (axes[2], difference, f"difference: z(left) - z({reference_title}), off-diagonal", False))
    for ax, m, name, annotate in panels:
        m = np.asarray(m)[np.ix_(order, order)]
        limit = float(np.nanmax(np.abs(m))) or 1.0
        sns.heatmap(m, ax=ax, cmap="RdBu_r", center=0.0, vmin=-limit, vmax=limit, square=True,
                    xticklabels=names, yticklabels=names, linewidths=0.3, linecolor="white",
                    annot=annotate, fmt=".0f", annot_kws={"fontsize": 6}, cbar_kws={"shrink": 0.8})
        ax.set_title(name, fontsize=11)
        ax.tick_params(axis="both", labelsize=10, rotation=0)
    if subtitle:
        fig.suptitle(subtitle, fontsize=11)
    return fig


def attention_heatmap(weights: np.ndarray, labels: Sequence[str], *, title: str, max_ticks: int = 60) -> Figure:
    """One (L, L) attention map; residue letters on the axes when ``L <= max_ticks``."""
    L = weights.shape[-1]
    size = min(12.0, max(5.0, L * 0.14))
    fig, ax = plt.subplots(figsize=(size + 1.2, size), constrained_layout=True)
    show = L <= max_ticks
    sns.heatmap(weights, ax=ax, cmap="viridis", square=True, xticklabels=list(labels) if show else False,
                yticklabels=list(labels) if show else False, cbar_kws={"label": "attention weight", "shrink": 0.8})
    if show:
        ax.tick_params(axis="both", labelsize=max(5, min(9, int(600 / L))))
    else:
        ticks = np.linspace(0, L - 1, num=6).round().astype(int)
        ax.set_xticks(ticks + 0.5, [str(t) for t in ticks])
        ax.set_yticks(ticks + 0.5, [str(t) for t in ticks])
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
    ax.set_title(title)
    return fig


def embedding_scatter(coords: dict[str, np.ndarray], groups: Sequence[str], *, title: str) -> Figure:
    """Side-by-side 2-D scatters (one per method in ``coords``: name -> (N, 2)) coloured by ``groups``."""
    names = list(coords)
    fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names) + 2.5, 6), constrained_layout=True,
                             squeeze=False)
    kinds = sorted(set(groups), key=lambda g: (g == "other", g))
    palette = dict(zip(kinds, sns.color_palette("tab10" if len(kinds) <= 10 else "tab20", len(kinds))))
    for ax, name in zip(axes[0], names):
        xy = coords[name]
        for kind in kinds:
            sel = np.array([g == kind for g in groups])
            ax.scatter(xy[sel, 0], xy[sel, 1], s=14, alpha=0.75, color=palette[kind],
                       label=f"{kind} ({int(sel.sum())})", edgecolors="none")
        ax.set_title(name)
        short = name.split(" (")[0]
        ax.set_xlabel(f"{short} 1")
        ax.set_ylabel(f"{short} 2")
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=9, markerscale=1.5, frameon=False)
    fig.suptitle(title)
    return fig
