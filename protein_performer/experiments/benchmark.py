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
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

REQUIRED = ("DMS_id", "DMS_filename", "target_seq", "MSA_filename")
STAGES = ("recipe", "prepare", "fit", "score-variants")


@dataclass(frozen=True)
class Assay:
    """One row of the reference file, its files resolved."""

    dms_id: str
    variants: Path
    target_seq: str
    msa: Path
    msa_start: int | None = None
    msa_end: int | None = None
    offset_idx: int = 1
    score_col: str | None = None
    label_col: str | None = None
    label_fit: str = "auto"
    mutant_col: str | None = None
    query: str | None = None


def _int_or_none(text: str | None, where: str) -> int | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return int(float(text))
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a residue number; fix the row") from None


def read_reference(path: Path, dms_dir: Path, msa_dir: Path, only: list[str] | None = None) -> list[Assay]:
    """The assays of a ProteinGym-layout reference CSV; raises ``ValueError`` naming the file, the row
    and the fix for a missing column, a missing file, a bad wild type or a region outside it."""
    from protein_performer.alphabet import STANDARD_AMINO_ACIDS

    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: no assays; give a CSV with a header ({', '.join(REQUIRED)}) and one row per assay")
    missing = [c for c in REQUIRED if c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)}; a reference file in ProteinGym's layout has "
                         f"{', '.join(REQUIRED)}, MSA_start, MSA_end")
    assays, seen = [], set()
    for number, row in enumerate(rows, start=1):
        where = f"{path}: row {number} ({row['DMS_id'] or 'no DMS_id'})"
        dms_id = row["DMS_id"].strip()
        if not dms_id or dms_id in seen or "/" in dms_id or dms_id.startswith("."):
            raise ValueError(f"{where}: DMS_id must be a unique, non-empty name without '/' or a leading '.'")
        seen.add(dms_id)
        if only and dms_id not in only:
            continue
        variants, msa = dms_dir / row["DMS_filename"].strip(), msa_dir / row["MSA_filename"].strip()
        for flag, file in (("--dms-dir", variants), ("--msa-dir", msa)):
            if not file.is_file():
                raise ValueError(f"{where}: {file} does not exist; check the file name in the row and {flag}")
        target = row["target_seq"].strip().upper()
        bad = sorted(set(target) - set(STANDARD_AMINO_ACIDS))
        if not target or bad:
            raise ValueError(f"{where}: target_seq {'is empty' if not target else 'has ' + ', '.join(bad)}; give the "
                             "assay's wild type in the 20 standard one-letter codes")
        start = _int_or_none(row.get("MSA_start"), f"{where}: MSA_start")
        end = _int_or_none(row.get("MSA_end"), f"{where}: MSA_end")
        if (start is not None and not 1 <= start <= len(target)) or (
                end is not None and not (start or 1) <= end <= len(target)):
            raise ValueError(f"{where}: MSA_start {start} / MSA_end {end} do not fit target_seq ({len(target)} "
                             "residues); give 1-based residues of target_seq with start <= end")
        assays.append(Assay(dms_id=dms_id, variants=variants, target_seq=target, msa=msa, msa_start=start, msa_end=end,
                            offset_idx=_int_or_none(row.get("offset_idx"), f"{where}: offset_idx") or 1,
                            score_col=(row.get("DMS_score_column") or "").strip() or None,
                            label_col=(row.get("DMS_binary_column") or "").strip() or None,
                            label_fit=(row.get("DMS_binary_fit") or "").strip() or "auto",
                            mutant_col=(row.get("mutant_column") or "").strip() or None,
                            query=(row.get("MSA_query") or "").strip() or None))
    if only:
        unknown = sorted(set(only) - {a.dms_id for a in assays})
        if unknown:
            raise ValueError(f"{path}: no assay {', '.join(unknown)} for --assays; the file has "
                             f"{', '.join(sorted(seen)[:10])}")
    return assays


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


