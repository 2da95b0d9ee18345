"""``protein-performer benchmark``: many assays, one table (ProteinGym's layout in and out).

A reference CSV in ProteinGym's layout names the assays: ``DMS_id``, ``DMS_filename`` (in
``--dms-dir``), ``target_seq`` (the wild type), ``MSA_filename`` (in ``--msa-dir``), ``MSA_start``
and ``MSA_end`` (the target's residues the alignment covers, 1-based; empty: found by matching).
Optional columns this project adds: ``offset_idx`` (the number of target_seq's first residue,
default 1), ``DMS_score_column`` / ``DMS_binary_column`` / ``DMS_binary_fit`` / ``mutant_column``
(default: detected the ProteinGym way, :func:`protein_performer.variants.mutants.detect_columns`).

For each assay, in ``--out/assays/<DMS_id>/``:

1. ``recipe.json``: the family's recipe (:mod:`protein_performer.experiments.recipe`);
2. ``prepare --family`` -> ``data/``;
3. ``fit`` the family config with the recipe -> ``run/`` (early stopping on held-out homologs);
4. ``score-variants --homologs`` of the best checkpoint (and with ``--also-last`` the last one) ->
   ``scored.csv`` / ``scored.json``;
5. ``result.json``: metrics of every scorer (:mod:`protein_performer.variants.metrics`), minutes per
   stage, what the recipe chose.

A finished assay (its ``result.json``) is not redone; a killed run resumes at its first unfinished
stage (``fit`` from its ``last.ckpt``). A failing assay is reported in the table with its error and
the others go on. The summary (``summary.md``, ``summary.json``, and one ProteinGym-layout CSV per
metric, ``<metric>_DMS_level.csv``: a row per assay, a column per scorer) is rewritten after each
assay. ``make variants`` is the one-assay case (:mod:`protein_performer.experiments.families`).

The reference file and the checks of each assay before any work are :mod:`.benchmark_assays` (the
targets are checked by ``score-variants``' own rule, :func:`protein_performer.variants.metrics.read_targets`);
the table is :mod:`.benchmark_report`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from protein_performer.experiments.benchmark_assays import REQUIRED, Assay, check_assay, read_reference
from protein_performer.experiments.benchmark_report import (
    best_performer,
    save_json,
    summary_markdown,
    summary_tables,
    write_summary,
)

log = logging.getLogger(__name__)

STAGES = ("recipe", "prepare", "fit", "score-variants")


# --------------------------------------------------------------------------- one assay


@dataclass(frozen=True)
class Options:
    """How every assay is run."""

    config: Path
    steps: int | None = None
    """Fixed training steps instead of the recipe's (and no early stopping)."""
    contexts: int = 4
    bootstrap: int = 2000
    also_last: bool = False
    """Also score the last checkpoint (to compare it with the best)."""


def _cli(*args: str) -> float:
    """One CLI command in-process; its wall-clock minutes. Raises ``RuntimeError`` on failure."""
    from protein_performer.cli import main as cli

    log.info("$ protein-performer %s", " ".join(args))
    started = time.time()
    code = cli(list(args))
    if code:
        raise RuntimeError(f"`protein-performer {' '.join(args)}` failed with exit code {code} (its message is above)")
    return (time.time() - started) / 60


def _stage_file(folder: Path) -> Path:
    return folder / "stages.json"


def _load_stages(folder: Path) -> dict:
    path = _stage_file(folder)
    return json.loads(path.read_text()) if path.is_file() else {}


def _base_callbacks() -> list[dict]:
    import yaml

    from protein_performer.cli import BASE_CONFIG

    return yaml.safe_load(BASE_CONFIG.read_text())["trainer"]["callbacks"]


