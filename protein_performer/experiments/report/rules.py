"""The verdict rules of the reproduction report, defined once.

Each rule reads :class:`~protein_performer.experiments.results.Results` (``results_all.json``) and returns a
:class:`Verdict`; the summary table and the section notes both call these functions, so the two
cannot disagree. The only thresholds are the fields of :class:`Tolerances`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from protein_performer.experiments.results import Results

ATTENTIONS = ("exact", "relu", "softmax", "hybrid")
"""Table 2's models, in report order. ``hybrid`` is the learning study's winner (all heads but one
exact within a short window, one FAVOR+ head over the whole window); results saved before it was
added have no hybrid rows, and :func:`attentions` leaves it out of their report."""
TRANSFER_TARGETS = ("softmax", "hybrid")
"""The Performers that the transfer section fine-tunes from the exact model's weights."""
OBJECTIVES = ("mlm", "clm")
LABELS = {"mlm": "BID", "clm": "UNI"}
NAMES = {"exact": "Transformer (exact)", "relu": "Performer-ReLU", "softmax": "Performer-Softmax",
         "hybrid": "Performer hybrid (local + FAVOR+)"}
MIB = 2**20


@dataclass(frozen=True)
class Tolerances:
    perplexity: float = 0.005
    """Relative margin within which a perplexity "matches" a reference: ``ppl <= ref * (1 + perplexity)``."""
    seed_spread: float = 2.0
    """With several seeds the perplexity margin widens to this many relative standard deviations over seeds."""
    similarity: float = 0.1
    """Pearson margin by which the trained model's similarity with BLOSUM62 must exceed the untrained control's."""


TOLERANCES = Tolerances()


@dataclass(frozen=True)
class Verdict:
    """``word`` is ``agrees``, ``disagrees``, ``partly`` or ``inconclusive``; ``reason`` says why, when needed."""

    word: str
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.word} ({self.reason})" if self.reason else self.word


# --------------------------------------------------------------------------- Table 2


def learned(scored: dict) -> bool:
    """Perplexity below the unigram baseline's with 95% confidence (the upper end of the paired
    bootstrap interval of perplexity / unigram perplexity is below 1)."""
    ci = scored.get("perplexity_ratio_ci95")
    return ci is not None and ci[1] < 1


def rows(res: Results, attention: str | None = None, objective: str | None = None) -> list[dict]:
    """Table 2 runs (one per seed) of ``attention`` and ``objective`` (all when None)."""
    return [r for r in res.table if (attention is None or r["attention"] == attention)
            and (objective is None or r["objective"] == objective)]


def attentions(res: Results) -> list[str]:
    """The Table 2 models that ``res`` has rows of, in :data:`ATTENTIONS` order."""
    return [a for a in ATTENTIONS if rows(res, a)]


def crowded_runs(res: Results) -> list[dict]:
    """Table 2 runs whose step rate was measured while other processes competed for the CPUs: the
    1-minute load average then exceeded the CPU count by more than 0.5 (runs saved before the load
    was recorded, and --tiny runs, have none)."""
    cpus = res.environment.cpus if res.environment else None
    return [r for r in res.table if cpus and r.get("load_at_probe") is not None
            and r["load_at_probe"] > cpus + 0.5]


def mean_spread(values) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for a single value)."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def perplexity(res: Results, attention: str, objective: str) -> float:
    """Mean test perplexity over seeds."""
    return mean_spread([r["perplexity"] for r in rows(res, attention, objective)])[0]


def all_learned(res: Results, objective: str) -> bool:
    """Every Table 2 model of ``objective`` beats the unigram baseline (see :func:`learned`)."""
    return all(learned(r) for r in rows(res, objective=objective))


def perplexity_tolerance(res: Results, objective: str, tol: Tolerances = TOLERANCES) -> float:
    """``tol.perplexity``, widened to ``tol.seed_spread`` times the largest relative spread over seeds."""
    spreads = [s / m for m, s in (mean_spread([r["perplexity"] for r in rows(res, a, objective)])
                                  for a in attentions(res)) if not math.isnan(s)]
    return max(tol.perplexity, tol.seed_spread * max(spreads, default=0.0))


