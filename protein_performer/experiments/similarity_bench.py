"""The similarity benchmark (docs/benchmarks/similarity.md): every model of a plan analysed by
``protein-performer similarity`` beside its controls, collected into one JSON, and the doc's
tables generated from that JSON.

    python scripts/bench_similarity.py [--plan data/benchmarks/similarity_models.yaml]
        [--out outputs/similarity/bench] [--doc docs/benchmarks/similarity.md] [--only NAME ...] [--redo]

The plan (YAML) lists models: ``name``, ``kind`` (single proteins, long windows, one family, many
families), ``trained`` (how, in words), ``checkpoint``, and the inputs: ``fasta``, or ``homologs``
(files), or ``families`` (a ``paralogs`` folder: ``dir``, ``split``: train or held-out by the hash
rule of :mod:`~protein_performer.experiments.bench.multi_family` at ``fraction``, and ``limit``, the first N by file name);
``options``: extra flags of ``similarity`` (``{windows: 2}`` is ``--windows 2``). Paths are
relative to the plan's ``root`` (default: the current folder). A model whose checkpoint is missing
is reported as not run; one already analysed is not redone (``--redo``: it is).

Writes ``--out``/SLUG/ (each analysis; :func:`slug` of its name), ``--out``/similarity_bench.json, a copy of that JSON beside
the doc (``similarity.json``), and the doc's tables between its markers. Run it alone on the
machine (the minutes per analysis are measured).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import logging
import re
import sys
import time
from pathlib import Path

import yaml

from protein_performer.analysis.similarity_study import find_figure
from protein_performer.experiments.report.markdown import md_table, portable

log = logging.getLogger("bench_similarity")
MEASURE_NAMES = {
    "profiles": "attention profiles (Vig)", "pairs": "attention pairs", "contexts": "attention contexts",
    "pairs_by_offset": "attention pairs, offset null", "contexts_by_offset": "attention contexts, offset null",
    "embedding": "token embeddings", "log-odds": "the alignment's own log-odds (no model)",
}
LANDMARKS = ("D-E", "F-Y", "I-V", "K-R")


def family_files(spec: dict, root: Path) -> list[Path]:
    """The ``families`` entry of a plan: files of a ``paralogs`` folder, by split and limit."""
    from protein_performer.experiments.bench.multi_family import held_out

    folder = root / spec["dir"]
    with open(folder / "families.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    want_held_out = spec.get("split", "train") == "held-out"
    files = sorted(r["file"] for r in rows if held_out(r["query"], spec.get("fraction", 0.1)) == want_held_out)
    return [folder / f for f in files[: spec.get("limit") or len(files)]]


def slug(name: str) -> str:
    """A model's folder name: its name in lower case, runs of other characters as one '_'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def command(entry: dict, root: Path, out: Path) -> list[str]:
    """The ``similarity`` command line of one plan entry."""
    args = ["similarity", "--checkpoint", str(root / entry["checkpoint"]), "--out", str(out), "--quiet", "--overwrite"]
    if "fasta" in entry:
        args += ["--fasta", str(root / entry["fasta"])]
    else:
        files = [root / f for f in entry.get("homologs", [])] or family_files(entry["families"], root)
        args += ["--homologs", *map(str, files)]
    for key, value in (entry.get("options") or {}).items():
        args += [f"--{key.replace('_', '-')}", *map(str, value if isinstance(value, list) else [value])]
    return args


