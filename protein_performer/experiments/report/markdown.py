"""RESULTS.md text from ``results_all.json``: one function per section, every sentence computed.

The verdicts come from :mod:`protein_performer.experiments.report.rules`; nothing here compares numbers
against a threshold of its own.
"""

from __future__ import annotations

import math
import re

from protein_performer.experiments.report import rules
from protein_performer.experiments.report.rules import (
    ATTENTIONS,
    LABELS,
    MIB,
    NAMES,
    OBJECTIVES,
    TOLERANCES,
    Tolerances,
    long_comparison,
    long_lengths,
    perplexity,
)
from protein_performer.experiments.report.tables import md_table
from protein_performer.experiments.results import Results
from protein_performer.outputs import repo_relative


def fmt(values, scale: float = 1.0, digits: int = 2) -> str:
    """``mean ± sd`` over seeds (the mean alone for one value)."""
    mean, spread = rules.mean_spread([v * scale for v in values])
    return f"{mean:.{digits}f}" if math.isnan(spread) else f"{mean:.{digits}f} ± {spread:.{digits}f}"


def ci(pair, scale: float = 1.0, digits: int = 2) -> str:
    if pair is None or (isinstance(pair, float) and math.isnan(pair)):
        return "n/a"
    return f"[{pair[0] * scale:.{digits}f}, {pair[1] * scale:.{digits}f}]"


def portable(text: str) -> str:
    """Commands as they would be typed in the repository: no absolute or temporary paths."""
    text = re.sub(r"/tmp/\S+/attention\.md", "TMP/attention.md", text)
    text = re.sub(r"(?<![\w.])/\S*/python[0-9.]*(?=\s)", "python", text)  # an interpreter's full path
    text = repo_relative(text)  # this checkout and the data beside it (../shared/data)
    return re.sub(r"(?<![\w.])/\S*?/((?:docs|scripts|runs)/)", r"\1", text)  # a checkout's absolute path


def unigram_perplexity(res: Results) -> float:
    """Unigram perplexity on the hidden test residues (BID)."""
    return float(rules.rows(res, objective="mlm")[0]["unigram_perplexity"])


def _or_none(items: list[str]) -> str:
    return ", ".join(items) if items else "none"


# --------------------------------------------------------------------------- 1. Table 2


def table2_section(res: Results, tol: Tolerances = TOLERANCES) -> tuple[str, str]:
    """The accuracy / perplexity table, the paired comparison with the unigram, and the notes."""

    def first(objective: str, column: str) -> list:
        return [rules.rows(res, objective=objective)[0][column]]

    body = [["Empirical baseline (unigram)"] + sum(
        ([fmt(first(o, "unigram_accuracy"), 100), fmt(first(o, "unigram_perplexity"))] for o in OBJECTIVES), []) + [""]]
    if all(rules.context_perplexity(res, o) is not None for o in OBJECTIVES):
        body.append(["Neighbour-context n-gram (2 tokens)"] + sum(
            ([fmt(first(o, "context_accuracy"), 100), fmt(first(o, "context_perplexity"))] for o in OBJECTIVES), [])
            + [""])
    for attention in rules.attentions(res):
        row = [NAMES[attention]]
        for objective in OBJECTIVES:
            sel = rules.rows(res, attention, objective)
            row += [fmt([r["accuracy"] for r in sel], 100), fmt([r["perplexity"] for r in sel])]
        row.append(" / ".join(str(int(rules.mean_spread([r["steps"] for r in rules.rows(res, attention, o)])[0]))
                              for o in OBJECTIVES))
        body.append(row)
    table = md_table(["Model", "BID accuracy (%)", "BID perplexity", "UNI accuracy (%)", "UNI perplexity",
                      "steps BID / UNI (mean)"], body)
    seed = min(r["seed"] for r in res.table)
    gains = []
    for attention in rules.attentions(res):
        row = [NAMES[attention]]
        for objective in OBJECTIVES:
            r = next(r for r in rules.rows(res, attention, objective) if r["seed"] == seed)
            row += [f"{r['accuracy_gain']:+.2f} {ci(r['accuracy_gain_ci95'])}",
                    f"{r['perplexity_ratio']:.4f} {ci(r['perplexity_ratio_ci95'], digits=4)}"]
        gains.append(row)
    table += ("\n\nPaired comparison with the unigram baseline on the same residues (seed "
              f"{seed}; 95% bootstrap intervals over test windows):\n\n")
    table += md_table(["Model", "BID accuracy gain (points)", "BID perplexity / unigram",
                       "UNI accuracy gain (points)", "UNI perplexity / unigram"], gains)
    return table, "\n\n".join(f"- {table2_note(res, o, tol)}" for o in OBJECTIVES)


