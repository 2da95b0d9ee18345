"""`make demo` (``scripts/demo.py``): the main job end to end on the E. coli proteome (or a FASTA you name).

1. data: ``--fasta FILE``; else ../shared/data/UP000000625_83333.fasta.gz where it exists
   (``$PROTEIN_PERFORMER_SHARED_DATA``: :mod:`~protein_performer.experiments.places`); else
   data/raw/UP000000625.fasta.gz, downloaded once with `protein-performer fetch` and reused;
2. prepare it into data/prepared/<name>;
3. train configs/demo.yaml (a small hybrid Performer MLM) for its 4,000 steps, about 3 minutes on
   2 cores (``--steps N``: longer, with the cosine schedule spanning N steps; it learns more);
4. score the best checkpoint on the held-out test split next to the unigram baseline;
5. embed the held-out test proteins and derive the amino-acid similarity heatmaps vs BLOSUM62 from
   them, beside an untrained model of the same shape and the model on shuffled proteins;
6. write ``summary.json`` and ``summary.md`` (the held-out figures, with the date, command and
   minutes of this run) into ``--out``: copy the README's demo figures from there.

Every step is the project's own CLI, called in-process; the commands are logged so you can rerun
any of them by hand. Paths (data/, runs/demo, outputs/demo) are relative to the working directory:
run it from the checkout's root, as ``make demo`` does.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from protein_performer.corpus.fasta import read_records
from protein_performer.corpus.shards import open_split
from protein_performer.experiments import places
from protein_performer.experiments.registry import config_path
from protein_performer.experiments.report.tables import md_table
from protein_performer.experiments.runs import CommandFailed, cli_command

log = logging.getLogger("demo")


def find_data(fasta: Path | None) -> Path:
    """``fasta`` when given; else the shared E. coli proteome; else data/raw/UP000000625.fasta.gz,
    fetched once."""
    if fasta is not None:
        if not fasta.is_file():
            raise SystemExit(f"demo: --fasta {fasta}: no such file")
        return fasta
    if places.ecoli().is_file():
        return places.ecoli()
    fetched = places.workdir() / "data" / "raw" / "UP000000625.fasta.gz"
    if not fetched.is_file():
        log.info("no local E. coli proteome; downloading it once into %s", fetched)
        fetched.parent.mkdir(parents=True, exist_ok=True)
        cli_command("fetch", "--proteome", "UP000000625", "--out", str(fetched))
    return fetched


def write_held_out(fasta: Path, data_dir: Path, out: Path) -> int:
    """Write the test split's proteins, as their records in ``fasta``, to ``out``: the proteins
    the model never saw, for ``embed``. Returns how many."""
    held_out = set(open_split(data_dir, "test").ids)
    n = 0
    with open(out, "w") as fh:
        for record in read_records(fasta):
            if record.id in held_out:
                fh.write(f">{record.header}\n{record.sequence}\n")
                n += 1
    return n


def _ci(pair: list[float], digits: int, sign: str = "") -> str:
    return f"[{pair[0]:{sign}.{digits}f}, {pair[1]:{sign}.{digits}f}]"


def summary_lines(summary: dict) -> list[str]:
    """The console summary: where every output went and the held-out figures."""
    score, out, run_dir = summary["score"], Path(summary["out"]), summary["run_dir"]
    lines = [
        "",
        f"demo finished in {summary['minutes']:.1f} min",
        f"  data            {summary['fasta']} -> {summary['data_dir']}",
        f"  checkpoint      {summary['checkpoint']}",
        f"  training logs   {run_dir}/csv (CSV), {run_dir}/wandb (offline; `wandb sync` to upload)",
        f"  held-out score  {out / 'score_test.json'} ({score['tokens']:,} hidden residues, {score['passes']} masks):",
        f"    masked accuracy {score['accuracy']:.2%}  unigram {score['unigram_accuracy']:.2%}  "
        f"neighbour n-gram {score['context_accuracy']:.2%}",
        f"    perplexity      {score['perplexity']:.3f}  unigram {score['unigram_perplexity']:.3f}  "
        f"neighbour n-gram {score['context_perplexity']:.3f}",
        f"    vs unigram: accuracy {score['accuracy_gain']:+.2f} points (95% CI "
        f"{score['accuracy_gain_ci95'][0]:+.2f} to {score['accuracy_gain_ci95'][1]:+.2f}), perplexity x"
        f"{score['perplexity_ratio']:.4f} (95% CI {score['perplexity_ratio_ci95'][0]:.4f} to "
        f"{score['perplexity_ratio_ci95'][1]:.4f}): {'beats' if score['beats_unigram'] else 'does not clearly beat'} "
        "the unigram baseline",
        f"    vs neighbour n-gram: accuracy {score['context_accuracy_gain']:+.2f} points (95% CI "
        f"{score['context_accuracy_gain_ci95'][0]:+.2f} to {score['context_accuracy_gain_ci95'][1]:+.2f}), "
        f"perplexity x{score['context_perplexity_ratio']:.4f} (95% CI {score['context_perplexity_ratio_ci95'][0]:.4f} "
        f"to {score['context_perplexity_ratio_ci95'][1]:.4f}): "
        f"{'beats' if score['beats_context'] else 'does not clearly beat'} the n-gram",
        f"  embeddings      {out / 'embeddings.h5'}",
        f"  similarity      {out / 'similarity'} (heatmaps PNG/SVG, similarity.csv, blosum_comparison.json)",
    ]
    lines.append("    Pearson with BLOSUM62 (190 pairs; trained [95% bootstrap over proteins], then its controls):")
    for measure, trained, untrained, shuffled, above in similarity_rows(summary["similarity"]):
        lines.append(f"    {measure:<32} {trained:<24} untrained {untrained:>6}  shuffled {shuffled:>6}  "
                     f"above controls {above}")
    return lines


def similarity_rows(comparison: dict) -> list[tuple[str, str, str, str, str]]:
    """(measure, trained [CI], untrained, shuffled, above controls) for every measure on all heads,
    from ``similarity``'s blosum_comparison.json."""
    from protein_performer.analysis.similarity_study import find_figure

    study = comparison.get("study", {})
    rows = []
    for f in study.get("figures", []):
        if f["source"] != "trained" or f["heads"] not in ("all", "-"):
            continue
        ci = f" {_ci(f['ci'], 3)}" if f.get("ci") else ""
        others = [find_figure(study, source, f["measure"]) for source in ("untrained", "shuffled")]
        rows.append((f["measure"].replace("_", " "), f"{f['pearson']:.3f}{ci}",
                     *("n/a" if o is None else f"{o['pearson']:.3f}" for o in others),
                     "n/a" if f.get("above_controls") is None else f"{f['above_controls']:+.3f}"))
    return rows


