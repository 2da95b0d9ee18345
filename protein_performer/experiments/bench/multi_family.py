"""Many families, one model: does a Performer read a family it never saw from its window?
(docs/benchmarks/families.md, section 7; issue 23, goal 2)

1. **Families.** ``protein-performer paralogs`` splits the E. coli K-12 proteome into families of
   paralogs (jackhmmer, greedy cover; defaults of the command), after removing every protein a
   search of the assay's wild type finds (``--exclude``): TEM-1's family shares nothing with them.
2. **Held-out families.** A family is held out when ``hash_unit(query accession) < --held-out``
   (0.1; :func:`protein_performer.corpus.split_rule.hash_unit`, blake2b to [0, 1)): a rule fixed
   before any result, not a choice.
3. **Fit** ``configs/multi_family_mlm.yaml`` on the other families (``prepare --family A B ...``),
   unless ``--checkpoint`` gives a model trained that way.
4. **Held-out families, leave-one-out** (:mod:`protein_performer.variants.heldout`): 15% of each
   member's residues hidden and predicted alone and with the family's other members (below 80%
   identity to it) in the window; mean log-likelihood per residue, and the gain.
5. **TEM-1** (never trained on): ``score-variants --homologs`` with the TEM-1 family: the model
   alone (one sequence), with homologs in the window, the profile, the mix; then with ``--lengths``
   tokens of homologs + wild type in the window (one context draw each).

Writes ``--out``/bench_multi_family.json and markdown tables to stdout (:func:`markdown`, a function of
the JSON). Run it alone.

    python scripts/bench_multi_family.py [--held-out 0.1] [--checkpoint CKPT] [--out outputs/bench_multi_family]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path

import numpy as np

from protein_performer.corpus.split_rule import hash_unit
from protein_performer.experiments import places
from protein_performer.experiments.families import spearman_cell, tem1
from protein_performer.experiments.registry import config_path
from protein_performer.experiments.report.tables import md_table
from protein_performer.experiments.runs import CommandFailed, cli_command
from protein_performer.stats import bootstrap_draws, interval95

log = logging.getLogger("bench_multi_family")


def held_out(query: str, fraction: float) -> bool:
    """Whether the family of ``query`` (its accession) is held out: ``hash_unit(query) < fraction``."""
    return hash_unit(query) < fraction


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=None, help="proteome FASTA (default: the shared E. coli file)")
    parser.add_argument("--out", type=Path, default=places.workdir() / "outputs" / "bench_multi_family")
    parser.add_argument("--held-out", type=float, default=0.1, help="share of families held out by the hash rule")
    parser.add_argument("--config", type=Path, default=config_path("multi_family_mlm"))
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a model fit on this run's training families: skip stage 3")
    parser.add_argument("--contexts", type=int, default=4, help="context draws for TEM-1's homolog-conditioned score")
    parser.add_argument("--lengths", type=int, nargs="*", default=[1024, 2048, 4096, 8192, 16384],
                        help="window sizes (tokens) for the context-length sweep on TEM-1")
    return parser


def split_families(args: argparse.Namespace, minutes: dict[str, float]) -> tuple[int, list[Path], list[Path]]:
    """Stages 1 and 2: the proteome's paralog families (found once into ``--out``/families), and which
    are held out. Returns the number of families, the training families' files and the held-out ones'."""
    families = args.out / "families"
    if not (families / "families.tsv").is_file():
        minutes["paralogs"] = cli_command("paralogs", "--db", str(args.db or places.ecoli()), "--out-dir",
                                          str(families), "--exclude", str(tem1()["fasta"]), "--cpus", "2", "--quiet",
                                          "--overwrite") / 60
    with open(families / "families.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    train = [families / r["file"] for r in rows if not held_out(r["query"], args.held_out)]
    held = [families / r["file"] for r in rows if held_out(r["query"], args.held_out)]
    log.info("%d families: %d for training, %d held out", len(rows), len(train), len(held))
    return len(rows), train, held


def fit_families(args: argparse.Namespace, train: list[Path], minutes: dict[str, float]) -> Path:
    """Stage 3: ``prepare --family`` the training families and fit ``--config`` on them; the last checkpoint."""
    data_dir, run_dir = args.out / "prepared", args.out / "run"
    minutes["prepare"] = cli_command("prepare", *map(str, train), "--family", "--out", str(data_dir), "--quiet") / 60
    steps = [] if args.steps is None else ["--trainer.max_steps", str(args.steps)]
    minutes["fit"] = cli_command("fit", "--config", str(args.config), "--data.data_dir", str(data_dir),
                                 "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false",
                                 *steps) / 60
    # the last step, not the best validation perplexity: a training family's held-out members are
    # one or two per window, so validation measures single sequences, not reading the family
    return run_dir / "checkpoints" / "last.ckpt"


def held_out_gains(checkpoint: Path, held: list[Path], minutes: dict[str, float]) -> list[dict]:
    """Stage 4: each held-out family's leave-one-out log-likelihood alone and with its homologs."""
    from protein_performer.checkpoint import load_checkpoint
    from protein_performer.corpus.families import read_family
    from protein_performer.variants.heldout import context_gain

    started = time.perf_counter()
    model = load_checkpoint(checkpoint).model
    gains = [context_gain(model, read_family(path)) for path in held]
    minutes["held-out families"] = (time.perf_counter() - started) / 60
    return [g.__dict__ | {"gain": g.gain} for g in gains]


