"""The whole RESULTS.md: setup, the summary of the paper's claims, the five sections.

:func:`render` is a pure function of ``results_all.json``; :func:`write_report` also draws the
figures and writes the CSVs next to it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from protein_performer.experiments.report import rules
from protein_performer.experiments.report.figures import draw_figures
from protein_performer.experiments.report.markdown import (
    fit_sentence,
    long_section,
    md_table,
    portable,
    similarity_section,
    table2_section,
    transfer_section,
)
from protein_performer.experiments.report.rules import (
    LABELS,
    NAMES,
    OBJECTIVES,
    TOLERANCES,
    Tolerances,
    long_comparison,
    long_lengths,
    perplexity,
)
from protein_performer.experiments.results import Environment, Results

log = logging.getLogger(__name__)


def claims(res: Results, tol: Tolerances = TOLERANCES) -> list[list[str]]:
    """One row per claim of the paper: claim, this run's evidence, verdict (from :mod:`rules`)."""
    out = []
    for a, claim in (("relu", "Performer-ReLU at least as good as the exact Transformer"),
                     ("softmax", "Performer-Softmax close to the exact Transformer"),
                     ("hybrid", "Performer hybrid (local + FAVOR+) at least as good as the exact Transformer")):
        if a not in rules.attentions(res):
            continue
        evidence = "; ".join(f"{LABELS[o]} perplexity {perplexity(res, a, o) / perplexity(res, 'exact', o) - 1:+.1%} "
                             "vs exact" for o in OBJECTIVES)
        out.append([claim, evidence, str(rules.matches_exact_overall(res, a, tol))])
    for length in long_lengths(res):
        c = long_comparison(res, length)
        p, x = c.performer, c.exact
        evidence = (f"perplexity {p['perplexity']:.3f} ({p['steps']} steps) vs {x['perplexity']:.3f} ({x['steps']} "
                    "steps)" if x else f"perplexity {p['perplexity']:.3f} ({p['steps']} steps); no exact model trained")
        if not c.fits:
            evidence += f"; no exact shape fits in {c.cap_mib:.0f} MiB"
        out.append([f"Performer beats the exact model that fits, at L={length}", evidence,
                    str(rules.beats_exact_that_fits(res, length))])
        if c.hybrid is not None:
            h = c.hybrid
            evidence = f"perplexity {h['perplexity']:.3f} ({h['steps']} steps)" + (
                f" vs {x['perplexity']:.3f}: {h['perplexity'] / x['perplexity'] - 1:+.1%}" if x else "")
            out.append([f"Performer hybrid (local + FAVOR+) beats the exact model that fits, at L={length}", evidence,
                        str(rules.beats_exact_that_fits(res, length, "hybrid"))])
    if res.transfer:
        for target in rules.transfer_targets(res):
            e, z, a = rules.transfer_perplexities(res, target)
            share = rules.recovered_share(res, target)
            out.append([f"A Performer starts from Transformer weights and recovers with fine-tuning ({NAMES[target]})",
                        f"perplexity {e:.3f} → swap {z:.3f} → fine-tuned {a:.3f}"
                        + (f" ({share:.0%} of the loss recovered)" if share == share else ""),
                        rules.transfer_recovers(res, target, tol).word])
    for model in rules.similarity_models(res):
        which_model = "" if model == "trained" else f" ({model.removeprefix('trained, ')} model)"
        for which in rules.similarity_sources(res, model):
            trained = rules.similarity_pearson(res, model, which)
            out.append([f"Amino-acid similarity from {rules.SIMILARITY_SOURCES[which]} resembles BLOSUM62{which_model}",
                        f"Pearson {trained:.3f} trained vs "
                        f"{rules.similarity_pearson(res, rules.control_of(model), which):.3f} untrained",
                        str(rules.resembles_blosum(res, which, tol, model))])
    return out


def _machine(env: Environment) -> str:
    if env.cpus:
        threads = env.torch_threads
        return f"{env.cpus} CPUs" + (f" ({threads} torch thread{'s' if threads != 1 else ''})" if threads else "")
    return env.machine


def count(n: float) -> str:
    """``1.2 M`` from a hundred thousand on, ``35,200`` below."""
    return f"{n / 1e6:.1f} M" if n >= 1e5 else f"{n:,.0f}"


