"""``make variants`` (``scripts/variants.py``): variant effects from a protein's family, end to end (TEM-1 by default).

The one-assay case of ``protein-performer benchmark`` (:func:`protein_performer.experiments.benchmark.run_assay`,
the same stages and files in ``--out``):

1. the family's recipe (:mod:`protein_performer.experiments.recipe`: held-out members, sequence
   weights, steps, early stopping, all from the family) -> ``recipe.json``;
2. ``prepare --family`` with the recipe's splits and weights -> ``data/``;
3. ``fit`` configs/family_mlm.yaml with the recipe (a number of steps and early stopping on
   held-out homologs, never a wall-clock cap) -> ``run/``;
4. ``score-variants --homologs`` of the best checkpoint on held-out homologs: BLOSUM62, the family
   profile, the model alone, the model with homologs in its window, and the model-profile mix
   (its weight chosen on held-out homologs) -> ``scored.csv`` / ``scored.json``;
5. ``summary.md`` / ``summary.json``: Spearman with 95% intervals for every scorer, beside the
   published columns the variants CSV carries (EVmutation independent and pairwise,
   DeepSequence), the recipe's choices and the minutes each stage took.

A finished run is reported again, not redone (``--redo`` runs it again, replacing only its own
files); an interrupted one resumes (``fit`` from its ``last.ckpt``). Defaults are the shared TEM-1
files (../shared/data/families and ../shared/data/variants); give your own with ``--homologs``,
``--fasta``, ``--variants``, ``--offset-idx`` and ``--score-col``. Every step is the project's CLI,
called in-process and logged, so each can be rerun by hand. Outputs go under the working directory
(``make variants`` runs in the checkout's root).
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from protein_performer.experiments import places
from protein_performer.experiments.registry import config_path
from protein_performer.experiments.report.tables import md_table

log = logging.getLogger("variants")


def tem1() -> dict:
    """The shared TEM-1 files (in :func:`~protein_performer.experiments.places.shared_data`) and the
    scan's settings: ``homologs``, ``fasta``, ``variants``, ``offset_idx``, ``score_col``."""
    shared = places.shared_data()
    return {"homologs": shared / "families" / "BLAT_ECOLX_ColabFold_2202.a3m",
            "fasta": shared / "variants" / "BLAT_ECOLX_Ranganathan2015.fasta",
            "variants": shared / "variants" / "BLAT_ECOLX_Ranganathan2015.csv",
            "offset_idx": 24, "score_col": "2500"}


def spearman_cell(c: dict) -> str:
    """A correlation as a table cell: ``0.637 [0.620, 0.655]`` (the interval when there is one)."""
    ci = c.get("ci95")
    return f"{c['spearman']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
REFERENCES = {"mutation_effect_prediction_independent": "EVmutation, independent (CSV column)",
              "mutation_effect_prediction_pairwise": "EVmutation, pairwise (CSV column)",
              "mutation_effect_prediction_vae_ensemble": "DeepSequence, ensemble (CSV column)"}


def _shown(path: Path) -> str:
    """``path`` relative to the working directory (summaries carry no machine's absolute paths)."""
    return os.path.relpath(Path(path).resolve(), Path.cwd())