def score_tem1(args: argparse.Namespace, checkpoint: Path, minutes: dict[str, float]) -> tuple[dict, dict]:
    """Stage 5: TEM-1's variants scored by the model (``score-variants --homologs``), then with each of
    ``--lengths`` tokens of homologs in the window. Returns the scores and the context-length sweep."""
    files = tem1()

    def score(path: Path, *extra: str) -> tuple[dict, float]:
        took = cli_command("score-variants", "--checkpoint", str(checkpoint), "--fasta", str(files["fasta"]),
                           "--variants", str(files["variants"]), "--offset-idx", str(files["offset_idx"]),
                           "--score-col", files["score_col"], "--homologs", str(files["homologs"]), "--out",
                           str(path), "--overwrite", *extra) / 60
        return json.loads(path.with_suffix(".json").read_text()), took

    scored, minutes["score-variants"] = score(args.out / "tem1.csv", "--contexts", str(args.contexts))
    lengths = {}
    for length in args.lengths:
        swept, took = score(args.out / f"tem1_len{length}.csv", "--contexts", "1", "--context-tokens", str(length),
                            "--profile-weight", "0")
        ctx = next(m for m in swept["models"] if m["column"].endswith("+homologs"))
        lengths[length] = {"spearman": ctx["spearman"], "ci95": ctx["ci95"], "minutes": took}
    return scored, lengths


def held_out_mean(gains: list[dict]) -> dict:
    """The held-out families together: residue-weighted means, and the mean gain per family with its
    95% bootstrap interval over families."""
    per_family = np.array([g["gain"] for g in gains])
    residues = np.array([g["residues"] for g in gains])
    return {"alone": float(np.average([g["alone"] for g in gains], weights=residues)),
            "with_homologs": float(np.average([g["with_homologs"] for g in gains], weights=residues)),
            "gain_per_family": float(per_family.mean()),
            "gain_per_family_ci": interval95(bootstrap_draws(lambda rows: (per_family[rows].mean(1),),
                                                             len(per_family), 2000, seed=0)[0]),
            "families_gaining": int((per_family > 0).sum())}


def main(argv: list[str] | None = None) -> int:
    args = create_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    args.out.mkdir(parents=True, exist_ok=True)
    minutes: dict[str, float] = {}
    try:
        families, train, held = split_families(args, minutes)
        checkpoint = args.checkpoint or fit_families(args, train, minutes)
        gains = held_out_gains(checkpoint, held, minutes)
        scored, lengths = score_tem1(args, checkpoint, minutes)
    except CommandFailed as error:
        raise SystemExit(f"bench_multi_family: {error}") from None
    result = {"checkpoint": str(checkpoint), "families": families, "train_families": len(train),
              "held_out_families": len(held), "minutes": minutes, "held_out": gains,
              "held_out_mean": held_out_mean(gains), "tem1": scored, "context_lengths": lengths}
    (args.out / "bench_multi_family.json").write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    print(json.dumps({"minutes": minutes}, indent=1))
    return 0


def markdown(result: dict) -> str:
    """The tables of docs/benchmarks/families.md, section 7, from bench_multi_family.json."""
    gains, m = result["held_out"], result["held_out_mean"]
    lo, hi = m["gain_per_family_ci"]
    rows = [[Path(g["family"]).stem, g["members"], g["residues"], f"{g['alone']:.3f}", f"{g['with_homologs']:.3f}",
             f"{g['gain']:+.3f}"] for g in gains]
    rows.append([f"**all {len(gains)}** (residue-weighted)", sum(g["members"] for g in gains),
                 sum(g["residues"] for g in gains), f"{m['alone']:.3f}", f"{m['with_homologs']:.3f}",
                 f"{m['with_homologs'] - m['alone']:+.3f}"])
    tem1_scored = result["tem1"]
    scorers = [["BLOSUM62", spearman_cell(tem1_scored["baselines"]["blosum62"])],
               ["family profile", spearman_cell(tem1_scored["profile"])]]
    scorers += [[s["strategy"] + (f" (w {s['profile_weight']:.2f})" if "profile_weight" in s else ""), spearman_cell(s)]
                for s in tem1_scored["models"]]
    lengths = [[f"{int(n):,}", spearman_cell(r), f"{r['minutes']:.1f}"] for n, r in result["context_lengths"].items()]
    return "\n".join([
        md_table(["held-out family", "members", "hidden residues", "alone", "with homologs", "gain"], rows,
                 align="lrrrrr"), "",
        f"Mean gain per family {m['gain_per_family']:+.3f} nats [{lo:+.3f}, {hi:+.3f}]; "
        f"{m['families_gaining']} of {len(gains)} families gain.", "",
        md_table(["TEM-1 scorer (4,996 variants)", "Spearman [95% CI]"], scorers, align="lr"), "",
        md_table(["tokens in the window (homologs + wild type)", "Spearman, model + homologs", "minutes"], lengths,
                 align="rrr")])