def matches_exact(res: Results, attention: str, objective: str, tol: Tolerances = TOLERANCES) -> Verdict:
    """The paper's Table 2 claim for one objective: ``attention`` is at least as good as (ReLU) or
    close to (softmax) the exact model, i.e. its perplexity is within the tolerance of the exact one."""
    if not all_learned(res, objective):
        return Verdict("inconclusive", "not every model beat the unigram")
    ok = perplexity(res, attention, objective) <= perplexity(res, "exact", objective) * (
        1 + perplexity_tolerance(res, objective, tol))
    return Verdict("agrees" if ok else "disagrees")


def matches_exact_overall(res: Results, attention: str, tol: Tolerances = TOLERANCES) -> Verdict:
    """:func:`matches_exact` over both objectives: agrees when both agree, partly when one does."""
    verdicts = {o: matches_exact(res, attention, o, tol) for o in OBJECTIVES}
    words = {v.word for v in verdicts.values()}
    if "inconclusive" in words:
        return Verdict("inconclusive", "not every model beat the unigram")
    if words == {"agrees"}:
        return Verdict("agrees")
    if words == {"disagrees"}:
        return Verdict("disagrees")
    return Verdict("partly", "holds for " + " and ".join(LABELS[o] for o, v in verdicts.items() if v.word == "agrees")
                   + " only")


def context_perplexity(res: Results, objective: str) -> float | None:
    """The neighbour-context n-gram's perplexity, or None where the run did not fit it."""
    values = [r.get("context_perplexity") for r in rows(res, objective=objective)]
    if not values or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return None
    return float(values[0])


def beat_context(res: Results, objective: str) -> list[str] | None:
    """The attentions whose mean perplexity is below the n-gram's (None where there is no n-gram)."""
    c = context_perplexity(res, objective)
    return None if c is None else [a for a in attentions(res) if perplexity(res, a, objective) < c]


# --------------------------------------------------------------------------- long windows


def probe_fits(probe: dict, cap_mib: float) -> bool:
    """A memory probe that ran (no ``error``) and peaked within the cap."""
    return "peak_bytes" in probe and probe["peak_bytes"] / MIB <= cap_mib


@dataclass(frozen=True)
class LongComparison:
    """The models of one long-window length: the Performer, the exact model trained (None when
    none was), whether that exact model fits within the Performer's memory, and whether it is of
    the Performer's full shape."""

    length: int
    performer: dict
    exact: dict | None
    cap_mib: float
    probes: list[dict]
    fits: bool
    full_shape: bool
    hybrid: dict | None = None
    """The hybrid trained at this length (results saved before it was added have none)."""


def long_lengths(res: Results) -> list[int]:
    return sorted({r["length"] for r in res.long})


def long_comparison(res: Results, length: int) -> LongComparison:
    at = [r for r in res.long if r["length"] == length]
    performer = next(r for r in at if r["attention"] not in ("exact", "hybrid"))
    exact = next((r for r in at if r["attention"] == "exact"), None)
    hybrid = next((r for r in at if r["attention"] == "hybrid"), None)
    probes = performer.get("exact_probes") or (exact or {}).get("exact_probes") or []
    cap = performer["cap_mib"]
    fits = exact is not None and any(probe_fits(p, cap) and (p["depth"], p["heads"]) == (exact["depth"], exact["heads"])
                                     for p in probes)
    full = exact is not None and (exact["depth"], exact["heads"]) == (performer["depth"], performer["heads"])
    return LongComparison(length, performer, exact, cap, probes, fits, full, hybrid)


def best_performer_ratio(c: LongComparison) -> tuple[dict, float] | None:
    """The Performer (Performer-Softmax or the hybrid) with the lower test perplexity at this length,
    and its perplexity over the exact model's; None when no exact model was trained."""
    if c.exact is None:
        return None
    best = min([c.performer] + ([c.hybrid] if c.hybrid else []), key=lambda r: r["perplexity"])
    return best, best["perplexity"] / c.exact["perplexity"]


def beats_exact_that_fits(res: Results, length: int, model: str = "performer") -> Verdict:
    """The paper's long-sequence claim: the Performer (``model="performer"``, Performer-Softmax, or
    ``"hybrid"``) beats the largest exact model that fits in Performer-Softmax's memory.

    Inconclusive when neither model beat the unigram; when no exact shape fits, the claim holds
    trivially if the Performer learned.
    """
    c = long_comparison(res, length)
    performer = c.hybrid if model == "hybrid" else c.performer
    if performer is None:
        raise ValueError(f"no {model} was trained at L={length}")
    models = [performer] + ([c.exact] if c.exact else [])
    if not any(m.get("learned") for m in models):
        return Verdict("inconclusive", "no model beat the unigram")
    if not c.fits:
        return Verdict("agrees", "no exact model fits in the Performer's memory")
    return Verdict("agrees" if performer["perplexity"] < c.exact["perplexity"] else "disagrees")