def analyse(entry: dict, root: Path, out: Path, redo: bool) -> dict:
    """Run (or reuse) one model's analysis; its record for the JSON."""
    from protein_performer.cli import main as cli

    record = {k: entry.get(k) for k in ("name", "kind", "trained", "checkpoint")}
    target = out / slug(entry["name"])
    summary = target / "blosum_comparison.json"
    if not (root / entry["checkpoint"]).is_file():
        log.warning("%s: no checkpoint at %s; not analysed", entry["name"], root / entry["checkpoint"])
        return record | {"status": "no checkpoint"}
    args = command(entry, root, target)
    record["command"] = "protein-performer " + " ".join(args)
    if summary.is_file() and not redo:
        log.info("%s: analysed already (%s)", entry["name"], summary)
        previous = json.loads(summary.read_text())
        return record | {"status": "done", "minutes": previous.get("bench_minutes"), "study": previous["study"]}
    log.info("$ %s", record["command"])
    started = time.perf_counter()
    if cli(args):
        return record | {"status": "failed"}
    minutes = (time.perf_counter() - started) / 60
    result = json.loads(summary.read_text())
    result["bench_minutes"] = minutes
    summary.write_text(json.dumps(result, indent=2) + "\n")
    return record | {"status": "done", "minutes": minutes, "study": result["study"]}


def _value(f: dict | None, interval: bool = False) -> str:
    if f is None:
        return "n/a"
    if interval and f.get("ci"):
        return f"{f['pearson']:.3f} [{f['ci'][0]:.3f}, {f['ci'][1]:.3f}]"
    return f"{f['pearson']:.3f}"


def main_table(models: list[dict]) -> str:
    """Every model and measure on all heads: trained [95% CI], controls, above controls, landmark ranks."""
    body = []
    for m in models:
        if m.get("status") != "done":
            body.append([m["name"], m["kind"], m.get("status", "not run"), "", "", "", "", "", ""])
            continue
        study = m["study"]
        for measure in (*MEASURE_NAMES, ):
            heads = "-" if measure in ("embedding", "log-odds") else "all"
            source = "alignment" if measure == "log-odds" else "trained"
            f = find_figure(study, source, measure, heads)
            if f is None:
                continue
            above = "" if f.get("above_controls") is None else f"{f['above_controls']:+.3f}"
            ranks = " ".join(str(f["landmark_ranks"][k]) for k in LANDMARKS)
            body.append([m["name"], m["kind"], MEASURE_NAMES[measure], _value(f, True),
                         _value(find_figure(study, "untrained", measure, heads)),
                         _value(find_figure(study, "shuffled", measure, heads)), above, ranks, " ".join(f["top_pairs"][:5])])
    return md_table(["model", "kind", "measure", "trained [95% CI]", "untrained", "shuffled", "above controls",
                     "ranks D-E F-Y I-V K-R", "top 5 pairs"], body)


def heads_table(models: list[dict]) -> str:
    """Head groups of models with more than one kind of head, for the measures that read pairs."""
    body = []
    for m in models:
        if m.get("status") != "done":
            continue
        groups = sorted({f["heads"] for f in m["study"]["figures"]} - {"all", "-"}, key=("local", "column", "global").index)
        for heads in groups:
            for measure in ("contexts", "pairs_by_offset", "contexts_by_offset"):
                f = find_figure(m["study"], "trained", measure, heads)
                if f is None:
                    continue
                above = "" if f.get("above_controls") is None else f"{f['above_controls']:+.3f}"
                body.append([m["name"], heads, MEASURE_NAMES[measure], _value(f, True),
                             _value(find_figure(m["study"], "untrained", measure, heads)),
                             _value(find_figure(m["study"], "shuffled", measure, heads)), above,
                             " ".join(str(f["landmark_ranks"][k]) for k in LANDMARKS)])
    return md_table(["model", "heads", "measure", "trained [95% CI]", "untrained", "shuffled", "above controls",
                     "ranks D-E F-Y I-V K-R"], body)


def runs_table(models: list[dict]) -> str:
    body = [[m["name"], m["kind"], m.get("trained") or "", m.get("study", {}).get("units", ""),
             m.get("study", {}).get("unit", ""), m.get("status", "not run")] for m in models]
    return md_table(["model", "kind", "trained", "units", "bootstrap unit", "status"], body)


REPRODUCE_SOURCES = {"attention": "attention profiles (Vig)", "pairs": "attention pairs", "context": "attention contexts",
                     "embedding": "token embeddings"}