def discussion(res: Results, tol: Tolerances = TOLERANCES) -> list[str]:
    """The bullet points under the claims table; each states only what the results show."""
    plan, env = res.plan, res.environment
    steps = rules.mean_spread([r["steps"] for r in res.table])[0]
    tokens = steps * plan.window * plan.batch_size
    residues = env.train_residues
    data = f"one proteome of {count(residues)} training residues" if residues else "one proteome"
    out = [f"- Scale: each Table 2 model trained for about {steps:,.0f} steps ({count(tokens)} tokens) on "
           f"{data}. The paper trains 36-layer models for days on TPUs over TrEMBL. Its claims are about models "
           f"trained that long; this run tests what holds at the start of training, on {_machine(env)}."]
    not_learned = [f"{NAMES[r['attention']]} ({LABELS[r['objective']]}, seed {r['seed']})"
                   for r in res.table if not rules.learned(r)]
    out.append("- Every model learned something: each beats the unigram baseline's perplexity with 95% confidence."
               if not not_learned else
               f"- Not every model learned something: {', '.join(not_learned)} "
               f"{'does' if len(not_learned) == 1 else 'do'} not beat the unigram baseline's perplexity with 95% "
               "confidence, so the claims that depend on them are inconclusive.")
    crowded = rules.crowded_runs(res)
    if crowded:
        out.append("- Other processes competed for the CPUs while the step rate of "
                   + ", ".join(f"{NAMES[r['attention']]} ({LABELS[r['objective']]}, seed {r['seed']}, load "
                               f"{r['load_at_probe']:.1f})" for r in crowded)
                   + f" was measured ({env.cpus} CPUs): "
                   + ("that run" if len(crowded) == 1 else "those runs")
                   + " got fewer steps than the same wall clock gives on a quiet machine, so equal wall clock "
                   "was not equal compute; rerun on a quiet machine before reading the comparison.")
    beaten = {o: rules.beat_context(res, o) for o in OBJECTIVES}
    if all(b is not None for b in beaten.values()):
        if all(len(b) == len(rules.attentions(res)) for b in beaten.values()):
            out.append("- Each model also has a lower perplexity than the neighbour-context n-gram, so they use "
                       "more than adjacent residues.")
        elif not any(beaten.values()):
            reach = ", ".join(f"{LABELS[o]} {rules.context_perplexity(res, o):.3f}" for o in OBJECTIVES)
            out.append(f"- No model has a lower perplexity than the neighbour-context n-gram ({reach}): at this "
                       "budget they have learned no more than what the two adjacent residues tell.")
        else:
            out.append("- Against the neighbour-context n-gram, only some models have a lower perplexity: "
                       + "; ".join(f"{LABELS[o]}: {', '.join(NAMES[a] for a in b) or 'none'}"
                                   for o, b in beaten.items()) + ".")
    gap = perplexity(res, "softmax", "mlm") / perplexity(res, "exact", "mlm") - 1
    if gap > rules.perplexity_tolerance(res, "mlm", tol):
        exact_steps = rules.mean_spread([r["steps"] for r in rules.rows(res, "exact", "mlm")])[0]
        favor_steps = rules.mean_spread([r["steps"] for r in rules.rows(res, "softmax", "mlm")])[0]
        how = "learns faster per step than FAVOR+" if exact_steps <= favor_steps else \
            "reaches a lower perplexity than FAVOR+ in equal wall clock"
        out.append(f"- At this budget the exact model {how} (BID perplexity {gap:+.1%}, {exact_steps:,.0f} vs "
                   f"{favor_steps:,.0f} steps). The Performers estimate softmax attention with "
                   f"m={plan.shape['nb_features']} random features per head. The paper compares models trained "
                   "to convergence, so this run neither confirms nor refutes the paper's claim that they end up "
                   "equal.")
    for length in long_lengths(res):
        out.append(_long_discussion(long_comparison(res, length)))
    return out