# --------------------------------------------------------------------------- transfer and similarity


def transfer_source(res: Results) -> dict:
    """The Table 2 run the transfer started from (exact, masked, seed 0)."""
    return next(r for r in res.table if r["attention"] == "exact" and r["objective"] == "mlm" and r["seed"] == 0)


def transfer_targets(res: Results) -> dict[str, dict]:
    """Each fine-tuned Performer of the transfer section by target attention: ``fine_tuned`` (its test
    score), ``steps``, ``train_s``, ``lr``, ``curve``, ``scratch_curve``, ``zero_shot_val_accuracy``.
    Results saved before the hybrid target kept their one Performer-Softmax run at the top level."""
    t = res.transfer
    if "targets" in t:
        return t["targets"]
    keys = ("fine_tuned", "steps", "train_s", "lr", "curve", "scratch_curve", "zero_shot_val_accuracy")
    return {"softmax": {k: t[k] for k in keys if k in t}}


def transfer_perplexities(res: Results, target: str) -> tuple[float, float, float]:
    """Test perplexity of the exact source, of the zero-shot swap to ``target`` and after fine-tuning."""
    t = res.transfer
    return (t["exact_test_perplexity"], t["zero_shot"][target]["perplexity"],
            transfer_targets(res)[target]["fine_tuned"]["perplexity"])


def recovered_share(res: Results, target: str = "softmax") -> float:
    """Share of the zero-shot perplexity increase that fine-tuning took back (NaN when the swap did not
    hurt); above 1 when the fine-tuned model ends below the exact source."""
    e, z, a = transfer_perplexities(res, target)
    return (z - a) / (z - e) if z > e else float("nan")


def transfer_recovers(res: Results, target: str = "softmax", tol: Tolerances = TOLERANCES) -> Verdict:
    """The paper's transfer claim: the fine-tuned Performer is back within the tolerance of the source's
    perplexity and no worse than the zero-shot swap (partly: it recovered some of the loss)."""
    if not learned(transfer_source(res)):
        return Verdict("inconclusive", "the exact source did not beat the unigram")
    e, z, a = transfer_perplexities(res, target)
    if a <= e * (1 + tol.perplexity) and a <= z:
        return Verdict("agrees")
    share = recovered_share(res, target)
    return Verdict("partly", f"fine-tuning recovered {share:.0%} of the loss") if share > 0 else Verdict("disagrees")


SIMILARITY_SOURCES = {"attention": "attention profiles", "pairs": "attention pairs",
                      "context": "attention contexts", "embedding": "embeddings"}
"""The similarity matrices reproduce records (``source``), and how the report names them."""


def similarity_sources(res: Results, model: str = "trained") -> list[str]:
    """The sources present in ``res.similarity`` for both ``model`` and its untrained control."""
    return [s for s in SIMILARITY_SOURCES
            if similarity_pearson(res, model, s) is not None
            and similarity_pearson(res, control_of(model), s) is not None]


def similarity_models(res: Results) -> list[str]:
    """The trained models analysed, in the order recorded: ``trained`` (Table 2's best masked model)
    and, from later runs, ``trained, L=N`` (part 2's best)."""
    return list(dict.fromkeys(s["model"] for s in res.similarity if s["model"].startswith("trained")))


def control_of(model: str) -> str:
    """The label of ``model``'s untrained control: ``trained, L=8192`` -> ``untrained, L=8192``."""
    return "un" + model


def similarity_pearson(res: Results, model: str, source: str) -> float | None:
    return next((s["pearson"] for s in res.similarity if s["model"] == model and s["source"] == source), None)


def resembles_blosum(res: Results, source: str, tol: Tolerances = TOLERANCES, model: str = "trained") -> Verdict:
    """The paper's similarity claim for ``source`` (attention or embedding): the trained model's
    Pearson correlation with BLOSUM62 exceeds its untrained control's by ``tol.similarity``."""
    if not any(learned(r) for r in rows(res, objective="mlm")):
        return Verdict("inconclusive", "no masked model beat the unigram")
    trained, untrained = similarity_pearson(res, model, source), similarity_pearson(res, control_of(model), source)
    return Verdict("agrees" if trained > untrained + tol.similarity else "disagrees")