def summary_markdown(summary: dict) -> str:
    """The held-out figures as markdown, marked with the run that measured them (for the README)."""
    s = summary["score"]
    rows = [
        ("masked accuracy", f"{s['accuracy']:.2%}", f"{s['unigram_accuracy']:.2%}", f"{s['context_accuracy']:.2%}"),
        ("perplexity", f"{s['perplexity']:.2f}", f"{s['unigram_perplexity']:.2f}", f"{s['context_perplexity']:.2f}"),
    ]
    lines = [
        f"Measured by `{summary['command']}` on {summary['date']} ({summary['minutes']:.1f} minutes, "
        f"{summary['cpus']} CPUs; the checkpoint best on validation, at step {summary['steps']:,}); held-out test split, {s['tokens']:,} hidden "
        f"residues over {s['passes']} masks.",
        "",
        md_table(["", "demo model", "unigram", "neighbour n-gram"], rows, align="lrrr"),
        "",
        f"- vs unigram: accuracy {s['accuracy_gain']:+.2f} points {_ci(s['accuracy_gain_ci95'], 2, '+')}, perplexity "
        f"ratio {s['perplexity_ratio']:.3f} {_ci(s['perplexity_ratio_ci95'], 3)} (95% paired bootstrap intervals).",
        f"- vs neighbour n-gram: accuracy {s['context_accuracy_gain']:+.2f} points "
        f"{_ci(s['context_accuracy_gain_ci95'], 2, '+')}, perplexity ratio {s['context_perplexity_ratio']:.3f} "
        f"{_ci(s['context_perplexity_ratio_ci95'], 3)}.",
    ]
    lines += ["", f"Amino-acid similarity vs BLOSUM62 on the {summary['similarity'].get('proteins', '')} held-out "
              "test proteins (Pearson over 190 pairs; `outputs/demo/similarity/`, one heatmap per measure):", "",
              md_table(["measure", "trained [95% CI]", "untrained", "shuffled residues", "above controls"],
                       [list(r) for r in similarity_rows(summary["similarity"])], align="lrrrr")]
    return "\n".join(lines) + "\n"


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fasta", type=Path, help="your own FASTA (default: the E. coli proteome)")
    parser.add_argument("--out", type=Path, default=places.workdir() / "outputs" / "demo", help="where results go")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default: configs/demo.yaml's 4,000, about 3 minutes on 2 cores in bf16); the "
                             "learning-rate schedule spans them, so more steps learn more")
    return parser