def _long_discussion(c: rules.LongComparison) -> str:
    p, x = c.performer, c.exact
    if x is None:
        return f"- At L={c.length}, {fit_sentence(c)}."
    steps = (f"Over the same wall clock the Performer made {p['steps'] / max(x['steps'], 1):.1f}x as many steps as "
             f"the exact model (perplexity {p['perplexity']:.3f} vs {x['perplexity']:.3f}"
             + (", so the extra steps did not buy a lower perplexity; this run does not isolate why"
                if p["perplexity"] >= x["perplexity"] and p["steps"] > x["steps"] else "") + ").")
    if c.fits and c.full_shape:
        return (f"- At L={c.length}, CPU SDPA keeps exact attention's memory within the Performer's, so the exact "
                f"model of the full shape fits. {steps} Where the paper saw the Transformer run out of memory, this "
                "machine shows a difference in speed, not in what fits.")
    return f"- At L={c.length}, {fit_sentence(c)}. {steps}"


def summary_section(res: Results, tol: Tolerances = TOLERANCES) -> str:
    table = md_table(["claim of the paper", "this run", "verdict"], claims(res, tol))
    return table + "\n\n" + "\n".join(discussion(res, tol))


def setup_section(res: Results) -> list[str]:
    plan, env = res.plan, res.environment
    shape = ", ".join(f"{k} {v}" for k, v in plan.shape.items())
    redraw = f"; FAVOR+ projections redrawn every {plan.redraw_interval} steps" if plan.redraw_interval else ""
    probe = f"after {plan.probe_steps} steps, or fewer for long windows" if plan.probe_steps else \
        "after a probe of the first steps"
    clip = f", gradient clip {plan.gradient_clip:g}" if plan.gradient_clip else ""
    return [
        f"- Data: `{env.fasta}` prepared with `protein_performer.corpus.prepare` (train/valid/test split by "
        "accession hash"
        + (f"; {env.train_proteins} training proteins, {env.train_residues:,} residues"
           if env.train_residues else "")
        + f"); every score is on the held-out test split ({env.test_proteins} proteins) with "
        "`protein_performer.score.score_windows` (masked: 15% of residues hidden, all by `<mask>`, "
        f"{plan.score_passes} independent masks per window from seed 0; causal: every residue from its prefix), "
        "windows of concatenated proteins; intervals are 95% paired bootstrap intervals over test windows. "
        "The neighbour-context n-gram (`protein_performer.baselines.ContextBaseline`) is fitted on the train "
        "split under the same masking: the most a model gets from the two adjacent tokens alone.",
        f"- Shape (all models): {shape}{redraw}.",
        f"- Training: AdamW lr {plan.lr:g}, {plan.warmup_steps} warm-up steps, then a cosine to 10% that "
        f"ends with each run's wall-clock budget ({probe}, the measured rate fixes the run's step count); masked "
        f"models hide {plan.mask_prob:.0%} of residues in training (80/10/10); windows of {plan.window}, "
        f"batch {plan.batch_size}{clip}.",
        f"- Budget: {env.budget_minutes:g} training minutes: {plan.table_minutes:.2f} per Table 2 run "
        f"× {len(res.table)} runs (seeds {plan.seeds}), {plan.long_minutes:.2f} per long-window "
        f"model, {plan.transfer_minutes:.2f} of fine-tuning per transfer target"
        + (f"; at most {plan.max_steps} steps per run (--tiny)" if plan.max_steps else "") + ".",
        f"- Versions: Python {env.python}, torch {env.torch}, pytorch-lightning {env.lightning}.",
        f"- Machine: {env.machine}; load average {env.load_average_end} at the end (on a shared machine "
        "equal wall clock does not mean equal compute: the steps column says how much each run got).",
    ]


def benchmark_section(res: Results, benchmark_link: str | None) -> list[str]:
    bench, lines = res.benchmark, []
    if bench.get("existing_md") and benchmark_link:
        lines += [f"Full benchmark table: [{bench['existing_md']}]({benchmark_link}).", ""]
    commands = bench.get("commands") or []
    if commands:
        lines += ["Commands: " + "; ".join(f"`{portable(c)}`" for c in commands), ""]
    if bench.get("block"):
        block = bench["block"].split("<!-- bench_attention:begin -->")[-1].split("<!-- bench_attention:end -->")[0]
        lines += [f"`{portable(commands[0])}` (this run):", "", portable(block.strip()), "",
                  "![attention time](figures/results_attention_time.png)", ""]
    if commands:  # the approximation-error figure is drawn whenever the benchmarks ran
        lines += ["![approximation error](figures/results_approximation_error.png)", ""]
    else:
        lines += ["Benchmarks skipped (--skip-benchmarks).", ""]
    return lines