def run_assay(assay: Assay, folder: Path, options: Options) -> dict:
    """Stages 1-5 of the module docstring for one assay, each skipped when already done."""
    import yaml

    from protein_performer.experiments.recipe import FamilyRecipe, family_recipe, fit_overrides

    stages = _load_stages(folder)
    family = check_assay(assay) if not stages else None
    folder.mkdir(parents=True, exist_ok=True)

    def done(stage: str, minutes: float, **info) -> None:
        stages[stage] = {"minutes": round(minutes, 3), **info}
        save_json(_stage_file(folder), stages)

    if "recipe" not in stages:
        started = time.time()
        recipe = family_recipe(assay.msa, query=assay.query, family=family)
        save_json(folder / "recipe.json", recipe.as_dict())
        done("recipe", (time.time() - started) / 60)
    recipe_info = json.loads((folder / "recipe.json").read_text())
    recipe = FamilyRecipe(**recipe_info)
    split_args = recipe.split_args
    data_dir, run_dir = folder / "data", folder / "run"
    if "prepare" not in stages:
        query = ["--query", assay.query] if assay.query else []
        done("prepare", _cli("prepare", str(assay.msa), "--family", *query, "--out", str(data_dir), *split_args,
                             "--quiet"))
    if "fit" not in stages:
        overrides = fit_overrides(recipe, _base_callbacks())
        if options.steps is not None:  # fixed steps: the user's choice, no early stopping
            overrides = {"trainer": {"max_steps": options.steps}}
        recipe_yaml = folder / "recipe.yaml"
        recipe_yaml.write_text(yaml.safe_dump(overrides, sort_keys=False))
        last = run_dir / "checkpoints" / "last.ckpt"
        resume = ["--ckpt_path", str(last)] if last.is_file() else []
        if resume:
            log.info("%s: resuming fit from %s", assay.dms_id, last)
        minutes = _cli("fit", "--config", str(options.config), "--config", str(recipe_yaml),
                       "--data.data_dir", str(data_dir), "--trainer.default_root_dir", str(run_dir), *resume)
        done("fit", minutes, resumed=bool(resume))
    best, last = _checkpoints(run_dir)
    if "score-variants" not in stages:
        checkpoints = [best] + ([last] if options.also_last and last != best else [])
        fasta = folder / "wild_type.fasta"
        fasta.write_text(f">{assay.dms_id}\n{assay.target_seq}\n")
        extra = [*(["--mutation-col", assay.mutant_col] if assay.mutant_col else []),
                 *(["--score-col", assay.score_col] if assay.score_col else []),
                 *(["--label-col", assay.label_col] if assay.label_col else []),
                 *(["--msa-start", str(assay.msa_start)] if assay.msa_start else []),
                 *(["--query", assay.query] if assay.query else [])]
        done("score-variants", _cli(
            "score-variants", "--checkpoint", *map(str, checkpoints), "--fasta", str(fasta), "--variants",
            str(assay.variants), "--offset-idx", str(assay.offset_idx), "--label-fit", assay.label_fit, *extra,
            "--homologs", str(assay.msa), *split_args, "--contexts", str(options.contexts), "--bootstrap",
            str(options.bootstrap), "--out", str(folder / "scored.csv"), "--overwrite", "--quiet"))
    result = assay_result(assay, folder, stages, recipe_info, best, last)
    save_json(folder / "result.json", result)
    return result


