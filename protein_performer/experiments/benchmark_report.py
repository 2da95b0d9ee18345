"""The table of ``protein-performer benchmark``: its assays' ``result.json`` by metric and scorer,
as ``summary.md``, ``summary.json`` and one ProteinGym-layout CSV per metric
(``<metric>_DMS_level.csv``); pure functions of the results (:mod:`.benchmark`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np


def save_json(path: Path, value: dict) -> None:
    """``value`` as strict JSON at ``path``, written atomically."""
    from protein_performer.outputs import written_atomically

    with written_atomically(path) as tmp:
        tmp.write_text(json.dumps(value, indent=1, allow_nan=False) + "\n")


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
    from protein_performer.variants.metrics import format_metric

    def cell(r: dict, scorer: str, metric: str) -> str:
        m = r["scorers"].get(scorer, {}).get(metric)
        return format_metric(m, undefined="") if m else ""

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
    save_json(out / "summary.json", {**meta, "assays": results})
    with written_atomically(out / "summary.md") as tmp:
        tmp.write_text(summary_markdown(results, meta))


__all__ = ["best_performer", "save_json", "summary_markdown", "summary_tables", "write_summary"]