def reproduce_table(results: dict) -> str:
    """Single proteins and long windows from ``make reproduce``'s results (docs/figures/results_all.json):
    each trained model beside its untrained control; that run had no shuffled control and no intervals."""
    rows, figures = [], results.get("similarity", [])
    for f in figures:
        if f["model"].startswith("untrained") or f["source"] not in REPRODUCE_SOURCES:
            continue
        control = next((g for g in figures if g["model"] == f"un{f['model']}" and g["source"] == f["source"]), None)
        above = "" if control is None else f"{f['pearson'] - control['pearson']:+.3f}"
        rows.append([f"{f['model']} ({f['attention']}, windows of {f['window']:,}, {f['steps']:,} steps)",
                     REPRODUCE_SOURCES[f["source"]], f"{f['pearson']:.3f}",
                     "n/a" if control is None else f"{control['pearson']:.3f}", above,
                     " ".join(str(f["landmark_ranks"][k]) for k in LANDMARKS), f["proteins"]])
    env = results.get("environment", {})
    return (md_table(["model", "measure", "trained", "untrained", "above untrained", "ranks D-E F-Y I-V K-R",
                      "test proteins"], rows)
            + f"\n\n*From docs/figures/results_all.json: `{portable(env.get('command', ''))}`, {env.get('date', '')}.*")


def put_block(text: str, name: str, block: str) -> str:
    """``text`` with ``block`` between the markers ``<!-- NAME -->`` and ``<!-- /NAME -->`` (appended
    with them when absent)."""
    start, end = f"<!-- {name}: generated by scripts/bench_similarity.py -->", f"<!-- /{name} -->"
    new = f"{start}\n{block.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        return head + new + rest.split(end, 1)[1]
    return text.rstrip() + "\n\n" + new + "\n"


def write_doc(doc: Path, result: dict) -> None:
    """The doc's tables from ``result`` (the benchmark JSON), and the long-window table from
    ``make reproduce``'s results beside the doc's folder (docs/figures/results_all.json)."""
    text = doc.read_text() if doc.exists() else "# Amino-acid similarity from attention\n"
    models = result["models"]
    text = put_block(text, "similarity-runs", runs_table(models) + f"\n\n*Last run {result['date']}: `{result['command']}` "
                     "(a model analysed before is kept; each model's `similarity` command is in similarity.json).*")
    text = put_block(text, "similarity-main", main_table(models))
    text = put_block(text, "similarity-heads", heads_table(models))
    reproduce = doc.parent.parent / "figures" / "results_all.json"
    if reproduce.is_file():
        text = put_block(text, "similarity-reproduce", reproduce_table(json.loads(reproduce.read_text())))
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", type=Path, default=Path("data/benchmarks/similarity_models.yaml"))
    parser.add_argument("--out", type=Path, default=Path("outputs/similarity/bench"))
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks/similarity.md"))
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME", help="analyse only these models")
    parser.add_argument("--redo", action="store_true", help="analyse again models analysed already")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    plan = yaml.safe_load(args.plan.read_text())
    root = Path(plan.get("root", "."))
    jsonfile = args.out / "similarity_bench.json"
    previous = {m["name"]: m for m in json.loads(jsonfile.read_text())["models"]} if jsonfile.is_file() else {}
    models = []
    for entry in plan["models"]:
        if args.only and entry["name"] not in args.only:
            models.append(previous.get(entry["name"], {k: entry.get(k) for k in ("name", "kind", "trained")}))
            continue
        models.append(analyse(entry, root, args.out, args.redo))
    result = {"date": datetime.date.today().isoformat(), "plan": str(args.plan),
              "command": " ".join(["python scripts/bench_similarity.py", *(sys.argv[1:] if argv is None else argv)]),
              "models": models}
    args.out.mkdir(parents=True, exist_ok=True)
    for path in (jsonfile, args.doc.with_suffix(".json")):
        path.write_text(json.dumps(result, indent=1) + "\n")
    write_doc(args.doc, result)
    log.info("wrote %s, %s and the tables of %s", jsonfile, args.doc.with_suffix(".json"), args.doc)
    return 0
