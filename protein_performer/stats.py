"""Statistics shared by ``score`` and ``score-variants``: the percentile bootstrap and Spearman's rho.

One resampling loop (:func:`bootstrap_draws`) serves both: ``score`` resamples windows for the intervals
of its paired comparison with a baseline, ``score-variants`` resamples variants for the interval
of Spearman's rho (:func:`spearman`). numpy only (scipy for ranks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

BOOTSTRAP_BLOCK = 250
"""Resamples drawn at once; bounds memory. The draws do not depend on it (``Generator.integers``
consumes the same stream however the calls are split), so the intervals do not either."""


def bootstrap_draws(statistic: Callable[[np.ndarray], tuple[np.ndarray, ...]], n: int, resamples: int, seed: int,
              block: int = BOOTSTRAP_BLOCK) -> tuple[np.ndarray, ...]:
    """Draws of ``statistic`` over ``resamples`` resamples with replacement of ``n`` rows.

    ``statistic`` takes (R, n) row indices and returns one (R,) array per quantity (a tuple), so that
    several quantities share the same resamples; the result is one (resamples,) array per quantity.
    The resamples are those of ``np.random.default_rng(seed)``.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for lo in range(0, resamples, block):
        idx = rng.integers(0, n, size=(min(block, resamples - lo), n))  # (R, n)
        parts.append(statistic(idx))
    return tuple(np.concatenate(draws) for draws in zip(*parts))


def interval95(draws: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval (2.5th and 97.5th percentiles) of bootstrap draws."""
    return float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


@dataclass
class Correlation:
    """Spearman's rho of one score column with the measurements."""

    name: str
    spearman: float
    ci95: tuple[float, float] | None
    n: int
    """Rows with both a score and a measurement."""


def _rank(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)


def spearman(scores: np.ndarray, measured: np.ndarray, *, name: str = "", bootstrap: int = 2000,
             seed: int = 0) -> Correlation:
    """Spearman's rho on the rows where both are finite, with a 95% percentile bootstrap interval
    over rows (None with fewer than 3 rows or ``bootstrap`` 0)."""
    keep = np.isfinite(scores) & np.isfinite(measured)
    x, y = scores[keep], measured[keep]
    n = len(x)
    if n < 3:
        return Correlation(name, float("nan"), None, n)

    def rho(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # (..., n) -> (...,): Pearson of the ranks
        ra, rb = _rank(a), _rank(b)
        ra, rb = ra - ra.mean(-1, keepdims=True), rb - rb.mean(-1, keepdims=True)
        den = np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))
        return np.where(den > 0, (ra * rb).sum(-1) / np.where(den > 0, den, 1), np.nan)

    value = float(rho(x, y))
    if bootstrap <= 0:
        return Correlation(name, value, None, n)
    (draws,) = bootstrap_draws(lambda idx: (rho(x[idx], y[idx]),), n, bootstrap, seed)
    return Correlation(name, value, interval95(draws[np.isfinite(draws)]), n)

