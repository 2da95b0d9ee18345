"""Families benchmark: TEM-1 variant effects from a family-trained Performer (docs/benchmarks/families.md).

1. **Equal wall clock at 8,192-token family windows.** The family recipe (configs/family_mlm.yaml:
   the hybrid Performer, local exact heads + FAVOR+ heads per block) and the same shape with
   exact softmax attention over the whole window are each given ``--minutes`` of training. Each
   model's seconds per step are measured first, in this run, as the difference of a 20-step and a
   60-step fit after a warm-up fit (start-up cancels), and its step count is set from them; the
   cosine spans those steps. Then both are scored on the variants: alone, with homologs in the window, and mixed with
   the profile (score-variants --homologs).
2. **Context length.** The better model is scored with 1k, 4k, 8k and 16k tokens of homologs +
   wild type in the window (one context draw each): how Spearman grows with homologs in context.

Writes ``--out``/bench_families.json and the markdown tables to stdout (paste into
docs/benchmarks/families.md). Run it alone on the machine: step times are measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from protein_performer.cli import CONFIG_DIR
from protein_performer.cli import main as cli

log = logging.getLogger("bench_families")
REPO = Path(__file__).resolve().parents[1]
from protein_performer.experiments.families import TEM1, reference_correlations  # noqa: E402

EXACT = ["--model.config.attention", "exact", "--model.config.local_heads", "0"]


def _cli(*args: str) -> None:
    log.info("$ protein-performer %s", " ".join(args))
    if cli(list(args)):
        raise SystemExit(f"bench_families: `protein-performer {' '.join(args)}` failed")


def _fit(config: Path, data_dir: Path, root: Path, steps: int, extra: list[str], val_every: int) -> float:
    started = time.perf_counter()
    _cli("fit", "--config", str(config), "--data.data_dir", str(data_dir), "--trainer.default_root_dir", str(root),
         "--trainer.max_steps", str(steps), "--trainer.val_check_interval", str(val_every),
         "--trainer.enable_progress_bar", "false", *extra)
    return time.perf_counter() - started


def seconds_per_step(config: Path, data_dir: Path, root: Path, extra: list[str]) -> float:
    """(time of a 60-step fit - time of a 20-step fit) / 40, after a 5-step warm-up fit: start-up
    and validation setup cancel, and the first fit's one-off costs (imports, first touch of
    memory) fall on the warm-up."""
    _fit(config, data_dir, root / "warmup", 5, extra, 1000)
    short = _fit(config, data_dir, root / "probe20", 20, extra, 1000)
    long = _fit(config, data_dir, root / "probe60", 60, extra, 1000)
    if long <= short:
        raise SystemExit(f"bench_families: a 60-step fit ({long:.1f} s) was not slower than a 20-step one "
                         f"({short:.1f} s); the machine is too noisy to measure, rerun it alone")
    return (long - short) / 40


def _score(checkpoint: Path, out: Path, args, *, context_length: int, contexts: int) -> dict:
    _cli("score-variants", "--checkpoint", str(checkpoint), "--fasta", str(args.fasta), "--variants",
         str(args.variants), "--offset-idx", str(args.offset_idx), "--score-col", args.score_col,
         "--homologs", str(args.homologs), "--contexts", str(contexts), "--context-tokens", str(context_length),
         "--bootstrap", str(args.bootstrap), "--out", str(out), "--overwrite")
    return json.loads(out.with_suffix(".json").read_text())


def _best(root: Path) -> Path:
    best = sorted((root / "checkpoints").glob("best-*.ckpt"))
    return best[-1] if best else root / "checkpoints" / "last.ckpt"


def _val_ppl(root: Path) -> float | None:
    import csv

    files = sorted(root.glob("csv/version_*/metrics.csv"))
    if not files:
        return None
    values = [float(r["val/ppl"]) for r in csv.DictReader(open(files[-1])) if r.get("val/ppl")]
    return min(values) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--homologs", type=Path, default=TEM1["homologs"])
    parser.add_argument("--fasta", type=Path, default=TEM1["fasta"])
    parser.add_argument("--variants", type=Path, default=TEM1["variants"])
    parser.add_argument("--offset-idx", type=int, default=TEM1["offset_idx"])
    parser.add_argument("--score-col", default=TEM1["score_col"])
    parser.add_argument("--config", type=Path, default=CONFIG_DIR / "family_mlm.yaml")
    parser.add_argument("--minutes", type=float, default=10.0, help="training minutes per model")
    parser.add_argument("--contexts", type=int, default=2)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 8192, 16384])
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_families")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    data_dir = out / "data"
    _cli("prepare", str(args.homologs), "--family", "--out", str(data_dir), "--quiet")

    models = {"hybrid Performer": [], "exact attention": EXACT}
    rates = {name: seconds_per_step(args.config, data_dir, out / "probe" / name.split()[0], extra)
             for name, extra in models.items()}
    results: dict = {"minutes": args.minutes, "seconds_per_step": rates, "models": {}}
    for name, extra in models.items():
        steps = max(50, int(args.minutes * 60 / rates[name]))
        root = out / "runs" / name.split()[0]
        seconds = _fit(args.config, data_dir, root, steps, extra, max(steps // 6, 25))
        scored = _score(_best(root), out / f"scored_{name.split()[0]}.csv", args, context_length=8192,
                        contexts=args.contexts)
        results["models"][name] = {"steps": steps, "train_seconds": seconds, "val_ppl": _val_ppl(root),
                                   "checkpoint": str(_best(root)), "scored": scored}
        (out / "bench_families.json").write_text(json.dumps(results, indent=1) + "\n")

    def best_spearman(entry: dict) -> float:
        return max(m["spearman"] for m in entry["scored"]["models"] if m.get("spearman") is not None)

    winner = max(results["models"], key=lambda n: best_spearman(results["models"][n]))
    results["context_lengths"] = {}
    for length in args.lengths:
        started = time.perf_counter()
        scored = _score(Path(results["models"][winner]["checkpoint"]), out / f"scored_len{length}.csv", args,
                        context_length=length, contexts=1)
        with_homologs = next(m for m in scored["models"] if m["column"].endswith("+homologs"))
        results["context_lengths"][str(length)] = {"model": winner, "spearman": with_homologs["spearman"],
                                                   "ci95": with_homologs["ci95"],
                                                   "seconds": time.perf_counter() - started}
        (out / "bench_families.json").write_text(json.dumps(results, indent=1) + "\n")
    results["references"] = reference_correlations(args.variants, args.score_col, args.bootstrap)
    (out / "bench_families.json").write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(results))
    return 0


def markdown(results: dict) -> str:
    """The tables of docs/benchmarks/families.md from bench_families.json."""
    def corr(c: dict) -> str:
        ci = c.get("ci95")
        return f"{c['spearman']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    lines = [f"Equal wall clock: {results['minutes']:g} training minutes per model on 8,192-token family windows.",
             "", "| model | s/step | steps | held-out ppl | alone | + homologs | + homologs + profile (w) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results["models"].items():
        alone, ctx, mix = r["scored"]["models"][:3]  # score-variants' order: alone, + homologs, + profile
        lines.append(f"| {name} | {results['seconds_per_step'][name]:.3f} | {r['steps']:,} | "
                     f"{r['val_ppl'] or float('nan'):.3f} | {corr(alone)} | {corr(ctx)} | {corr(mix)} ({mix['profile_weight']:.2f}) |")
    first = next(iter(results["models"].values()))["scored"]
    lines += ["", "| baseline | Spearman |", "|---|---:|",
              f"| BLOSUM62 | {corr(first['baselines']['blosum62'])} |",
              f"| family profile | {corr(first['profile'])} |",
              *[f"| {k} | {corr(v)} |" for k, v in results.get("references", {}).items()]]
    if results.get("context_lengths"):
        lines += ["", "| tokens in the window (homologs + wild type) | Spearman, model + homologs | seconds |",
                  "|---:|---:|---:|"]
        for length, r in results["context_lengths"].items():
            lines.append(f"| {int(length):,} | {corr(r)} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
