"""The DMS heatmap: all 19 substitutions per position (drawn from a matrix saved as CSV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from protein_performer.alphabet import STANDARD_AMINO_ACIDS

def plot_substitution_matrix(matrix: np.ndarray, sequence: str, offset: int, path: Path, title: str = "") -> None:
    """Draw :func:`substitution_matrix` (positions along x, the 20 amino acids along y)."""
    import matplotlib

    matrix_t = matrix.T  # (20, n)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = min(max(6.0, 0.12 * len(sequence)), 60.0)
    fig, ax = plt.subplots(figsize=(width, 4.2))
    lim = float(np.abs(matrix_t).max()) or 1.0
    im = ax.imshow(matrix_t, aspect="auto", cmap="RdBu", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_yticks(range(20), list(STANDARD_AMINO_ACIDS), fontsize=7)
    step = max(1, len(sequence) // 40)
    ticks = list(range(0, len(sequence), step))
    ax.set_xticks(ticks, [f"{sequence[i]}{i + offset}" for i in ticks], rotation=90, fontsize=6)
    ax.set_xlabel("wild-type residue and position")
    ax.set_title(title or "masked marginals: log p(substitution) - log p(wild type)")
    fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)

