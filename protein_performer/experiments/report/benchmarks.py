"""docs/benchmarks.md's table of figures, drawn from the JSON files the benchmarks and the demo write, so
that a figure is copied by a program, not by hand (``scripts/benchmarks_table.py`` runs :func:`main`).

The table sits between ``<!-- figures:begin -->`` and ``<!-- figures:end -->``. Its last column says
where each row comes from:

- a row drawn from a JSON file (:data:`SOURCES`) names that file. When the file is present the row is
  rewritten from it (measured value, status against the target defined here, run). The files under
  ``docs/`` are in git, so the table is a function of them (tests/test_benchmarks_table.py checks the
  shipped document against them); ``outputs/`` is not, so a clone has none of those files and their
  rows are kept as the document has them (the log says which files were absent);
- every other row says ``typed from the run of DATE, no JSON``: its benchmark wrote no JSON that is
  in git; it was copied from the run and document named in "measured by", and is kept as it is.

    python scripts/benchmarks_table.py                # rewrite the block of docs/benchmarks.md
    python scripts/benchmarks_table.py --check        # exit 1 if the block would change
    python scripts/benchmarks_table.py --outputs /elsewhere/outputs   # JSONs of another checkout

Paths in :data:`SOURCES` are relative to the checkout's root (``--root``, default the working
directory); ``outputs/...`` ones are looked up under ``--outputs`` instead when it is given.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from protein_performer.experiments.report.tables import md_table
from protein_performer.outputs import repo_relative, written_atomically

DOC = Path("docs/benchmarks.md")
"""The document, relative to the checkout's root."""
BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"
HEADER = ["target", "measured", "status", "measured by (command → full table)", "from"]
TYPED = "typed from the run of "
"""How the last column of a row with no JSON in git begins: ``typed from the run of DATE, no JSON``."""
log = logging.getLogger("benchmarks_table")


@dataclass(frozen=True)
class Figure:
    """One row of the table: ``target`` is its key (kept stable across runs), the rest is measured."""

    target: str
    measured: str
    status: str
    by: str


@dataclass(frozen=True)
class Source:
    """A JSON file some script writes and the rows drawn from it (a pure function of its content)."""

    path: str  # relative to the repository root
    rows: Callable[[dict], list[Figure]]
    writer: str  # the command that writes it

    @property
    def cell(self) -> str:
        """The table's last column for this source's rows."""
        return f"`{self.path}`" + (" (not in git)" if self.path.startswith("outputs/") else "")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# --------------------------------------------------------------------------- generation


GENERATE_FLAT_MAX = 1.2
"""FAVOR+ ms/token at the last position over the first: at most this (a constant-size state)."""
GENERATE_STEP_SPEEDUP_MIN = 10.0
"""Stepping the recurrent state vs recomputing the prefix, at the middle position: at least this."""


def generation_rows(res: dict) -> list[Figure]:
    """The two generation targets from ``bench_generate.py``'s JSON (positions as string keys)."""
    favor, recompute = res["favor_step"], res["favor_recompute"]
    lo, mid, hi = sorted(favor, key=int)
    flat = favor[hi]["ms_per_token"] / favor[lo]["ms_per_token"]
    speedup = recompute[mid]["ms_per_token"] / favor[mid]["ms_per_token"]
    rounds = (res.get("args") or {}).get("rounds", 1)
    by = "`scripts/bench_generate.py` → [generate.md](benchmarks/generate.md)"
    return [
        Figure("generation: FAVOR+ ms/token at the last / first position (median of interleaved rounds)",
               f"{flat:.2f}x ({int(hi):,} / {int(lo):,}; {rounds} rounds)",
               f"≤{GENERATE_FLAT_MAX:g}x {verdict(flat <= GENERATE_FLAT_MAX)}", by),
        Figure("generation: stepping vs recomputing the prefix",
               f"{speedup:.0f}x faster at {int(mid):,}",
               f"≥{GENERATE_STEP_SPEEDUP_MIN:g}x {verdict(speedup >= GENERATE_STEP_SPEEDUP_MIN)}", by),
    ]