def reference_correlations(variants: Path, score_col: str, bootstrap: int) -> dict[str, dict]:
    """Spearman of the published predictions the CSV carries (rows where both are present)."""
    import csv

    from protein_performer.variants import spearman

    with open(variants, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    out = {}
    for column, label in REFERENCES.items():
        if not rows or column not in rows[0]:
            continue

        def number(text: str | None) -> float:
            try:
                return float(text) if text not in (None, "") else np.nan
            except ValueError:
                return np.nan

        x = np.array([number(r[column]) for r in rows])
        y = np.array([number(r[score_col]) for r in rows])
        c = spearman(x, y, bootstrap=bootstrap)
        out[label] = {"spearman": c.spearman, "ci95": c.ci95, "n": c.n}
    return out


def scorer_rows(summary: dict) -> list[tuple[str, dict]]:
    """(name, correlation) for every scorer of a score-variants summary, baselines first."""
    rows = [("BLOSUM62", summary["baselines"]["blosum62"])]
    if "profile" in summary:
        rows.append(("family profile (weighted, pseudocount %s)" % summary["profile"]["pseudocount"],
                     summary["profile"]))
    for m in summary["models"]:
        label = m["column"]
        if "profile_weight" in m:
            label += f" (profile weight {m['profile_weight']:.2f})"
        rows.append((label, m))
    return rows


def summary_markdown(summary: dict) -> str:
    """The table of ``summary.md``: every scorer's Spearman with its interval, and where it came from."""
    scorers = [*scorer_rows(summary["scored"]), *summary["references"].items()]
    lines = [f"Measured by `{summary['command']}` on {summary['date']} ({summary['minutes']:.1f} minutes in all, "
             f"{summary['cpus']} CPUs). Variants: `{summary['variants']}` ({summary['scored']['rows']:,} rows, "
             f"score column `{summary['scored']['score_col']}`); homologs: `{summary['homologs']}`.",
             "",
             md_table(["scorer", "Spearman [95% CI]", "rows"],
                      [[name, spearman_cell(c), f"{c['n']:,}"] for name, c in scorers], align="lrr")]
    lines += ["", "Minutes per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in summary["stage_minutes"].items()),
              f"Checkpoint: `{summary['checkpoint']}` ({summary.get('checkpoint_kind', 'best on the held-out homologs')}"
              f", step {summary['steps']:,}"
              + (f"; training ran to step {summary['last_step']:,}" if summary.get("last_step") else "") + ")."]
    if "recipe" in summary:
        r = summary["recipe"]
        lines.append(f"Recipe (chosen from the family): {r['members']:,} members, Neff {r['neff']:.0f} (weights at "
                     f"identity {r['identity']}), {r['held_out']} held out (split identity {r['split_identity']}), "
                     f"at most {r['steps']:,} steps, early stopping after {r['patience']} validations without a new "
                     "best.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from protein_performer.corpus.fasta import read_records
    from protein_performer.experiments.benchmark import OWN_FILES, Assay, Options, _forget, run_assay

    files = tem1()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--homologs", type=Path, default=files["homologs"])
    parser.add_argument("--fasta", type=Path, default=files["fasta"], help="the assay's wild type")
    parser.add_argument("--variants", type=Path, default=files["variants"])
    parser.add_argument("--offset-idx", type=int, default=files["offset_idx"])
    parser.add_argument("--score-col", default=files["score_col"])
    parser.add_argument("--config", type=Path, default=config_path("family_mlm"))
    parser.add_argument("--steps", type=int, default=None,
                        help="fixed training steps, no early stopping (default: the family's recipe)")
    parser.add_argument("--contexts", type=int, default=4, help="context draws for the homolog-conditioned score")
    parser.add_argument("--out", type=Path, default=places.workdir() / "outputs" / "variants")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--redo", action="store_true", help="run again from the start (replaces only this "
                                                            "workflow's own files in --out)")
    args = parser.parse_args(argv)
    for flag in ("homologs", "fasta", "variants"):
        if not getattr(args, flag).is_file():
            parser.error(f"--{flag} {getattr(args, flag)}: no such file")
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be a positive number of training steps, got {args.steps}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    started = time.time()
    out = args.out
    if args.redo:
        _forget(out)
    elif (out / "result.json").is_file():
        log.info("%s holds a finished run (its summary is below); --redo runs it again", out)
    else:
        foreign = [p.name for p in out.iterdir() if p.name not in (*OWN_FILES, "data", "run", "summary.md",
                                                                   "summary.json")] if out.is_dir() else []
        if foreign:
            log.info("%s also holds %s (left alone)", out, ", ".join(sorted(foreign)[:5]))
    wild_type = next(iter(read_records(args.fasta))).sequence
    assay = Assay(dms_id=args.variants.stem, variants=args.variants, target_seq=wild_type, msa=args.homologs,
                  offset_idx=args.offset_idx, score_col=args.score_col)
    result = run_assay(assay, out, Options(config=args.config, steps=args.steps, contexts=args.contexts,
                                           bootstrap=args.bootstrap))
    best = sorted((out / "run" / "checkpoints").glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    checkpoint = best[-1] if best else out / "run" / "checkpoints" / "last.ckpt"
    summary = {"date": datetime.date.today().isoformat(), "minutes": sum(result["stage_minutes"].values()),
               "command": " ".join(["python scripts/variants.py", *(sys.argv[1:] if argv is None else argv)]),
               "cpus": os.cpu_count(), "homologs": _shown(args.homologs), "variants": _shown(args.variants),
               "checkpoint": _shown(checkpoint), "checkpoint_kind": "best on the held-out homologs" if best else
               "last step (no validation ran)", "steps": result["best_step"], "last_step": result["last_step"],
               "recipe": result["recipe"], "stage_minutes": result["stage_minutes"],
               "scored": json.loads((out / "scored.json").read_text()),
               "references": reference_correlations(args.variants, args.score_col, args.bootstrap)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(summary_markdown(summary))
    log.info("\n%s", summary_markdown(summary))
    log.info("summary: %s, %s; scores: %s (%.1f minutes this time)", out / "summary.md", out / "summary.json",
             out / "scored.csv", (time.time() - started) / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
