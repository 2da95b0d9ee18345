"""The scorers of ``score-variants``: objects with one interface, :class:`Scorer`, each giving every
variant row a score (higher = predicted fitter, NaN where it has none).

* :class:`ProfileScorer` — the family's column profile (column ``profile``; :mod:`.profile`);
* :class:`ModelScorer` — a checkpoint alone (column: the checkpoint's file stem; :mod:`.scoring`);
* :class:`HomologModelScorer` — the checkpoint with homologs in its window (``NAME+homologs``; :mod:`.context`);
* :class:`MixScorer` — the checkpoint (with homologs, where it has them) mixed with the profile
  (``...+profile``; :mod:`.mixing`);
* :class:`Blosum62Scorer`, :class:`UnigramScorer` — the baselines (in the summary, not in the CSV).

:func:`build_scorers` makes the list once from the options and the family; :func:`run_scorers` runs
it in order. Each scorer reads a :class:`ScoringContext`, never writes it: what the run read, the
checkpoints (:class:`~.checkpoints.CheckpointModels`) and the results of the scorers before it
(the mix reads the model's and the profile's scores there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from protein_performer.corpus.families import Family
from protein_performer.model import PerformerConfig
from protein_performer.variants.checkpoints import CheckpointModels
from protein_performer.variants.mutants import VariantTable
from protein_performer.variants.options import HomologOptions, ScoreVariantsOptions

log = logging.getLogger(__name__)

Kind = Literal["profile", "model", "homologs", "mix", "baseline"]


@dataclass(frozen=True, eq=False)
class Scored:
    """One scorer's scores of every variant row, and what the summary says of it."""

    column: str
    """Its column of ``--out`` (unique among the CSV's columns), or a baseline's name."""
    scores: np.ndarray
    """(rows,) higher = predicted fitter; NaN where it has no score."""
    kind: Kind
    info: Mapping[str, object] = field(default_factory=dict)
    """Its entry of the summary, before the metrics."""
    checkpoint: Path | None = None
    """The checkpoint it scored with (model, homologs and mix scorers)."""

    @property
    def section(self) -> Literal["models", "profile", "baselines"]:
        """Where the summary puts it."""
        return {"profile": "profile", "baseline": "baselines"}.get(self.kind, "models")


@dataclass(frozen=True)
class ScoringContext:
    """What every scorer reads: the options, the wild type, the variants, the family (None without
    ``--homologs``), the checkpoints, and the scorers' results so far (``earlier``, in order)."""

    options: ScoreVariantsOptions
    sequence: str
    table: VariantTable
    family: Family | None
    models: CheckpointModels
    earlier: tuple[Scored, ...] = ()

    def column_name(self, wanted: str) -> str:
        """``wanted``, or ``wanted_2``, ``wanted_3``, ...: the first that no input column and no
        earlier scorer's column has."""
        taken = {*self.table.header, *(s.column for s in self.earlier if s.kind != "baseline")}
        out, k = wanted, 2
        while out in taken:
            out, k = f"{wanted}_{k}", k + 1
        return out

    def last_of(self, checkpoint: Path | None, kinds: Sequence[Kind]) -> Scored:
        """The latest earlier result of one of ``kinds`` (of ``checkpoint``; None: of no checkpoint).
        Raises ``LookupError`` when there is none (a scorer run before the ones it reads)."""
        found = next((s for s in reversed(self.earlier) if s.checkpoint == checkpoint and s.kind in kinds), None)
        if found is None:
            raise LookupError(f"no earlier {' or '.join(kinds)} result{f' of {checkpoint}' if checkpoint else ''}; "
                              "run the scorers in build_scorers' order")
        return found


@runtime_checkable
class Scorer(Protocol):
    """One scorer of ``score-variants`` (module docstring)."""

    name: str
    """What it scores with, as the log says it."""

    def score(self, context: ScoringContext) -> Scored | None:
        """Its score of every row of ``context.table`` (None: it does not apply to this run; the log says why)."""
        ...


def homolog_window(family: HomologOptions, config: PerformerConfig) -> int | None:
    """Tokens of homologs plus the wild type in a model's window, None where there are none: with
    ``--context-tokens 0``, and for a model with per-protein attention (``segment_attention``),
    whose homologs could not reach the wild type."""
    return None if not family.context_tokens or config.segment_attention else family.context_tokens