# --------------------------------------------------------------------------- the demo


DEMO_ACCURACY_GAIN_MIN = 1.5
"""Held-out masked accuracy over the unigram baseline, in points: at least this."""
DEMO_CONTEXT_GAIN_MIN = 0.5
"""Held-out masked accuracy over the neighbour n-gram, in points: at least this, interval above 0."""
DEMO_SIMILARITY_MIN = 0.35
"""Pearson of an attention-derived similarity with BLOSUM62 (190 pairs): at least this (issue 34)."""
SIMILARITY_MIN, SIMILARITY_ABOVE_MIN = 0.6, 0.4
"""A model's attention-derived similarity: Pearson at least this, and this far above its controls."""


def _ci(pair: list[float], digits: int, sign: str = "") -> str:
    return f"[{pair[0]:{sign}.{digits}f}, {pair[1]:{sign}.{digits}f}]"


def demo_rows(summary: dict) -> list[Figure]:
    """The demo's held-out figures and its attention-similarity figures from ``scripts/demo.py``'s
    ``summary.json`` (``score`` as ``protein-performer score`` writes it, ``similarity`` as
    ``blosum_comparison.json``)."""
    s, sim = summary["score"], summary["similarity"]
    run = (f"`{summary['command']}`, {summary['steps']:,} steps, {summary['minutes']:.1f} min, "
           f"{summary['date']}")
    upper = s["perplexity_ratio_ci95"][1]
    beats_context = s["context_accuracy_gain"] >= DEMO_CONTEXT_GAIN_MIN and s["context_accuracy_gain_ci95"][0] > 0
    rows = [
        Figure("demo: held-out masked perplexity / unigram",
               f"{s['perplexity_ratio']:.3f} {_ci(s['perplexity_ratio_ci95'], 3)} ({s['passes']} masks)",
               f"below 1 with 95% confidence: {verdict(upper < 1)}", run),
        Figure("demo: held-out masked accuracy gain over the unigram",
               f"{s['accuracy_gain']:+.2f} points {_ci(s['accuracy_gain_ci95'], 2, '+')} "
               f"({s['accuracy']:.2%} vs {s['unigram_accuracy']:.2%})",
               f"≥ {DEMO_ACCURACY_GAIN_MIN:g} points: {verdict(s['accuracy_gain'] >= DEMO_ACCURACY_GAIN_MIN)}", run),
        Figure("demo: held-out masked accuracy gain over the neighbour n-gram",
               f"{s['context_accuracy_gain']:+.2f} points {_ci(s['context_accuracy_gain_ci95'], 2, '+')}",
               f"≥ {DEMO_CONTEXT_GAIN_MIN:g} points, interval above 0: "
               f"{verdict(beats_context)}",
               run),
    ]
    similarity_run = f"same run, `similarity` on {sim['proteins']} held-out proteins"
    for measure, name in (("contexts", "contexts"), ("contexts_by_offset", "contexts, offset null")):
        f, untrained = _study_figure(sim, "trained", measure), _study_figure(sim, "untrained", measure)
        if f is None:
            continue
        control = "" if untrained is None else f" (untrained {untrained['pearson']:.3f})"
        rows.append(Figure(f"attention-derived similarity vs BLOSUM62, demo: {name}",
                           f"{f['pearson']:.3f}{control}",
                           f"≥ {DEMO_SIMILARITY_MIN:g}: {verdict(f['pearson'] >= DEMO_SIMILARITY_MIN)}", similarity_run))
    return rows


def _study_figure(comparison: dict, source: str, measure: str) -> dict | None:
    """One all-heads figure of ``similarity``'s study (blosum_comparison.json ``study``), or None."""
    from protein_performer.analysis.similarity_study import find_figure  # torch: only when a study is drawn

    return find_figure(comparison.get("study", {}), source, measure)


