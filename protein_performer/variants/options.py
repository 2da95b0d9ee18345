"""What one ``score-variants`` run is asked to do, as typed options: made once from the command line
(:meth:`ScoreVariantsOptions.from_args`), checked before any work (:meth:`ScoreVariantsOptions.check`),
then the only thing the scorers, the metrics and the writers read."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def parse_profile_weight(text: str) -> float | None:
    """``--profile-weight``: a number in [0, 1], or None for ``auto``; raises ``ValueError`` for anything else."""
    if text == "auto":
        return None
    try:
        weight = float(text)
    except ValueError:
        raise ValueError(f"--profile-weight must be a number in [0, 1] or auto, got {text!r}") from None
    if not 0 <= weight <= 1:
        raise ValueError(f"--profile-weight must be in [0, 1], got {weight}")
    return weight


@dataclass(frozen=True)
class ModelOptions:
    """How each checkpoint scores the mutants."""

    strategy: str = "masked-marginals"
    """Of masked models: masked-marginals, wt-marginals or pseudo-ppl (causal models: the log-likelihood ratio)."""
    window_tokens: int = 1024
    """Tokens per window (``<cls>`` and ``<eos>`` included)."""
    batch_size: int = 8
    device: str | None = None
    """Torch device (None: cuda when available, else cpu)."""


@dataclass(frozen=True)
class HomologOptions:
    """The wild type's family (``--homologs``) and the scorers it adds: the profile, each model with
    homologs in its window, and the model-profile mix."""

    path: Path | None = None
    """Homologs: A3M, A2M, Stockholm, aligned or plain FASTA (None: no family scorers)."""
    query: str | None = None
    """Id of the family's query record (None: the first)."""
    format: str = "auto"
    identity: float = 0.8
    """Sequence weight = 1 / members within this identity."""
    pseudocount: float = 0.5
    """Of the profile."""
    contexts: int = 4
    """Independent draws of homologs into the window; scores are averaged."""
    context_tokens: int = 8192
    """Tokens in a window of homologs plus the wild type (0: no homologs in the window)."""
    seed: int = 0
    """Seed of the context draws."""
    profile_weight: str = "auto"
    """w in (1 - w) model + w profile: a number in [0, 1], or auto (chosen on held-out homologs)."""
    split_identity: float = 0.8
    valid_fraction: float = 0.05
    test_fraction: float = 0.05
    """``prepare --family``'s split: the mix weight is chosen on the members that dataset held out."""

    @property
    def fixed_weight(self) -> float | None:
        """``profile_weight`` as a number, None for auto (:func:`parse_profile_weight`)."""
        return parse_profile_weight(self.profile_weight)

    @property
    def split(self) -> dict:
        """:func:`~protein_performer.corpus.families.similarity_splits`' keywords of ``prepare --family``."""
        return dict(split_identity=self.split_identity, valid_fraction=self.valid_fraction,
                    test_fraction=self.test_fraction)