def run(args: argparse.Namespace, argv: list[str]) -> None:
    """The demo's steps (module docstring) with parsed ``args``; ``argv`` is recorded as the command."""
    started = time.time()
    fasta = find_data(args.fasta)
    name = fasta.name.split(".")[0]
    data_dir = places.workdir() / "data" / "prepared" / name
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    cli_command("prepare", str(fasta), "--out", str(data_dir))

    run_dir = places.workdir() / "runs" / "demo"  # configs/demo.yaml's trainer.default_root_dir
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # this demo's checkpoints only
    # A fixed number of steps, never a wall-clock cap: on a busy machine the demo is slower, not worse.
    steps = [] if args.steps is None else ["--trainer.max_steps", str(args.steps)]
    cli_command("fit", "--config", str(config_path("demo")), "--data.data_dir", str(data_dir), *steps)
    best = sorted((run_dir / "checkpoints").glob("best-*.ckpt"))
    checkpoint = best[-1] if best else run_dir / "checkpoints" / "last.ckpt"

    cli_command("score", "--checkpoint", str(checkpoint), "--data-dir", str(data_dir), "--split", "test",
                "--window-tokens", "512", "--batch-size", "8", "--passes", "5", "--out", str(out / "score_test.json"))
    score = json.loads((out / "score_test.json").read_text())

    held_out = out / "test_proteins.fasta"
    log.info("wrote the %d held-out test proteins to %s", write_held_out(fasta, data_dir, held_out), held_out)
    (out / "embeddings.h5").unlink(missing_ok=True)  # a new model: embed resumes only with the same weights
    cli_command("embed", "--checkpoint", str(checkpoint), "--fasta", str(held_out), "--out", str(out / "embeddings.h5"))
    cli_command("similarity", "--checkpoint", str(checkpoint), "--fasta", str(held_out), "--out", str(out / "similarity"),
                "--max-proteins", "300", "--row-block", "512", "--overwrite")
    comparison = json.loads((out / "similarity" / "blosum_comparison.json").read_text())

    summary = {"date": datetime.date.today().isoformat(), "minutes": (time.time() - started) / 60,
               "command": " ".join(["python scripts/demo.py", *argv]),
               "steps": int(torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"]),
               "cpus": os.cpu_count(), "fasta": str(fasta), "data_dir": str(data_dir), "checkpoint": str(checkpoint),
               "run_dir": str(run_dir), "out": str(out), "score": score, "similarity": comparison}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(summary_markdown(summary))
    log.info("\n%s", "\n".join(summary_lines(summary)))
    log.info("summary: %s, %s", out / "summary.md", out / "summary.json")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = create_parser()
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be a positive number of training steps, got {args.steps}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        run(args, argv)
    except CommandFailed as error:
        raise SystemExit(f"demo: {error}") from None
    return 0
