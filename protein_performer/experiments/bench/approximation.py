"""Approximation error of FAVOR+ attention vs the number of random features (cf. Fig. 4 of the paper).

For each number of random features m, and each (projection, feature map) pair, draws ``--draws``
independent inputs (Q, K entries N(0, sigma^2), V entries N(0, 1), each (L, d)) and projections,
and records the mean squared error of the approximated attention output against exact
softmax(Q K^T / sqrt(d)) V:

* projection: ``iid`` (:func:`iid_gaussian_matrix`) or ``orthogonal``
  (:func:`gaussian_orthogonal_matrix`, Gaussian row norms, i.e. unbiased ORF);
* features: ``positive`` (:func:`softmax_features`, m features), ``favor++`` (the same with
  FAVOR++'s variance-optimal A for the draw's rho = mean |q' + k'|^2 / d,
  :func:`favorpp_coefficient`), or ``trig`` (:func:`trig_features`, sin/cos, 2m features from the
  same m projections).

The approximate attention is formed explicitly, ``A = phi(Q) phi(K)^T`` (L, L), output
``(A V) / (A 1)``, in float64. Results go to a CSV (one row per configuration and m: mean, std,
standard error, median and quartiles over draws) and a two-panel PNG drawn from that CSV:
(a) i.i.d. vs orthogonal (positive features), (b) positive vs trigonometric (orthogonal). A
reference row ``none/uniform`` is the MSE of uniform attention (every output = mean of V).

Two input scales by default (one row of panels each): sigma = 0.5 gives |q / d^(1/4)|^2 ~ 1 at
d = 16 (flat attention, kernel values near 1, where sin/cos features are accurate); sigma = 1
gives |q'|^2 ~ 4 (peakier attention with many small kernel values, where sin/cos features break
down, as in the paper). The positive-feature estimator's relative variance grows like
exp(|q' + k'|^2), so at sigma = 1 no m <= 512 gets below the uniform-attention error.

    python scripts/plot_approximation.py [--length 1024] [--dim 16] [--draws 15]
        [--features 8,16,...,512] [--out-csv docs/figures/approximation_error.csv]
        [--out-png docs/figures/approximation_error.png]
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import statistics
from pathlib import Path

import torch
from torch import Tensor

from protein_performer.attention import (
    favorpp_coefficient,
    gaussian_orthogonal_matrix,
    iid_gaussian_matrix,
    softmax_features,
    trig_features,
)

CONFIGS = [("iid", "positive"), ("orthogonal", "positive"), ("iid", "trig"), ("orthogonal", "trig"),
           ("orthogonal", "favor++")]
FIELDS = ["sigma", "projection", "features", "m", "draws", "mean", "std", "sem", "median", "q25", "q75"]

log = logging.getLogger("plot_approximation")


def exact_output(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(Q K^T / sqrt(d)) V for (L, d) inputs."""
    return torch.softmax(q @ k.T * q.shape[-1] ** -0.5, dim=-1) @ v  # (L, d)


def approximate_output(q: Tensor, k: Tensor, v: Tensor, projection: Tensor, features: str) -> Tensor:
    """``(phi(Q) phi(K)^T V) / (phi(Q) phi(K)^T 1)`` with phi positive or trigonometric; (L, d)."""
    if features == "positive":
        qf, kf = softmax_features(q, projection, is_query=True), softmax_features(k, projection, is_query=False)
    elif features == "favor++":
        d = q.shape[-1]
        x, y = q * d**-0.25, k * d**-0.25
        rho = ((x * x).sum(-1).mean() + (y * y).sum(-1).mean() + 2 * x.mean(0) @ y.mean(0)) / d  # mean |x+y|^2/d
        a = favorpp_coefficient(rho)
        qf = softmax_features(q, projection, is_query=True, a=a)
        kf = softmax_features(k, projection, is_query=False, a=a)
    elif features == "trig":
        qf, kf = trig_features(q, projection), trig_features(k, projection)  # (L, 2m), may be negative
    else:
        raise ValueError(f"features must be 'positive', 'favor++' or 'trig', got {features!r}")
    scores = qf @ kf.T  # (L, L) unnormalised kernel estimates
    return (scores @ v) / scores.sum(dim=-1, keepdim=True)


def draw_projection(kind: str, m: int, d: int, generator: torch.Generator) -> Tensor:
    if kind == "iid":
        return iid_gaussian_matrix(m, d, generator=generator, dtype=torch.float64)
    if kind == "orthogonal":
        return gaussian_orthogonal_matrix(m, d, scaling="gaussian", generator=generator, dtype=torch.float64)
    raise ValueError(f"projection must be 'iid' or 'orthogonal', got {kind!r}")


def approximation_errors(
    length: int, dim: int, features: list[int], draws: int, sigma: float, seed: int
) -> list[dict[str, float | int | str]]:
    """One summary row per (projection, feature map, m): MSE statistics over ``draws`` draws.

    Draw ``i`` uses the same Q, K, V for every configuration and m (common random inputs), so the
    curves differ only by the projection and feature map.
    """
    gen = torch.Generator().manual_seed(seed)
    inputs = [(sigma * torch.randn(length, dim, generator=gen, dtype=torch.float64),
               sigma * torch.randn(length, dim, generator=gen, dtype=torch.float64),
               torch.randn(length, dim, generator=gen, dtype=torch.float64)) for _ in range(draws)]
    exact = [exact_output(*qkv) for qkv in inputs]
    rows: list[dict[str, float | int | str]] = []
    uniform = [((v.mean(dim=0) - ex) ** 2).mean().item() for (_, _, v), ex in zip(inputs, exact)]
    for m in features:  # reference: independent of m
        rows.append(_summary(sigma, "none", "uniform", m, uniform))
    for proj_kind, feat_kind in CONFIGS:
        for m in features:
            mse = []
            for i, (q, k, v) in enumerate(inputs):
                projection = draw_projection(proj_kind, m, dim, gen)
                out = approximate_output(q, k, v, projection, feat_kind)
                mse.append(((out - exact[i]) ** 2).mean().item())
            rows.append(_summary(sigma, proj_kind, feat_kind, m, mse))
            log.info("sigma=%g %s/%s m=%d: mean MSE %.3g (%d finite draws)", sigma, proj_kind, feat_kind, m,
                     rows[-1]["mean"], rows[-1]["draws"])
    return rows


