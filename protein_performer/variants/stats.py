"""Statistics of scores against measurements: Spearman's rho with a percentile-bootstrap interval."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    rng = np.random.default_rng(seed)
    draws = []
    for lo in range(0, bootstrap, 200):  # resample rows in blocks to bound memory
        idx = rng.integers(0, n, size=(min(200, bootstrap - lo), n))
        draws.append(rho(x[idx], y[idx]))
    draws = np.concatenate(draws)
    draws = draws[np.isfinite(draws)]
    return Correlation(name, value, (float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))), n)