def table2_note(res: Results, objective: str, tol: Tolerances = TOLERANCES) -> str:
    sel = rules.rows(res, objective=objective)
    present = rules.attentions(res)
    ppl = {a: perplexity(res, a, objective) for a in present}
    acc = {a: rules.mean_spread([r["accuracy"] for r in rules.rows(res, a, objective)])[0] * 100 for a in present}
    margin = rules.perplexity_tolerance(res, objective, tol)
    parts = [f"{LABELS[objective]}: perplexity Performer-ReLU {ppl['relu']:.3f}, Performer-Softmax "
             f"{ppl['softmax']:.3f}, exact {ppl['exact']:.3f}, unigram {float(sel[0]['unigram_perplexity']):.3f}; "
             f"accuracy {acc['relu']:.2f}% / {acc['softmax']:.2f}% / {acc['exact']:.2f}%, unigram "
             f"{float(sel[0]['unigram_accuracy']) * 100:.2f}%."]
    if "hybrid" in present:
        parts.append(f"{NAMES['hybrid']}: perplexity {ppl['hybrid']:.3f}, accuracy {acc['hybrid']:.2f}%.")
    for a, claim in (("relu", "Performer-ReLU at least matches the exact model"),
                     ("softmax", "Performer-Softmax is close to the exact model"),
                     ("hybrid", "(not a claim of the paper) the hybrid at least matches the exact model")):
        if a not in present:
            continue
        parts.append(f"Paper: {claim} — {rules.matches_exact(res, a, objective, tol)} here: perplexity "
                     f"{ppl[a] / ppl['exact'] - 1:+.1%} relative to the exact model's (criterion: at most "
                     f"+{margin:.1%}).")
    parts.append("Every model's perplexity is below the unigram baseline's with 95% confidence."
                 if rules.all_learned(res, objective) else "Not every model's perplexity is below the unigram "
                 "baseline's with 95% confidence: the budget is too small to learn much on this machine.")
    better = rules.beat_context(res, objective)
    if better is not None:
        parts.append(f"The neighbour-context n-gram reaches {rules.context_perplexity(res, objective):.3f}; "
                     + (f"{', '.join(NAMES[a] for a in better)} beat{'s' if len(better) == 1 else ''} it, so "
                        f"{'it uses' if len(better) == 1 else 'they use'} more than adjacent residues."
                        if better else "no model beats it yet (the paper's models learn far more than "
                        "adjacent-residue statistics, from billions of tokens)."))
    return " ".join(parts)


# --------------------------------------------------------------------------- 2. long windows


def fit_sentence(c: rules.LongComparison) -> str:
    """What fits in the Performer's memory at one length, from the probes."""
    p, x = c.performer, c.exact
    if c.fits and c.full_shape:
        naive = c.length * c.length * 4 * x["heads"] * x["depth"] / MIB
        return (f"the exact model of the full shape fits in the Performer's memory ({x['peak_mib']:.0f} vs "
                f"{p['peak_mib']:.0f} MiB): PyTorch's CPU SDPA kernel never stores the L×L matrix (a naive "
                f"implementation would keep {naive:.0f} MiB of attention weights for the backward pass), so "
                "here the comparison is one of speed, not memory")
    if c.fits:
        return (f"the largest exact model within {p['peak_mib']:.0f} MiB has depth {x['depth']}, heads {x['heads']} "
                "(the full shape does not fit)")
    smallest = c.probes[-1] if c.probes else None
    need = ("its probe failed: " + smallest["error"].strip().splitlines()[-1][:120] if smallest and "error" in smallest
            else f"it needs {smallest['peak_bytes'] / MIB:.0f} MiB" if smallest else "none was probed")
    trained = (f"depth {x['depth']}, heads {x['heads']} was trained anyway for comparison" if x
               else "only the Performer was trained")
    return f"no exact model fits in the Performer's {c.cap_mib:.0f} MiB (the smallest, {need}); {trained}"


def long_section(res: Results) -> tuple[str, str]:
    table = md_table(["L", "model", "depth", "heads", "peak MiB (probe)", "s / step (probe)", "steps",
                      "test accuracy (%)", "test perplexity"],
                     [[r["length"], r["model"], r["depth"], r["heads"], f"{r['peak_mib']:.0f}", f"{r['step_s']:.2f}",
                       r["steps"], f"{r['accuracy'] * 100:.2f}", f"{r['perplexity']:.2f}"] for r in res.long])
    probes = []
    for length in long_lengths(res):
        c = long_comparison(res, length)
        probes += [[length, p["depth"], p["heads"], f"{p['peak_bytes'] / MIB:.0f}" if "peak_bytes" in p else "failed",
                    f"{c.cap_mib:.0f}", "yes" if rules.probe_fits(p, c.cap_mib) else "no"] for p in c.probes]
    table += "\n\nExact shapes tried, largest first (peak training memory above the model, fresh process):\n\n"
    table += md_table(["L", "depth", "heads", "peak MiB", "cap MiB (Performer)", "fits"], probes)
    notes = []
    for length in long_lengths(res):
        c = long_comparison(res, length)
        p, x = c.performer, c.exact
        verdict = rules.beats_exact_that_fits(res, length)
        run = (f"In equal wall clock the Performer made {p['steps']} steps, the exact model {x['steps']}; test "
               f"perplexity {p['perplexity']:.3f} vs {x['perplexity']:.3f} (unigram {unigram_perplexity(res):.3f}), "
               f"accuracy {p['accuracy'] * 100:.2f}% vs {x['accuracy'] * 100:.2f}%." if x else
               f"The Performer made {p['steps']} steps; test perplexity {p['perplexity']:.3f} (unigram "
               f"{unigram_perplexity(res):.3f}), accuracy {p['accuracy'] * 100:.2f}%.")
        hybrid = ""
        if c.hybrid is not None:
            h = c.hybrid
            hybrid = (f" The hybrid (every head but one exact within {res.plan.local_window} residues, "
                      f"one FAVOR+ head; {h['peak_mib']:.0f} MiB) made {h['steps']} steps in the same time: test "
                      f"perplexity {h['perplexity']:.3f}, accuracy {h['accuracy'] * 100:.2f}%.")
        best = rules.best_performer_ratio(c)
        margin = (f" Best Performer ({best[0]['model']}) / exact test perplexity: {best[1]:.3f}." if best else "")
        notes.append(f"L={length}: {fit_sentence(c)}. {run}{hybrid}{margin} Paper: the Performer beats the exact "
                     f"model that fits — {verdict} here.")
    return table, "\n\n".join(f"- {n}" for n in notes)