@dataclass(frozen=True)
class ProfileScorer:
    """The family's weighted column profile, ``log P[c, mt] - log P[c, wt]`` per substitution."""

    name: str = "profile"

    def score(self, context: ScoringContext) -> Scored:
        from protein_performer.variants.profile import profile_log_probs, profile_scores, wild_type_columns

        family, options = context.family, context.options.family
        columns = wild_type_columns(family, context.sequence, region_start=context.options.msa_start)
        mutants = context.table.mutants
        outside = sum(1 for subs in mutants if subs is not None and any(columns[x.index] < 0 for x in subs))
        if outside:
            log.warning("%s: %d mutants touch a residue outside the alignment's columns: no profile score (the model "
                        "alone scores them, and the mix takes the model's score there)", options.path, outside)
        scores = profile_scores(profile_log_probs(family, pseudocount=options.pseudocount), columns, mutants)
        info = {"homologs": str(options.path), "members": len(family), "neff": round(family.neff, 3),
                "pseudocount": options.pseudocount, "wild_type_residues_in_columns": int((columns >= 0).sum()),
                "mutants_outside_columns": outside}
        return Scored(context.column_name(self.name), scores, "profile", info)


@dataclass(frozen=True)
class ModelScorer:
    """A checkpoint alone: masked marginals (or ``--strategy``) of a masked model, the
    log-likelihood ratio of a causal one, read in windows of ``--window-tokens``."""

    checkpoint: Path

    @property
    def name(self) -> str:
        return str(self.checkpoint)

    def score(self, context: ScoringContext) -> Scored:
        from protein_performer.variants.scoring import score_mutants

        options = context.options.model
        loaded = context.models.load(self.checkpoint)
        causal = loaded.config.causal
        column = context.column_name(self.checkpoint.stem)
        strategy = "log-likelihood-ratio" if causal else options.strategy
        log.info("%s: scoring %d mutants (%s)", self.checkpoint, sum(m is not None for m in context.table.mutants),
                 strategy)
        scores = score_mutants(loaded.model, context.sequence, context.table.mutants, causal=causal,
                               strategy=options.strategy, window_tokens=options.window_tokens,
                               batch_size=options.batch_size, progress=context.options.progress,
                               positions=context.models.positions(self.checkpoint))
        info = {"checkpoint": str(self.checkpoint), "column": column, "objective": loaded.objective,
                "strategy": strategy}
        return Scored(column, scores, "model", info, self.checkpoint)


@dataclass(frozen=True)
class HomologModelScorer:
    """A checkpoint with homologs drawn into its window around (masked) or before (causal) the wild
    type, averaged over ``--contexts`` draws."""

    checkpoint: Path

    @property
    def name(self) -> str:
        return f"{self.checkpoint} with homologs"

    def score(self, context: ScoringContext) -> Scored | None:
        from protein_performer.variants.context import ContextOptions, causal_context_scores, masked_context_scores

        alone = context.last_of(self.checkpoint, ("model",))
        loaded = context.models.load(self.checkpoint)
        family = context.options.family
        window = homolog_window(family, loaded.config)
        if window is None:
            log.info("%s: per-protein attention (segment_attention): homologs in the window cannot reach the wild "
                     "type, so there is no NAME+homologs column; the profile is mixed with the model alone",
                     alone.column)
            return None
        options = ContextOptions(context_length=window, contexts=family.contexts, seed=family.seed,
                                 batch_size=context.options.model.batch_size)
        fn = causal_context_scores if loaded.config.causal else masked_context_scores
        column = context.column_name(f"{alone.column}+homologs")
        scores = fn(loaded.model, context.family, context.sequence, context.table.mutants, options,
                    progress=context.options.progress)
        info = {"column": column, "checkpoint": alone.info["checkpoint"], "objective": alone.info["objective"],
                "strategy": f"{alone.info['strategy']} with homologs in the window", "contexts": family.contexts,
                "context_length": window}
        return Scored(column, scores, "homologs", info, self.checkpoint)