def similarity_rows(result: dict) -> list[Figure]:
    """Per model of the similarity benchmark (docs/benchmarks/similarity.json): the attention
    contexts against both nulls, with their 95% intervals and distance above their controls."""
    rows = []
    link = "[similarity.md](benchmarks/similarity.md)"
    for model in result["models"]:
        if model.get("status") != "done":
            continue
        cells, ok = [], []
        for measure in ("contexts", "contexts_by_offset"):
            f = _study_figure(model, "trained", measure)
            if f is None:
                continue
            above = f.get("above_controls")
            cells.append(f"{f['pearson']:.3f} {_ci(f['ci'], 3) if f.get('ci') else ''} (above controls "
                         f"{above:+.3f})" if above is not None else f"{f['pearson']:.3f}")
            ok.append(f["pearson"] >= SIMILARITY_MIN and above is not None and above >= SIMILARITY_ABOVE_MIN)
        if cells:
            rows.append(Figure(f"attention-derived similarity vs BLOSUM62, {model['name']}: contexts / offset null",
                               " / ".join(cells),
                               f"≥ {SIMILARITY_MIN:g} and ≥ {SIMILARITY_ABOVE_MIN:g} above controls: "
                               + " / ".join(verdict(x) for x in ok),
                               f"`python scripts/bench_similarity.py`, {result['date']} → {link}"))
    return rows


# --------------------------------------------------------------------------- make reproduce


REPRODUCE_RATIO_MAX = 1.0
"""L = 512, equal wall clock: the hybrid's test perplexity over exact attention's, both objectives."""
REPRODUCE_LONG_RATIO_MAX = 0.98
"""Longest windows, equal wall clock: the best Performer's test perplexity over the exact model's."""
REPRODUCE_RECOVERED_MIN = 0.9
"""Transfer: the share of the swap's perplexity loss that fine-tuning recovers, for the best target."""
REPRODUCE_SIMILARITY_MIN = 0.3
"""Pearson of the attention-context similarity with BLOSUM62, for part 2's best model."""


def reproduce_rows(document: dict) -> list[Figure]:
    """The reproduction's headline ratios from ``results_all.json``, read as
    :class:`~protein_performer.experiments.results.Results` through the report's own rules
    (:mod:`protein_performer.experiments.report.rules`), so the table and RESULTS.md cannot disagree."""
    from protein_performer.experiments.report import rules
    from protein_performer.experiments.results import Results

    res = Results.from_json(document)
    env, plan = res.environment, res.plan
    run = f"`{repo_relative(env.command)}`, {env.date}, {env.wall_minutes:.1f} min"
    section = "same run → [RESULTS.md](RESULTS.md) §{}"
    ppl = {(a, o): rules.perplexity(res, a, o) for a in ("exact", "softmax", "hybrid") for o in rules.OBJECTIVES}
    hybrid = [ppl["hybrid", o] / ppl["exact", o] for o in rules.OBJECTIVES]
    softmax = [ppl["softmax", o] / ppl["exact", o] for o in rules.OBJECTIVES]
    rows = [Figure(
        f"reproduce, L = {plan.window}, equal wall clock: hybrid / exact test perplexity, BID / UNI",
        f"{hybrid[0]:.3f} / {hybrid[1]:.3f} ({ppl['hybrid', 'mlm']:.2f} / {ppl['hybrid', 'clm']:.2f} vs "
        f"{ppl['exact', 'mlm']:.2f} / {ppl['exact', 'clm']:.2f}; "
        f"Performer-Softmax {softmax[0]:.3f} / {softmax[1]:.3f})",
        f"≤ {REPRODUCE_RATIO_MAX:g}: {verdict(max(hybrid) <= REPRODUCE_RATIO_MAX)}",
        f"{run} → [RESULTS.md](RESULTS.md) §1; {plan.table_minutes:.2f} min per run")]

    length = max(rules.long_lengths(res))
    c = rules.long_comparison(res, length)
    best = rules.best_performer_ratio(c)
    if best is not None:
        model, ratio = best
        exact = c.exact["perplexity"]
        rows.append(Figure(
            "reproduce, longest windows, equal wall clock: best Performer / exact test perplexity",
            f"{ratio:.3f} at L = {length:,}, {model['model']} ({model['perplexity']:.2f} vs {exact:.2f}; "
            f"{model['steps']:,} vs {c.exact['steps']:,} steps); Performer-Softmax "
            f"{c.performer['perplexity'] / exact:.3f} ({c.performer['steps']:,} steps)",
            f"≤ {REPRODUCE_LONG_RATIO_MAX:g}: {verdict(ratio <= REPRODUCE_LONG_RATIO_MAX)}", section.format(2)))

    shares = {t: rules.recovered_share(res, t) for t in rules.transfer_targets(res)}
    targets = sorted(shares, key=lambda t: -shares[t])  # the best first
    source, _, tuned = rules.transfer_perplexities(res, targets[0])
    rows.append(Figure(
        "reproduce, transfer exact → Performer: share of the swap's perplexity loss recovered",
        f"{rules.NAMES[targets[0]]} {shares[targets[0]]:.0%} ({tuned:.2f} vs source {source:.2f})"
        + "".join(f", {rules.NAMES[t]} {shares[t]:.0%}" for t in targets[1:])
        + f"; {plan.transfer_minutes:g} min of fine-tuning",
        f"≥ {REPRODUCE_RECOVERED_MIN:.0%} for the best: {verdict(shares[targets[0]] >= REPRODUCE_RECOVERED_MIN)}",
        section.format(3)))

    models = sorted(rules.similarity_models(res), key=lambda m: m == "trained")  # part 2's first, then Table 2's
    pearson = {m: rules.similarity_pearson(res, m, "context") for m in models}
    controls = sorted({f"{c:.3f}" for m in models
                       if (c := rules.similarity_pearson(res, rules.control_of(m), "context")) is not None})
    if all(v is not None for v in pearson.values()):
        rows.append(Figure(
            "reproduce, attention-derived similarity vs BLOSUM62 (contexts): part 2's best model / Table 2's best "
            "BID model",
            " / ".join(f"{pearson[m]:.3f} ({m})" for m in models) + f"; untrained control {', '.join(controls)}",
            f"≥ {REPRODUCE_SIMILARITY_MIN:g}: " + " / ".join(verdict(pearson[m] >= REPRODUCE_SIMILARITY_MIN)
                                                              for m in models),
            section.format(4)))
    return rows