def _checkpoints(run_dir: Path) -> tuple[Path, Path]:
    """(best on held-out loss, last step) of a finished fit."""
    folder = run_dir / "checkpoints"
    last = folder / "last.ckpt"
    best = sorted(folder.glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not last.is_file():
        raise RuntimeError(f"{folder}: no last.ckpt; the fit did not finish (rerun the benchmark to resume it)")
    return (best[-1] if best else last), last


def _step(checkpoint: Path) -> int:
    import torch

    return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"])


def assay_result(assay: Assay, folder: Path, stages: dict, recipe: dict, best: Path, last: Path) -> dict:
    """What ``result.json`` holds: every scorer's metrics on the rows it scores and on the rows every
    scorer scores (``common``), the published predictions the CSV carries, the recipe, minutes."""
    scored = json.loads((folder / "scored.json").read_text())
    entries = {"Performer " + m["column"].replace(best.stem, "best").replace(last.stem, "last"): m
               for m in scored["models"]}
    if "profile" in scored:
        entries["profile"] = scored["profile"]
    scorers = {name: m["metrics"] for name, m in entries.items()}
    scorers.update({name: b["metrics"] for name, b in scored["baselines"].items()})
    common = {name: m["metrics_common_rows"] for name, m in entries.items()}
    return {"DMS_id": assay.dms_id, "status": "done", "variants": assay.variants.name, "msa": assay.msa.name,
            "rows": scored["rows"], "invalid_rows": scored["invalid_rows"], "score_col": scored["score_col"],
            "label_col": scored["label_col"],
            "mutants_outside_columns": scored.get("profile", {}).get("mutants_outside_columns"),
            "recipe": recipe, "best_step": _step(best), "last_step": _step(last),
            "stage_minutes": {k: v["minutes"] for k, v in stages.items()},
            "profile_weight": next((m.get("profile_weight") for m in scored["models"] if "profile_weight" in m), None),
            "scorers": scorers, "common_rows": scored["common_rows"], "scorers_common_rows": common,
            "references": _references(assay, scored["score_col"])}


def _references(assay: Assay, score_col: str | None) -> dict:
    """Spearman of the published predictions the variants CSV carries (EVmutation, DeepSequence)."""
    if not score_col:
        return {}
    from protein_performer.experiments.families import reference_correlations

    return reference_correlations(assay.variants, score_col, bootstrap=0)


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from protein_performer.experiments.registry import config_path

    parser.add_argument("--reference", required=True, type=Path,
                        help="reference CSV in ProteinGym's layout (DMS_id, DMS_filename, target_seq, MSA_filename, "
                             "MSA_start, MSA_end; optional offset_idx, DMS_score_column, DMS_binary_column)")
    parser.add_argument("--dms-dir", required=True, type=Path, help="folder of the assays' CSVs")
    parser.add_argument("--msa-dir", required=True, type=Path, help="folder of the alignments (A2M, A3M, ...)")
    parser.add_argument("--out", required=True, type=Path, help="folder of per-assay work and the summary")
    parser.add_argument("--assays", nargs="+", default=None, metavar="DMS_ID", help="only these assays")
    parser.add_argument("--config", type=Path, default=config_path("family_mlm"), help="the family model's config")
    parser.add_argument("--steps", type=int, default=None,
                        help="fixed training steps for every assay (default: the recipe's, with early stopping)")
    parser.add_argument("--contexts", type=int, default=4, help="homolog context draws per score (default 4)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the intervals")
    parser.add_argument("--also-last", action="store_true",
                        help="also score the last checkpoint beside the best one on held-out homologs")
    parser.add_argument("--redo", nargs="+", default=[], metavar="DMS_ID",
                        help="run these assays again from the start (their own files in --out are replaced)")


def run(args: argparse.Namespace) -> int:
    from protein_performer.outputs import check_output, locked

    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.contexts < 1 or args.bootstrap < 0:
        raise ValueError("--contexts must be >= 1 and --bootstrap >= 0")
    assays = read_reference(args.reference, args.dms_dir, args.msa_dir, args.assays)
    check_output(args.out, "dir", inputs=[args.reference, *(a.variants for a in assays), *(a.msa for a in assays)],
                 flag="--out")
    options = Options(config=args.config, steps=args.steps, contexts=args.contexts, bootstrap=args.bootstrap,
                      also_last=args.also_last)
    meta = {"command": "protein-performer benchmark " + " ".join(_shown_argv(args)),
            "date": datetime.date.today().isoformat(), "cpus": os.cpu_count()}
    with locked(args.out, "--out"):
        return _run_all(args, assays, options, meta)


def _shown_argv(args: argparse.Namespace) -> list[str]:
    out = ["--reference", str(args.reference), "--dms-dir", str(args.dms_dir), "--msa-dir", str(args.msa_dir),
           "--out", str(args.out)]
    if args.steps:
        out += ["--steps", str(args.steps)]
    if args.also_last:
        out.append("--also-last")
    return out


def _run_all(args: argparse.Namespace, assays: list[Assay], options: Options, meta: dict) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for k, assay in enumerate(assays, start=1):
        folder = args.out / "assays" / assay.dms_id
        if assay.dms_id in args.redo:
            _forget(folder)
        result_file = folder / "result.json"
        started = time.time()
        if result_file.is_file():
            result = json.loads(result_file.read_text())
            state = "already done"
        else:
            try:
                result = run_assay(assay, folder, options)
                state = "done"
            except (ValueError, RuntimeError, OSError) as err:
                log.error("%s: failed: %s", assay.dms_id, err)
                result = {"DMS_id": assay.dms_id, "status": "failed", "error": str(err).splitlines()[0][:300]}
                state = "FAILED"
        results.append(result)
        write_summary(args.out, results, meta)
        shown = best_performer(result, "spearman") or best_performer(result, "auc")
        log.info("[%d/%d] %s: %s in %.1f min%s", k, len(assays), assay.dms_id, state, (time.time() - started) / 60,
                 f"; best Performer scorer {shown[0]} {shown[1]:.3f}" if shown else "")
    log.info("summary: %s (and summary.json, <metric>_DMS_level.csv)", args.out / "summary.md")
    return 0 if all(r.get("status") == "done" for r in results) else 1


OWN_FILES = ("stages.json", "recipe.json", "recipe.yaml", "wild_type.fasta", "scored.csv", "scored.json",
             "result.json")


def _forget(folder: Path) -> None:
    """Remove what the benchmark wrote for one assay (its own files and folders only)."""
    for name in OWN_FILES:
        if (folder / name).is_file():
            (folder / name).unlink()
    for sub in ("data", "run"):
        if (folder / sub).is_dir():
            log.info("--redo: removing %s", folder / sub)
            shutil.rmtree(folder / sub)


__all__ = ["REQUIRED", "Assay", "Options", "best_performer", "check_assay", "read_reference", "run_assay",
           "summary_markdown", "summary_tables", "write_summary", "add_arguments", "run"]