# --------------------------------------------------------------------------- 3. transfer, 4. similarity


def transfer_section(res: Results, tol: Tolerances = TOLERANCES) -> tuple[str, str]:
    t, targets = res.transfer, rules.transfer_targets(res)
    table = md_table(["model (BID, test split)", "accuracy (%)", "perplexity"], [
        ["exact Transformer (source)", f"{t['exact_test_accuracy'] * 100:.2f}", f"{t['exact_test_perplexity']:.2f}"],
        *[[f"zero-shot swap to {NAMES[a]}", f"{t['zero_shot'][a]['accuracy'] * 100:.2f}",
           f"{t['zero_shot'][a]['perplexity']:.2f}"] for a in ATTENTIONS if a in t["zero_shot"]],
        *[[f"{NAMES[a]} after {f['steps']} fine-tune steps ({f['train_s']:.0f} s, lr {f['lr']:g})",
           f"{f['fine_tuned']['accuracy'] * 100:.2f}", f"{f['fine_tuned']['perplexity']:.2f}"]
          for a, f in targets.items()]])
    notes = []
    for target in targets:
        e, z, a = rules.transfer_perplexities(res, target)
        verdict = rules.transfer_recovers(res, target, tol)
        if verdict.word == "inconclusive":
            notes.append(f"{NAMES[target]}: inconclusive: the exact source model (perplexity {e:.3f}) is not below "
                         f"the unigram baseline ({unigram_perplexity(res):.3f}) with 95% confidence, so there is "
                         f"little to transfer; zero-shot {z:.3f}, fine-tuned {a:.3f}.")
            continue
        hurt = z > e * (1 + tol.perplexity)
        scratch = rules.rows(res, target, "mlm")
        versus = (f" Trained from scratch instead (Table 2, {res.plan.table_minutes:.2f} minutes, "
                  f"{scratch[0]['steps']} steps) it reaches {scratch[0]['perplexity']:.3f}, "
                  + ("so here the exact weights are a valid start but not a shortcut."
                     if scratch[0]["perplexity"] <= a else "so the exact weights gave it a head start.")
                  if scratch else "")
        notes.append(
            f"{NAMES[target]}: exact source {e:.3f}; zero-shot swap {z:.3f} ({z / e - 1:+.1%}); after fine-tuning "
            f"{a:.3f} ({a / e - 1:+.1%}). Paper (LM1B): swapping the attention loses accuracy at first and "
            f"fine-tuning recovers it quickly — {verdict.word} here"
            + (f": {verdict.reason}" if verdict.reason else "")
            + f" (criterion for full agreement: back within {tol.perplexity:.1%} of the source's perplexity and no "
            "worse than the swap)"
            + ("." if hurt else "; there is little to recover: the zero-shot swap barely hurts this small model.")
            + versus)
    return table, "\n\n".join(f"- {n}" for n in notes)


def similarity_section(res: Results, tol: Tolerances = TOLERANCES) -> tuple[str, str]:
    table = md_table(["model", "matrix", "Pearson", "Spearman", "p (Pearson)", "top 5 pairs",
                      "ranks of D-E F-Y I-V K-R (of 190)"],
                     [[s["model"], s["source"], f"{s['pearson']:.3f}", f"{s['spearman']:.3f}", f"{s['pearson_p']:.1e}",
                       s["top_pairs"], " ".join(str(v) for v in s["landmark_ranks"].values())]
                      for s in res.similarity])
    notes = [f"- {rules.SIMILARITY_SOURCES[which]}{'' if model == 'trained' else f' ({model})'}: Pearson with "
             f"BLOSUM62 {rules.similarity_pearson(res, model, which):.3f} trained vs "
             f"{rules.similarity_pearson(res, rules.control_of(model), which):.3f} untrained control. Paper: the "
             f"learned matrix resembles BLOSUM — {rules.resembles_blosum(res, which, tol, model)} here (criterion: "
             f"trained above untrained by more than {tol.similarity:g})."
             for model in rules.similarity_models(res) for which in rules.similarity_sources(res, model)]
    return table, "\n".join(notes)