# --------------------------------------------------------------------------- many assays


ASSAY_METRICS = {"spearman": "Spearman", "auc": "AUC"}
"""The headline metric of an assay (a DMS has Spearman, clinical labels have AUC), in this order."""


def _metric_cell(metric: dict) -> str:
    ci = metric.get("ci95")
    return f"{metric['value']:.3f}" + (f" {_ci(ci, 3)}" if ci else "")


def assay_rows(summary: dict) -> list[Figure]:
    """Per finished assay of ``protein-performer benchmark`` (docs/benchmarks/assays.json, written by
    ``scripts/bench_assays.py``): the best Performer scorer's headline metric beside the family profile's."""
    rows = []
    link = ("[families.md §8]"
            "(benchmarks/families.md#8-many-assays-the-benchmark-command-and-a-recipe-from-the-family-issue-33)")
    for assay in summary["assays"]:
        if assay.get("status") != "done":
            continue
        scorers = assay["scorers"]
        metric = next((m for m in ASSAY_METRICS if m in scorers.get("profile", {})), None)
        performers = {name: s[metric] for name, s in scorers.items() if name.startswith("Performer") and metric in s}
        if metric is None or not performers:
            continue
        best = max(performers, key=lambda name: performers[name]["value"])
        profile = scorers["profile"][metric]["value"]
        rows.append(Figure(
            f"many assays, {assay['DMS_id']}: {ASSAY_METRICS[metric]}, best Performer scorer vs the family profile",
            f"{_metric_cell(performers[best])} ({best}; {performers[best]['n']:,} variants)",
            f"profile {profile:.3f}: {'above' if performers[best]['value'] > profile else 'not above'}",
            f"`{summary['command']}`, {summary['date']} → {link}"))
    return rows


