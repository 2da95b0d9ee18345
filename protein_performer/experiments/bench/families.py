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

    python scripts/bench_families.py [--minutes 10] [--out outputs/bench_families]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path

from protein_performer.experiments import places
from protein_performer.experiments.families import reference_correlations, spearman_cell, tem1
from protein_performer.experiments.registry import config_path
from protein_performer.experiments.report.tables import md_table
from protein_performer.experiments.runs import CommandFailed, cli_command

log = logging.getLogger("bench_families")
EXACT = ["--model.config.attention", "exact", "--model.config.local_heads", "0"]
"""The overrides that turn the family recipe's hybrid into exact softmax attention over the whole window."""


def _fit(config: Path, data_dir: Path, root: Path, steps: int, extra: list[str], val_every: int) -> float:
    """Seconds of one ``fit`` of ``steps`` steps (validation every ``val_every``) into ``root``."""
    return cli_command("fit", "--config", str(config), "--data.data_dir", str(data_dir), "--trainer.default_root_dir",
                       str(root), "--trainer.max_steps", str(steps), "--trainer.val_check_interval", str(val_every),
                       "--trainer.enable_progress_bar", "false", *extra)


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


def _score(checkpoint: Path, out: Path, args: argparse.Namespace, *, context_length: int, contexts: int) -> dict:
    cli_command("score-variants", "--checkpoint", str(checkpoint), "--fasta", str(args.fasta), "--variants",
                str(args.variants), "--offset-idx", str(args.offset_idx), "--score-col", args.score_col,
                "--homologs", str(args.homologs), "--contexts", str(contexts), "--context-tokens", str(context_length),
                "--bootstrap", str(args.bootstrap), "--out", str(out), "--overwrite")
    return json.loads(out.with_suffix(".json").read_text())


def _best(root: Path) -> Path:
    best = sorted((root / "checkpoints").glob("best-*.ckpt"))
    return best[-1] if best else root / "checkpoints" / "last.ckpt"


def _val_ppl(root: Path) -> float | None:
    files = sorted(root.glob("csv/version_*/metrics.csv"))
    if not files:
        return None
    with open(files[-1], newline="") as fh:
        values = [float(r["val/ppl"]) for r in csv.DictReader(fh) if r.get("val/ppl")]
    return min(values) if values else None


def create_parser() -> argparse.ArgumentParser:
    files = tem1()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--homologs", type=Path, default=files["homologs"])
    parser.add_argument("--fasta", type=Path, default=files["fasta"])
    parser.add_argument("--variants", type=Path, default=files["variants"])
    parser.add_argument("--offset-idx", type=int, default=files["offset_idx"])
    parser.add_argument("--score-col", default=files["score_col"])
    parser.add_argument("--config", type=Path, default=config_path("family_mlm"))
    parser.add_argument("--minutes", type=float, default=10.0, help="training minutes per model")
    parser.add_argument("--contexts", type=int, default=2)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 8192, 16384])
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=places.workdir() / "outputs" / "bench_families")
    return parser


def equal_wall_clock(args: argparse.Namespace, data_dir: Path, results: dict, save) -> None:
    """Stage 1: each model's seconds per step, then ``--minutes`` of training each, scored on the variants."""
    models = {"hybrid Performer": [], "exact attention": EXACT}
    rates = {name: seconds_per_step(args.config, data_dir, args.out / "probe" / name.split()[0], extra)
             for name, extra in models.items()}
    results.update({"minutes": args.minutes, "seconds_per_step": rates, "models": {}})
    for name, extra in models.items():
        steps = max(50, int(args.minutes * 60 / rates[name]))
        root = args.out / "runs" / name.split()[0]
        seconds = _fit(args.config, data_dir, root, steps, extra, max(steps // 6, 25))
        scored = _score(_best(root), args.out / f"scored_{name.split()[0]}.csv", args, context_length=8192,
                        contexts=args.contexts)
        results["models"][name] = {"steps": steps, "train_seconds": seconds, "val_ppl": _val_ppl(root),
                                   "checkpoint": str(_best(root)), "scored": scored}
        save()


def context_lengths(args: argparse.Namespace, results: dict, save) -> None:
    """Stage 2: the better model with ``--lengths`` tokens of homologs + wild type in the window."""
    def best_spearman(entry: dict) -> float:
        return max(m["spearman"] for m in entry["scored"]["models"] if m.get("spearman") is not None)

    winner = max(results["models"], key=lambda n: best_spearman(results["models"][n]))
    results["context_lengths"] = {}
    for length in args.lengths:
        started = time.perf_counter()
        scored = _score(Path(results["models"][winner]["checkpoint"]), args.out / f"scored_len{length}.csv", args,
                        context_length=length, contexts=1)
        with_homologs = next(m for m in scored["models"] if m["column"].endswith("+homologs"))
        results["context_lengths"][str(length)] = {"model": winner, "spearman": with_homologs["spearman"],
                                                   "ci95": with_homologs["ci95"],
                                                   "seconds": time.perf_counter() - started}
        save()


def main(argv: list[str] | None = None) -> int:
    args = create_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    args.out.mkdir(parents=True, exist_ok=True)
    data_dir = args.out / "data"
    results: dict = {}

    def save() -> None:
        (args.out / "bench_families.json").write_text(json.dumps(results, indent=1) + "\n")

    try:
        cli_command("prepare", str(args.homologs), "--family", "--out", str(data_dir), "--quiet")
        equal_wall_clock(args, data_dir, results, save)
        context_lengths(args, results, save)
    except CommandFailed as error:
        raise SystemExit(f"bench_families: {error}") from None
    results["references"] = reference_correlations(args.variants, args.score_col, args.bootstrap)
    save()
    print(markdown(results))
    return 0


def markdown(results: dict) -> str:
    """The tables of docs/benchmarks/families.md from bench_families.json."""
    models = []
    for name, r in results["models"].items():
        alone, ctx, mix = r["scored"]["models"][:3]  # score-variants' order: alone, + homologs, + profile
        models.append([name, f"{results['seconds_per_step'][name]:.3f}", f"{r['steps']:,}",
                       f"{r['val_ppl'] or float('nan'):.3f}", spearman_cell(alone), spearman_cell(ctx),
                       f"{spearman_cell(mix)} ({mix['profile_weight']:.2f})"])
    first = next(iter(results["models"].values()))["scored"]
    baselines = [["BLOSUM62", spearman_cell(first["baselines"]["blosum62"])],
                 ["family profile", spearman_cell(first["profile"])],
                 *[[k, spearman_cell(v)] for k, v in results.get("references", {}).items()]]
    lines = [f"Equal wall clock: {results['minutes']:g} training minutes per model on 8,192-token family windows.",
             "", md_table(["model", "s/step", "steps", "held-out ppl", "alone", "+ homologs",
                           "+ homologs + profile (w)"], models, align="lrrrrrr"),
             "", md_table(["baseline", "Spearman"], baselines, align="lr")]
    if results.get("context_lengths"):
        lines += ["", md_table(["tokens in the window (homologs + wild type)", "Spearman, model + homologs", "seconds"],
                               [[f"{int(n):,}", spearman_cell(r), f"{r['seconds']:.0f}"]
                                for n, r in results["context_lengths"].items()], align="rrr")]
    return "\n".join(lines) + "\n"
