"""The schema of ``results_all.json``: what :mod:`~protein_performer.experiments.reproduce` measures
and :mod:`~protein_performer.experiments.report` reads, defined once.

:class:`Results` holds the experiment's settings (:class:`Plan`), the machine and data
(:class:`Environment`) and one list or record per section. The settings and the machine are
dataclasses; the rows are JSON records typed by ``TypedDict`` (:class:`TableRow`, :class:`LongRow`,
:class:`TransferRecord`, :class:`SimilarityRow`), so that the report indexes them as they are saved and
the CSVs drawn from them keep their columns. :meth:`Results.from_json` reads the files of earlier
runs too: the fields they lack are None (see each class).

This module imports nothing from torch or Lightning: the report is a pure function of these types.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict


@dataclass
class Plan:
    """Everything the experiments depend on; written into RESULTS.md."""

    shape: dict[str, Any]
    """The model shape of every Table 2 run (``model.config`` keys)."""
    window: int
    batch_size: int
    lr: float
    warmup_steps: int
    seeds: list[int]
    table_minutes: float
    """Per run of Table 2."""
    long_lengths: list[int]
    long_minutes: float
    """Per model and length of part 2."""
    transfer_minutes: float
    """Per transfer target."""
    max_steps: int | None
    val_batches: int
    similarity_proteins: int
    tiny: bool = False
    mask_prob: float = 0.3
    """Share of residues hidden in masked training (scoring always hides 15%)."""
    score_passes: int = 3
    """Independent masks per test window when scoring masked models."""
    redraw_interval: int | None = 1000
    """Optimizer steps between redraws of the FAVOR+ projections: 1000, as configs/base.yaml and the
    demo. Every 100 steps was worse on the validation split (demo model: perplexity 17.03 against
    16.99; attention contexts vs BLOSUM62 0.15 against 0.34), and on plain FAVOR+ in learning.md."""
    probe_steps: int | None = 50
    """Steps after which a budgeted run fixes its length from the measured rate (fewer for long windows)."""
    gradient_clip: float | None = 1.0
    local_window: int | None = 16
    """The hybrid's local heads attend within this many residues (as configs/demo.yaml)."""

    RECORDED_LATER = ("tiny", "mask_prob", "score_passes", "redraw_interval", "probe_steps", "gradient_clip",
                      "local_window")
    """Fields that results saved before them lack: read as None, so the report leaves them out."""

    FORMER_NAMES = {"hybrid_window": "local_window"}
    """Keys of results saved under a former name."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        data = {cls.FORMER_NAMES.get(k, k): v for k, v in data.items()}
        return cls(**{**{name: None for name in cls.RECORDED_LATER}, **data})


@dataclass
class Environment:
    """Versions, machine, command and data of a run (None: not recorded by the run that saved it)."""

    python: str
    torch: str
    lightning: str
    machine: str
    cpus: int | None = None
    torch_threads: int | None = None
    load_average_end: str = ""
    command: str = ""
    date: str = ""
    wall_minutes: float = 0.0
    test_proteins: int | None = None
    fasta: str = ""
    budget_minutes: float = 0.0
    train_proteins: int | None = None
    train_residues: int | None = None


class Curve(TypedDict):
    """Validation points of one run: optimizer step, training seconds (validation excluded), accuracy, loss."""

    step: list[int]
    train_s: list[float]
    val_acc: list[float]
    val_loss: list[float]


class Score(TypedDict, total=False):
    """:class:`protein_performer.score.ScoreResult` as saved (``dataclasses.asdict``)."""

    objective: str
    proteins: int
    windows: int
    tokens: int
    accuracy: float
    perplexity: float
    loss: float
    unigram_accuracy: float | None
    unigram_perplexity: float | None
    passes: int
    accuracy_gain: float | None
    accuracy_gain_ci95: list[float] | None
    perplexity_ratio: float | None
    perplexity_ratio_ci95: list[float] | None
    beats_unigram: bool | None
    context_accuracy: float | None
    context_perplexity: float | None
    context_accuracy_gain: float | None
    context_accuracy_gain_ci95: list[float] | None
    context_perplexity_ratio: float | None
    context_perplexity_ratio_ci95: list[float] | None
    beats_context: bool | None


class TableRow(Score, total=False):
    """One Table 2 run (attention × objective × seed) and its test :class:`Score`, flattened."""

    attention: str
    objective: str
    seed: int
    steps: int
    train_s: float
    load_at_probe: float | None
    """1-minute load average when the step rate was measured (None: a --tiny run; absent: saved before)."""


class Probe(TypedDict, total=False):
    """A memory probe of one exact shape: ``peak_bytes`` and ``step_s``, or the ``error`` it failed with."""

    depth: int
    heads: int
    peak_bytes: int
    step_s: float
    error: str


class LongRow(TypedDict, total=False):
    """One model of part 2 (long concatenated windows)."""

    run: str
    length: int
    model: str
    depth: int
    heads: int
    attention: str
    peak_mib: float
    cap_mib: float
    step_s: float
    steps: int
    train_s: float
    accuracy: float
    perplexity: float
    learned: bool
    exact_probes: list[Probe]
    curve: Curve


class TransferTarget(TypedDict, total=False):
    """One Performer fine-tuned from the exact model's weights."""

    fine_tuned: Score
    zero_shot_val_accuracy: float
    steps: int
    train_s: float
    lr: float
    curve: Curve
    scratch_curve: Curve