@dataclass(frozen=True)
class MixScorer:
    """``(1 - w) model + w profile``, the model with homologs where it has them; ``w`` from
    ``--profile-weight`` or chosen on held-out homologs (:func:`~.mixing.choose_profile_weight`)."""

    checkpoint: Path

    @property
    def name(self) -> str:
        return f"{self.checkpoint} mixed with the profile"

    def score(self, context: ScoringContext) -> Scored:
        from protein_performer.variants.mixing import choose_profile_weight, mix_scores

        base = context.last_of(self.checkpoint, ("homologs", "model"))
        profile = context.last_of(None, ("profile",))
        family = context.options.family
        weight, rule = family.fixed_weight, {"rule": "--profile-weight"}
        if weight is None:
            loaded = context.models.load(self.checkpoint)
            choice = choose_profile_weight(loaded.model, context.family,
                                           context_length=homolog_window(family, loaded.config), seed=family.seed,
                                           pseudocount=family.pseudocount, progress=context.options.progress,
                                           split=family.split)
            weight, rule = choice.weight, {"rule": "held-out homologs' hidden residues (variants.mixing)",
                                           "residues": choice.residues, "members": choice.members,
                                           "log_likelihood": {str(k): round(v, 5) for k, v in
                                                              choice.log_likelihood.items()}}
        column = context.column_name(f"{base.column}+profile")
        info = {"column": column, "checkpoint": base.info["checkpoint"], "objective": base.info["objective"],
                "strategy": f"(1 - w) {base.column} + w profile", "profile_weight": weight,
                "profile_weight_choice": rule}
        return Scored(column, mix_scores(base.scores, profile.scores, weight), "mix", info, self.checkpoint)


@dataclass(frozen=True)
class Blosum62Scorer:
    """BLOSUM62[wt, mut] summed over a mutant's substitutions (a baseline)."""

    name: str = "blosum62"

    def score(self, context: ScoringContext) -> Scored:
        from protein_performer.variants.scoring import blosum62_scores

        return Scored(self.name, blosum62_scores(context.table.mutants), "baseline")


@dataclass(frozen=True)
class UnigramScorer:
    """``log u(mut) - log u(wt)`` (a baseline), u the residue frequencies of the training split of the
    first checkpoint that records them, else of the wild type."""

    name: str = "unigram"

    def score(self, context: ScoringContext) -> Scored:
        from protein_performer.alphabet import ALPHABET
        from protein_performer.baselines import unigram_probabilities
        from protein_performer.variants.scoring import unigram_scores

        probs, source = None, "training split of the first checkpoint"
        for path in context.options.checkpoints:
            probs = unigram_probabilities(context.models.token_counts(path))
            if probs is not None:
                break
        if probs is None:
            counts = np.bincount(ALPHABET.encode(context.sequence), minlength=len(ALPHABET))
            probs, source = unigram_probabilities(counts), "wild-type composition (no training counts)"
        return Scored(self.name, unigram_scores(context.table.mutants, probs), "baseline", {"source": source})


def build_scorers(options: ScoreVariantsOptions, family: Family | None) -> list[Scorer]:
    """Every scorer of the run, in the order of the CSV's columns, then the baselines: the profile
    (an aligned family), then per checkpoint the model, the model with homologs (a family, and
    ``--context-tokens`` above 0) and the mix (an aligned family)."""
    if family is not None and not family.aligned:
        log.warning("%s: unaligned homologs: no profile scorer (align them with `protein-performer homologs`)",
                    options.family.path)
    profile = family is not None and family.aligned
    scorers: list[Scorer] = [ProfileScorer()] if profile else []
    for path in options.checkpoints:
        scorers.append(ModelScorer(path))
        if family is not None and options.family.context_tokens:
            scorers.append(HomologModelScorer(path))
        if profile:
            scorers.append(MixScorer(path))
    return [*scorers, Blosum62Scorer(), UnigramScorer()]


def run_scorers(scorers: Sequence[Scorer], context: ScoringContext) -> tuple[Scored, ...]:
    """Each scorer in turn, each seeing the results of those before it; their results in order."""
    done: tuple[Scored, ...] = ()
    for scorer in scorers:
        result = scorer.score(replace(context, earlier=done))
        if result is not None:
            done += (result,)
    return done


__all__ = ["Blosum62Scorer", "HomologModelScorer", "MixScorer", "ModelScorer", "ProfileScorer", "Scored", "Scorer",
           "ScoringContext", "UnigramScorer", "build_scorers", "homolog_window", "run_scorers"]
