"""Many families, one model: does a Performer read a family it never saw from its window?
(docs/benchmarks/families.md, section 7; issue 23, goal 2)

1. **Families.** ``protein-performer paralogs`` splits the E. coli K-12 proteome into families of
   paralogs (jackhmmer, greedy cover; defaults of the command), after removing every protein a
   search of the assay's wild type finds (``--exclude``): TEM-1's family shares nothing with them.
2. **Held-out families.** A family is held out when ``blake2b(query accession) / 2**64 <
   --held-out`` (0.1): a rule fixed before any result, not a choice.
3. **Fit** ``configs/multi_family_mlm.yaml`` on the other families (``prepare --family A B ...``),
   unless ``--checkpoint`` gives a model trained that way.
4. **Held-out families, leave-one-out** (:mod:`protein_performer.variants.heldout`): 15% of each
   member's residues hidden and predicted alone and with the family's other members (below 80%
   identity to it) in the window; mean log-likelihood per residue, and the gain.
5. **TEM-1** (never trained on): ``score-variants --homologs`` with the TEM-1 family: the model
   alone (one sequence), with homologs in the window, the profile, the mix; then with ``--lengths``
   tokens of homologs + wild type in the window (one context draw each).

Writes ``--out``/bench_multi_family.json and markdown tables to stdout. Run it alone.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from protein_performer.cli import CONFIG_DIR
from protein_performer.cli import main as cli
from protein_performer.stats import bootstrap_draws, interval95

log = logging.getLogger("bench_multi_family")
REPO = Path(__file__).resolve().parents[1]
from protein_performer.experiments.families import SHARED, TEM1  # noqa: E402

ECOLI = SHARED / "UP000000625_83333.fasta.gz"


def _cli(*args: str) -> float:
    log.info("$ protein-performer %s", " ".join(args))
    started = time.perf_counter()
    if cli(list(args)):
        raise SystemExit(f"bench_multi_family: `protein-performer {' '.join(args)}` failed")
    return (time.perf_counter() - started) / 60


def held_out(query: str, fraction: float) -> bool:
    """Whether the family of ``query`` (its accession) is held out: blake2b(query) / 2**64 < fraction."""
    digest = hashlib.blake2b(query.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=None, help="proteome FASTA (default: the shared E. coli file)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_multi_family")
    parser.add_argument("--held-out", type=float, default=0.1, help="share of families held out by the hash rule")
    parser.add_argument("--config", type=Path, default=CONFIG_DIR / "multi_family_mlm.yaml")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a model fit on this run's training families: skip stage 3")
    parser.add_argument("--contexts", type=int, default=4, help="context draws for TEM-1's homolog-conditioned score")
    parser.add_argument("--lengths", type=int, nargs="*", default=[1024, 2048, 4096, 8192, 16384],
                        help="window sizes (tokens) for the context-length sweep on TEM-1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    db = args.db or ECOLI
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    minutes: dict[str, float] = {}

    families = out / "families"
    if not (families / "families.tsv").is_file():
        minutes["paralogs"] = _cli("paralogs", "--db", str(db), "--out-dir", str(families), "--exclude",
                                   str(TEM1["fasta"]), "--cpus", "2", "--quiet", "--overwrite")
    with open(families / "families.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    train = [families / r["file"] for r in rows if not held_out(r["query"], args.held_out)]
    held = [families / r["file"] for r in rows if held_out(r["query"], args.held_out)]
    log.info("%d families: %d for training, %d held out", len(rows), len(train), len(held))

    checkpoint = args.checkpoint
    if checkpoint is None:
        data_dir = out / "prepared"
        minutes["prepare"] = _cli("prepare", *map(str, train), "--family", "--out", str(data_dir), "--quiet")
        run_dir = out / "run"
        steps = [] if args.steps is None else ["--trainer.max_steps", str(args.steps)]
        minutes["fit"] = _cli("fit", "--config", str(args.config), "--data.data_dir", str(data_dir),
                              "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false",
                              *steps)
        # the last step, not the best validation perplexity: a training family's held-out members are
        # one or two per window, so validation measures single sequences, not reading the family
        checkpoint = run_dir / "checkpoints" / "last.ckpt"

    from protein_performer.checkpoint import load_checkpoint
    from protein_performer.corpus.families import read_family
    from protein_performer.variants.heldout import context_gain

    started = time.perf_counter()
    model = load_checkpoint(checkpoint).model
    gains = [context_gain(model, read_family(path)) for path in held]
    minutes["held-out families"] = (time.perf_counter() - started) / 60

    def score(path: Path, *extra: str) -> tuple[dict, float]:
        took = _cli("score-variants", "--checkpoint", str(checkpoint), "--fasta", str(TEM1["fasta"]), "--variants",
                    str(TEM1["variants"]), "--offset-idx", str(TEM1["offset_idx"]), "--score-col", TEM1["score_col"],
                    "--homologs", str(TEM1["homologs"]), "--out", str(path), "--overwrite", *extra)
        return json.loads(path.with_suffix(".json").read_text()), took

    tem1, minutes["score-variants"] = score(out / "tem1.csv", "--contexts", str(args.contexts))
    lengths = {}
    for length in args.lengths:
        scored, took = score(out / f"tem1_len{length}.csv", "--contexts", "1", "--context-tokens", str(length),
                             "--profile-weight", "0")
        ctx = next(m for m in scored["models"] if m["column"].endswith("+homologs"))
        lengths[length] = {"spearman": ctx["spearman"], "ci95": ctx["ci95"], "minutes": took}

    per_family = np.array([g.gain for g in gains])
    residues = np.array([g.residues for g in gains])
    result = {
        "checkpoint": str(checkpoint), "families": len(rows), "train_families": len(train),
        "held_out_families": len(held), "minutes": minutes,
        "held_out": [g.__dict__ | {"gain": g.gain} for g in gains],
        "held_out_mean": {
            "alone": float(np.average([g.alone for g in gains], weights=residues)),
            "with_homologs": float(np.average([g.with_homologs for g in gains], weights=residues)),
            "gain_per_family": float(per_family.mean()),
            "gain_per_family_ci": interval95(bootstrap_draws(lambda rows: (per_family[rows].mean(1),),
                                                             len(per_family), 2000, seed=0)[0]),
            "families_gaining": int((per_family > 0).sum())},
        "tem1": tem1, "context_lengths": lengths,
    }
    (out / "bench_multi_family.json").write_text(json.dumps(result, indent=1) + "\n")

    lines = ["| held-out family | members | hidden residues | alone | with homologs | gain |", "|---|---:|---:|---:|---:|---:|"]
    for g in gains:
        lines.append(f"| {Path(g.family).stem} | {g.members} | {g.residues} | {g.alone:.3f} | "
                     f"{g.with_homologs:.3f} | {g.gain:+.3f} |")
    m = result["held_out_mean"]
    lo, hi = m["gain_per_family_ci"]
    lines.append(f"| **all {len(gains)}** (residue-weighted) | {sum(g.members for g in gains)} | {int(residues.sum())} | "
                 f"{m['alone']:.3f} | {m['with_homologs']:.3f} | {m['with_homologs'] - m['alone']:+.3f} |")
    lines.append("")
    lines.append(f"Mean gain per family {m['gain_per_family']:+.3f} nats [{lo:+.3f}, {hi:+.3f}]; "
                 f"{m['families_gaining']} of {len(gains)} families gain.")
    def corr(c: dict) -> str:
        return f"{c['spearman']:.3f} [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]"

    lines += ["", "| TEM-1 scorer (4,996 variants) | Spearman [95% CI] |", "|---|---:|",
              f"| BLOSUM62 | {corr(tem1['baselines']['blosum62'])} |", f"| family profile | {corr(tem1['profile'])} |"]
    for m in tem1["models"]:
        weight = f" (w {m['profile_weight']:.2f})" if "profile_weight" in m else ""
        lines.append(f"| {m['strategy']}{weight} | {corr(m)} |")
    lines += ["", "| tokens in the window (homologs + wild type) | Spearman, model + homologs | minutes |",
              "|---:|---:|---:|"]
    lines += [f"| {n:,} | {corr(r)} | {r['minutes']:.1f} |" for n, r in lengths.items()]
    print("\n".join(lines))
    print(json.dumps({"minutes": minutes}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