SOURCES: list[Source] = [
    Source("docs/benchmarks/generate.json", generation_rows, "scripts/bench_generate.py"),
    Source("outputs/demo/summary.json", demo_rows, "make demo (scripts/demo.py)"),
    Source("docs/figures/results_all.json", reproduce_rows, "make reproduce (scripts/reproduce.py)"),
    Source("docs/benchmarks/assays.json", assay_rows, "scripts/bench_assays.py"),
    Source("docs/benchmarks/similarity.json", similarity_rows, "scripts/bench_similarity.py"),
]


# --------------------------------------------------------------------------- the table


def split_row(line: str) -> list[str]:
    """The cells of one markdown table row (``|`` inside backticks or escaped does not split)."""
    cells, cell, code = [], "", False
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    for i, ch in enumerate(body):
        if ch == "`":
            code = not code
        if ch == "|" and not code and (i == 0 or body[i - 1] != "\\"):
            cells.append(cell.strip())
            cell = ""
        else:
            cell += ch
    return cells + [cell.strip()]


def read_block(text: str) -> tuple[str, list[list[str]], str]:
    """``text`` split into what precedes the block, the block's rows (header and rule dropped) and
    what follows it."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"the document must hold one {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN)
    block, tail = rest.split(END)
    lines = [line for line in block.strip().splitlines() if line.strip().startswith("|")]
    return head, [split_row(line) for line in lines[2:]], tail


def render_rows(rows: list[list[str]]) -> str:
    return md_table(HEADER, rows, align="lrlll")


def updated_rows(rows: list[list[str]], loaded: dict[str, dict | None]) -> list[list[str]]:
    """The table's rows after drawing every source in ``loaded`` (path -> its JSON, or None when
    absent). A drawn row replaces the row of the same target, in place, or is appended; the rows of
    an absent source and the typed rows stay as they are."""
    out = [list(r) + [""] * (len(HEADER) - len(r)) for r in rows]
    index = {r[0]: i for i, r in enumerate(out)}
    for source in SOURCES:
        content = loaded.get(source.path)
        if content is None:  # (a clone has no outputs/): its rows stay as the document has them
            continue
        for figure in source.rows(content):
            row = [figure.target, figure.measured, figure.status, figure.by, source.cell]
            if figure.target in index:
                out[index[figure.target]] = row
            else:
                index[figure.target] = len(out)
                out.append(row)
    return out


def load_sources(root: Path, outputs: Path | None = None) -> dict[str, dict | None]:
    """Each source's JSON under the checkout ``root``, or None where the file is absent (``outputs/...``
    under ``outputs`` when given)."""
    loaded: dict[str, dict | None] = {}
    for source in SOURCES:
        rel = Path(source.path)
        path = outputs / rel.relative_to("outputs") if outputs and rel.parts[0] == "outputs" else root / rel
        loaded[source.path] = json.loads(path.read_text()) if path.is_file() else None
        log.info("%s: %s", source.path, "read" if path.is_file() else f"absent ({path}); its rows are kept")
    return loaded


def regenerate(text: str, loaded: dict[str, dict | None]) -> str:
    """``text`` (docs/benchmarks.md) with its figures block redrawn from ``loaded``."""
    head, rows, tail = read_block(text)
    return f"{head}{BEGIN}\n{render_rows(updated_rows(rows, loaded))}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the checkout (default: the working directory)")
    parser.add_argument("--doc", type=Path, default=None,
                        help="the markdown file holding the block (default: ROOT/docs/benchmarks.md)")
    parser.add_argument("--outputs", type=Path, default=None,
                        help="where the outputs/... JSON files are (default: the repository's outputs/)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the block would change")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.doc = args.doc or args.root / DOC
    text = args.doc.read_text()
    new = regenerate(text, load_sources(args.root, args.outputs))
    if args.check:
        if new != text:
            log.info("%s: the figures block is out of date; run scripts/benchmarks_table.py", args.doc)
            return 1
        return 0
    if new != text:
        with written_atomically(args.doc) as tmp:
            tmp.write_text(new)
    log.info("%s: figures block %s", args.doc, "rewritten" if new != text else "unchanged")
    return 0