def render(res: Results, *, benchmark_link: str | None = None, tol: Tolerances = TOLERANCES) -> str:
    """RESULTS.md from ``results_all.json``; ``benchmark_link`` is the relative link to the full
    attention benchmark (None: not linked)."""
    plan, env = res.plan, res.environment
    t2, t2_notes = table2_section(res, tol)
    lines = [
        "# Reproducing the Performer protein experiments on E. coli", "",
        f"Generated by `{portable(env.command)}` on {env.date} ({env.wall_minutes:.0f} minutes wall clock). "
        "Every number, table and figure below comes from that run; rerun it to regenerate this file.", "",
        "## Setup", "", *setup_section(res), "",
        "## Summary: the paper's claims at this scale", "", summary_section(res, tol), "",
        "## 1. Table 2: accuracy and perplexity (test split)", "",
        "Mean ± sample standard deviation over seeds" if len(plan.seeds) > 1 else
        "One seed (the budget did not allow more at the minimum run length), so there is no spread over seeds; "
        "the intervals below are over test windows (sampling of the test set, not of training).", "",
        t2, "", "Per-run numbers: [figures/results_table2.csv](figures/results_table2.csv).", "",
        "![validation accuracy during training](figures/results_training_curves.png)", "", t2_notes, "",
    ]
    if res.long:
        lw, lw_notes = long_section(res)
        lines += ["## 2. Long concatenated windows", "",
                  "Memory cap: the Performer-Softmax's measured peak training memory at that length (one AdamW step, "
                  "batch 1, fresh process, resident memory above the model). The exact model is the largest shape "
                  "(depth, then heads) within the cap.", "", lw, "",
                  "![accuracy over training time at long windows](figures/results_long_windows.png)", "", lw_notes, ""]
    if res.transfer:
        tr, tr_notes = transfer_section(res, tol)
        targets = rules.transfer_targets(res)
        lr = next(iter(targets.values()))["lr"]
        lines += ["## 3. Transfer: exact Transformer → Performer", "",
                  f"Source: the exact BID model of Table 2 (`{res.transfer['source']}`). Its weights load unchanged "
                  f"into each Performer of the same shape ({', '.join(NAMES[t] for t in targets)}); each is "
                  f"fine-tuned from lr {lr:g} (no warm-up, cosine over its budget) for the same wall clock. The "
                  "curves' step 0 is the zero-shot model on the validation batches.", "",
                  tr, "", "![transfer](figures/results_transfer.png)", "", tr_notes, ""]
    if res.similarity:
        sim, sim_notes = similarity_section(res, tol)
        first = res.similarity[0]
        long = next((s for s in res.similarity if s["model"].startswith("trained, ")), None)
        lines += ["## 4. Amino-acid similarity vs BLOSUM62", "",
                  f"The BID model of Table 2 with the lowest test perplexity ({first['attention']} attention, seed "
                  f"{first['seed']}) "
                  + (f"and part 2's with the lowest ({long['attention']} attention, L={long['window']}, "
                     f"{long['steps']:,} steps), each beside an untrained model of its shape "
                     if long else "and an untrained model of the same shape ")
                  + "(torch seed 0), analysed with "
                  f"`protein_performer.analysis.similarity.analyse` on the first {first['proteins']} test proteins; "
                  "correlations over the 190 off-diagonal pairs.", "", sim, "",
                  *[f"![{s['model']} {s['source']}](figures/{s['figure']})\n" for s in res.similarity],
                  sim_notes, ""]
    lines += ["## 5. Attention benchmark and approximation error", "", *benchmark_section(res, benchmark_link)]
    return "\n".join(lines).rstrip() + "\n"


def write_report(res: Results, out: Path, repo: Path | None = None, tol: Tolerances = TOLERANCES) -> Path:
    """Draw the figures and CSVs into ``out/figures`` and write ``out/RESULTS.md`` from ``res``.

    ``repo`` is the checkout that holds the full attention benchmark named in ``res`` (linked
    relative to ``out``; not linked when None).
    """
    draw_figures(res, out / "figures")
    existing = res.benchmark.get("existing_md")
    link = os.path.relpath(repo / existing, out.resolve()) if repo is not None and existing else None
    path = out / "RESULTS.md"
    path.write_text(render(res, benchmark_link=link, tol=tol))
    log.info("wrote %s", path)
    return path