@dataclass(frozen=True)
class ScoreVariantsOptions:
    """One ``score-variants`` run (the flags of :func:`protein_performer.variants.command.add_arguments`)."""

    fasta: Path
    """The wild type (first record)."""
    variants: Path
    """CSV with one mutant per row."""
    out: Path
    """The input CSV plus one score column per scorer."""
    checkpoints: tuple[Path, ...] = ()
    family: HomologOptions = HomologOptions()
    model: ModelOptions = ModelOptions()
    unknown: str = "error"
    """What to do with a non-amino-acid letter in the FASTA (``--unknown``)."""
    mutation_col: str | None = None
    offset_idx: int = 1
    """Number of the sequence's first residue."""
    skip_invalid: bool = False
    msa_start: int | None = None
    """ProteinGym's MSA_start: the alignment's query is the wild type's residues from here (1-based)."""
    score_col: str | None = None
    label_col: str | None = None
    label_fit: str = "auto"
    bootstrap: int = 2000
    """Bootstrap resamples of the metrics' intervals (0: none)."""
    plot: Path | None = None
    """The DMS heatmap of the first masked checkpoint (its matrix beside it, ``.matrix.csv``)."""
    summary: Path | None = None
    """The JSON summary (None: ``out`` with ``.json``, written when there is a measurement or a label)."""
    overwrite: bool = False
    progress: bool | None = None
    """Progress bars: None on a terminal only, False never (``--quiet``)."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ScoreVariantsOptions":
        """The options of the parsed command line (unchecked: :meth:`check`)."""
        from protein_performer.progress import from_args

        family = HomologOptions(
            path=args.homologs, query=args.query, format=args.family_format, identity=args.identity,
            pseudocount=args.pseudocount, contexts=args.contexts, context_tokens=args.context_tokens, seed=args.seed,
            profile_weight=args.profile_weight, split_identity=args.split_identity,
            valid_fraction=args.valid_fraction, test_fraction=args.test_fraction)
        model = ModelOptions(strategy=args.strategy, window_tokens=args.window_tokens, batch_size=args.batch_size,
                             device=args.device)
        return cls(fasta=args.fasta, variants=args.variants, out=args.out, checkpoints=tuple(args.checkpoint),
                   family=family, model=model, unknown=args.unknown, mutation_col=args.mutation_col,
                   offset_idx=args.offset_idx, skip_invalid=args.skip_invalid, msa_start=args.msa_start,
                   score_col=args.score_col, label_col=args.label_col, label_fit=args.label_fit,
                   bootstrap=args.bootstrap, plot=args.plot, summary=args.summary, overwrite=args.overwrite,
                   progress=from_args(args))

    def check(self) -> None:
        """Refuse, before any work, numbers out of range and a run with nothing to score."""
        from protein_performer.corpus.split_rule import check_split_fractions

        family = self.family
        for flag, value, low in (("--batch-size", self.model.batch_size, 1),
                                 ("--window-tokens", self.model.window_tokens, 8),
                                 ("--bootstrap", self.bootstrap, 0), ("--seed", family.seed, 0)):
            if value < low:
                raise ValueError(f"{flag} must be >= {low}, got {value}")
        for flag, value in (("--identity", family.identity), ("--split-identity", family.split_identity)):
            if not 0 < value <= 1:
                raise ValueError(f"{flag} must be in (0, 1], got {value}")
        check_split_fractions(family.valid_fraction, family.test_fraction, ("--valid-fraction", "--test-fraction"))
        if self.msa_start is not None and self.msa_start < 1:
            raise ValueError(f"--msa-start is 1-based, got {self.msa_start}")
        if not math.isfinite(family.pseudocount) or family.pseudocount <= 0:
            raise ValueError(f"--pseudocount must be a positive number, got {family.pseudocount}")
        if self.plot is not None and self.plot.suffix.lower() not in PLOT_SUFFIXES:
            raise ValueError(f"--plot {self.plot}: give a file name ending in {', '.join(PLOT_SUFFIXES)} "
                             "(the figure's format is taken from it)")
        if not self.checkpoints and not family.path:
            raise ValueError("nothing to score: give --checkpoint, --homologs, or both")
        if family.contexts < 1:
            raise ValueError(f"--contexts must be >= 1, got {family.contexts}")
        if family.context_tokens < 0:
            raise ValueError(f"--context-tokens must be >= 0 (0: no homologs in the window), got "
                             f"{family.context_tokens}")
        parse_profile_weight(family.profile_weight)

    def output_paths(self, summary: bool) -> dict[str, Path]:
        """Every file this run writes, by the flag that names it, checked before any work: none is
        an input, none repeats another, and none exists unless ``overwrite``."""
        from protein_performer.outputs import check_output

        outputs = {"--out": self.out}
        if summary:
            outputs["--summary"] = self.summary or self.out.with_suffix(".json")
        if self.plot:
            outputs["--plot"] = self.plot
            outputs["--plot's matrix"] = self.plot.with_suffix(".matrix.csv")
        inputs = [self.variants, self.fasta, *self.checkpoints, *([self.family.path] if self.family.path else [])]
        seen: dict[Path, str] = {}
        for flag, path in outputs.items():
            check_output(path, "file", inputs=inputs, flag=flag, existing_ok=self.overwrite)
            key = path.resolve()
            if key in seen or any(key == Path(p).resolve() for p in inputs):
                raise ValueError(f"{flag} {path} is also {seen.get(key, 'an input')}; choose another name")
            seen[key] = flag
        return outputs