def _save_json(path: Path, value: dict) -> None:
    from protein_performer.outputs import written_atomically

    with written_atomically(path) as tmp:
        tmp.write_text(json.dumps(value, indent=1, allow_nan=False) + "\n")


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
        _save_json(_stage_file(folder), stages)

    if "recipe" not in stages:
        started = time.time()
        recipe = family_recipe(assay.msa, query=assay.query, family=family)
        _save_json(folder / "recipe.json", recipe.as_dict())
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
    _save_json(folder / "result.json", result)
    return result


def check_assay(assay: Assay):
    """Before any work: the wild type is the alignment's protein (and sits at ``MSA_start``), and the
    assay has scorable rows with a usable measurement or label. Raises ``ValueError`` naming the
    files and the fix; returns the family it read (for the recipe, so it is read once)."""
    from protein_performer.corpus.families import read_family
    from protein_performer.variants.metrics import check_target
    from protein_performer.variants.mutants import detect_columns, read_labels, read_variants
    from protein_performer.variants.profile import column_map

    family = read_family(assay.msa, query=assay.query)
    column_map(family, assay.target_seq, region_start=assay.msa_start, source=f"target_seq of {assay.dms_id}")
    try:
        table = read_variants(assay.variants, assay.target_seq, mutation_col=assay.mutant_col,
                              offset=assay.offset_idx, skip_invalid=True)
    except ValueError as err:
        raise ValueError(f"{assay.dms_id}: {err} (against target_seq with offset_idx {assay.offset_idx})") from None
    found = detect_columns(assay.variants, table.header, table.rows)
    score_col, label_col = assay.score_col or found["score"], assay.label_col or found["label"]
    if not score_col and not label_col:
        raise ValueError(f"{assay.variants}: no DMS_score, DMS_score_bin or clinical label column; name one with "
                         "DMS_score_column or DMS_binary_column in the reference row")
    scorable = np.array([m is not None for m in table.mutants])
    if score_col:
        from protein_performer.variants.command import _measured

        check_target(_measured(table, score_col)[scorable], binary=False, source=f"{assay.variants}: {score_col!r}")
    if label_col:
        check_target(read_labels(table, label_col, assay.label_fit)[scorable], binary=True,
                     source=f"{assay.variants}: {label_col!r}")
    return family


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


# --------------------------------------------------------------------------- the table


def best_performer(result: dict, metric: str) -> tuple[str, float] | None:
    """The best-scoring Performer scorer of an assay on ``metric`` (None if none has it)."""
    found = [(name, m[metric]["value"]) for name, m in result.get("scorers", {}).items()
             if name.startswith("Performer") and metric in m and m[metric]["value"] is not None]
    return max(found, key=lambda x: x[1]) if found else None


def summary_tables(results: list[dict]) -> dict[str, list[list]]:
    """One table per metric: a row per assay (and the mean over assays), a column per scorer."""
    from protein_performer.variants.metrics import METRICS

    done = [r for r in results if r.get("status") == "done"]
    scorers: list[str] = []
    for r in done:
        scorers += [s for s in r["scorers"] if s not in scorers]
    tables = {}
    for metric in METRICS:
        cols = [s for s in scorers if any(metric in r["scorers"].get(s, {}) for r in done)]
        if not cols:
            continue
        rows = []
        for r in done:
            if any(metric in r["scorers"].get(s, {}) for s in cols):
                rows.append([r["DMS_id"], *(r["scorers"].get(s, {}).get(metric, {}).get("value") for s in cols)])
        means = []
        for k in range(len(cols)):
            values = [row[k + 1] for row in rows if row[k + 1] is not None]
            means.append(float(np.mean(values)) if values else None)
        tables[metric] = [["DMS_id", *cols], *rows, ["Average", *means]]
    return tables