def _summary(sigma: float, projection: str, features: str, m: int, mse: list[float]) -> dict[str, float | int | str]:
    """CSV row: statistics of the finite MSEs (a trig denominator can be 0)."""
    finite = [x for x in mse if math.isfinite(x)]
    quart = statistics.quantiles(finite, n=4) if len(finite) >= 2 else [math.nan] * 3
    std = statistics.stdev(finite) if len(finite) >= 2 else math.nan
    return {
        "sigma": sigma, "projection": projection, "features": features, "m": m, "draws": len(finite),
        "mean": statistics.fmean(finite) if finite else math.nan, "std": std,
        "sem": std / math.sqrt(len(finite)) if finite else math.nan,
        "median": quart[1], "q25": quart[0], "q75": quart[2],
    }


def write_csv(rows: list[dict[str, float | int | str]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    log.info("wrote %s", path)


def read_csv(path: Path) -> list[dict[str, float | int | str]]:
    with open(path, newline="") as fh:
        return [{k: (v if k in ("projection", "features") else float(v)) for k, v in row.items()}
                for row in csv.DictReader(fh)]


def plot(rows: list[dict[str, float | int | str]], path: Path, *, length: int, dim: int) -> None:
    """Log-log panels of mean MSE vs m with +-1 standard-error bands (one row per sigma), from the CSV rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("(a) i.i.d. vs orthogonal projections (positive features)",
         [("iid", "positive", "i.i.d. (IID)"), ("orthogonal", "positive", "orthogonal (ORF)")]),
        ("(b) positive, FAVOR++, trigonometric (orthogonal)",
         [("orthogonal", "trig", "trig sin/cos (SM-trig)"), ("orthogonal", "positive", "positive (SM+, FAVOR+)"),
          ("orthogonal", "favor++", "optimal positive (FAVOR++)")]),
    ]
    sigmas = sorted({r["sigma"] for r in rows})
    fig, axes = plt.subplots(len(sigmas), 2, figsize=(11, 4.2 * len(sigmas)), squeeze=False)
    for (ax, (title, curves)), sigma in ((a, s) for s, row in zip(sigmas, axes) for a in zip(row, panels)):
        for proj_kind, feat_kind, label in curves:
            sel = sorted((r for r in rows if r["sigma"] == sigma and r["projection"] == proj_kind
                          and r["features"] == feat_kind), key=lambda r: r["m"])
            m = [r["m"] for r in sel]
            mean = [r["mean"] for r in sel]
            low = [max(r["mean"] - r["sem"], 1e-3 * r["mean"]) for r in sel]  # keep the band on a log axis
            high = [r["mean"] + r["sem"] for r in sel]
            (line,) = ax.plot(m, mean, marker="o", label=label)
            ax.fill_between(m, low, high, color=line.get_color(), alpha=0.25)
        ref = sorted((r for r in rows if r["sigma"] == sigma and r["features"] == "uniform"), key=lambda r: r["m"])
        if ref:
            ax.plot([r["m"] for r in ref], [r["mean"] for r in ref], ":", color="gray",
                    label="uniform attention (mean of V)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("number of random features m (trig: 2m features)")
        ax.set_ylabel("MSE of attention output")
        ax.set_title(f"{title}, sigma={sigma:g}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    draws = int(max(r["draws"] for r in rows))
    fig.suptitle(f"FAVOR+ approximation error vs exact softmax attention (L={length}, d={dim}, "
                 f"Q, K ~ N(0, sigma^2), mean over {draws} draws, band = ±1 s.e.)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    log.info("wrote %s", path)


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=1024, help="sequence length L")
    parser.add_argument("--dim", type=int, default=16, help="head dimension d")
    parser.add_argument("--features", type=lambda s: [int(x) for x in s.split(",")],
                        default=[8, 16, 32, 64, 128, 256, 512], help="comma-separated numbers of features m")
    parser.add_argument("--draws", type=int, default=15, help="independent draws per point")
    parser.add_argument("--sigmas", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 1.0],
                        help="comma-separated std of the Q and K entries (V: 1), one panel row each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--out-csv", type=Path, default=Path("docs/figures/approximation_error.csv"))
    parser.add_argument("--out-png", type=Path, default=Path("docs/figures/approximation_error.png"))
    parser.add_argument("--from-csv", type=Path, default=None, help="only redraw the PNG from this CSV")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = create_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    if args.from_csv:
        rows = read_csv(args.from_csv)
    else:
        rows = [row for sigma in args.sigmas
                for row in approximation_errors(args.length, args.dim, args.features, args.draws, sigma, args.seed)]
        write_csv(rows, args.out_csv)
    plot(rows, args.out_png, length=args.length, dim=args.dim)


if __name__ == "__main__":
    main()