class TransferRecord(TransferTarget, total=False):
    """Part 3. Results saved before the hybrid target kept their one Performer-Softmax fine-tune at the
    top level (the :class:`TransferTarget` keys) instead of under ``targets``."""

    source: str
    exact_test_accuracy: float
    exact_test_perplexity: float
    exact_val_accuracy: float
    zero_shot: dict[str, Score]
    targets: dict[str, TransferTarget]


class SimilarityRow(TypedDict, total=False):
    """One matrix (``source``) of one analysed model against BLOSUM62."""

    model: str
    attention: str
    seed: int
    window: int
    steps: int
    source: str
    pearson: float
    spearman: float
    pearson_p: float
    top_pairs: str
    landmark_ranks: dict[str, int]
    figure: str
    proteins: int


class Benchmark(TypedDict, total=False):
    """Part 5: the link to the full attention benchmark, the commands run and the table they printed."""

    existing_md: str | None
    commands: list[str]
    block: str


@dataclass
class Results:
    """Everything one ``reproduce`` run measured: the content of ``results_all.json``."""

    plan: Plan
    environment: Environment | None = None
    table: list[TableRow] = field(default_factory=list)
    curves: dict[str, Curve] = field(default_factory=dict)
    """Table 2's validation curves by run name (``table2_<attention>_<objective>_s<seed>``)."""
    long: list[LongRow] = field(default_factory=list)
    transfer: TransferRecord = field(default_factory=dict)
    similarity: list[SimilarityRow] = field(default_factory=list)
    benchmark: Benchmark = field(default_factory=dict)

    KEYS = ("plan", "table", "curves", "long", "transfer", "similarity", "benchmark", "environment")
    """The keys of ``results_all.json``, in the order they are written."""

    def to_json(self) -> dict[str, Any]:
        """The JSON document (plain types only: numpy numbers become floats, tuples lists)."""
        parts = {name: getattr(self, name) for name in self.KEYS}
        for name in ("plan", "environment"):
            parts[name] = dataclasses.asdict(parts[name]) if parts[name] is not None else {}
        return json.loads(json.dumps(parts, default=float))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Results:
        """Read a document that :meth:`to_json` (or an earlier run) wrote; it is copied, never kept."""
        data = json.loads(json.dumps(data))
        unknown = set(data) - set(cls.KEYS)
        if unknown:
            raise ValueError(f"results: unknown sections {sorted(unknown)}; expected {list(cls.KEYS)}")
        environment = data.get("environment")
        return cls(plan=Plan.from_json(data["plan"]),
                   environment=Environment(**environment) if environment else None,
                   table=data.get("table", []), curves=data.get("curves", {}), long=data.get("long", []),
                   transfer=data.get("transfer") or {}, similarity=data.get("similarity", []),
                   benchmark=data.get("benchmark") or {})

    def save(self, path: Path) -> dict[str, Any]:
        """Write ``path`` (``results_all.json``); returns the document written."""
        document = self.to_json()
        path.write_text(json.dumps(document, indent=1) + "\n")
        return document

    @classmethod
    def load(cls, path: Path) -> Results:
        return cls.from_json(json.loads(Path(path).read_text()))