def summary_markdown(results: list[dict], meta: dict) -> str:
    """``summary.md``: per metric, the assays by scorers (values with 95% intervals), then the recipe
    each assay got, minutes per stage, and failed assays with their errors."""
    from protein_performer.experiments.report.markdown import md_table

    def cell(r: dict, scorer: str, metric: str) -> str:
        m = r["scorers"].get(scorer, {}).get(metric)
        if not m or m["value"] is None:
            return ""
        ci = m.get("ci95")
        return f"{m['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    done = {r["DMS_id"]: r for r in results if r.get("status") == "done"}
    lines = [f"Measured by `{meta['command']}` on {meta['date']} ({meta['cpus']} CPUs). Metrics as ProteinGym "
             "defines them (`protein_performer.variants.metrics`); 95% bootstrap intervals over variants.", ""]
    for metric, table in summary_tables(results).items():
        header = table[0]
        rows = [[dms, *(cell(done[dms], s, metric) for s in header[1:])] for dms, *_ in table[1:-1]]
        rows.append(["**Average**", *("" if v is None else f"{v:.3f}" for v in table[-1][1:])])
        lines += [f"### {metric}", "", md_table(header, rows), ""]
    lines += _same_rows_section(done, md_table)
    refs = [[r["DMS_id"], name, f"{c['spearman']:.3f}", f"{c['n']:,}"] for r in done.values()
            for name, c in (r.get("references") or {}).items() if c.get("spearman") is not None]
    if refs:
        lines += ["### Published predictions the assay's CSV carries (Spearman)", "",
                  md_table(["assay", "predictor", "spearman", "rows"], refs), ""]
    recipe_rows = [[r["DMS_id"], f"{r['recipe']['members']:,}", f"{r['recipe']['neff']:.0f}",
                    f"{r['recipe']['identity']}/{r['recipe']['split_identity']}", str(r["recipe"]["held_out"]),
                    f"{r['recipe']['steps']:,}", f"{r['best_step']:,}", f"{r['last_step']:,}",
                    "" if r["profile_weight"] is None else f"{r['profile_weight']:.2f}",
                    str(r.get("mutants_outside_columns") or 0),
                    ", ".join(f"{k} {v:.1f}" for k, v in r["stage_minutes"].items())] for r in done.values()]
    if recipe_rows:
        lines += ["### What the recipe chose", "",
                  md_table(["assay", "members", "Neff", "identity (weights/split)", "held out", "max steps",
                            "best step", "last step", "profile weight", "mutants outside columns",
                            "minutes per stage"], recipe_rows), ""]
    failed = [r for r in results if r.get("status") != "done"]
    if failed:
        lines += ["### Failed assays", "", md_table(["assay", "error"], [[r["DMS_id"], r["error"]] for r in failed]),
                  ""]
    return "\n".join(lines)


def _same_rows_section(done: dict[str, dict], md_table) -> list[str]:
    """Where some scorer scores fewer rows than the others (mutants outside a region-only alignment
    have no profile score), every scorer again on the rows all of them score."""
    from protein_performer.variants.metrics import METRICS

    lines = []
    for dms, r in done.items():
        if r.get("common_rows") is None or r["common_rows"] == r["rows"] - r["invalid_rows"]:
            continue
        common = r["scorers_common_rows"]
        names = list(common)
        rows = [[metric, *(("" if common[n].get(metric, {}).get("value") is None
                            else f"{common[n][metric]['value']:.3f}") for n in names)]
                for metric in METRICS if any(metric in common[n] for n in names)]
        lines += [f"### {dms}: every scorer on the {r['common_rows']:,} rows all of them score "
                  f"(of {r['rows'] - r['invalid_rows']:,})", "", md_table(["metric", *names], rows), ""]
    return lines


def write_summary(out: Path, results: list[dict], meta: dict) -> None:
    from protein_performer.outputs import written_atomically

    for metric, table in summary_tables(results).items():
        with written_atomically(out / f"{metric}_DMS_level.csv") as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            for row in table:
                writer.writerow(["" if v is None else (f"{v:.4f}" if isinstance(v, float) else v) for v in row])
    _save_json(out / "summary.json", {**meta, "assays": results})
    with written_atomically(out / "summary.md") as tmp:
        tmp.write_text(summary_markdown(results, meta))


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


__all__ = ["Assay", "Options", "read_reference", "run_assay", "summary_markdown", "summary_tables", "write_summary",
           "add_arguments", "run"]
