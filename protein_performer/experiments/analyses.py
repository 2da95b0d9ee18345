"""Parts 4 and 5 of the reproduction: the amino-acid similarity of trained models against BLOSUM62,
and the attention benchmark with the approximation error (:mod:`.bench.attention` and
:mod:`.bench.approximation`, ``scripts/bench_attention.py`` and ``scripts/plot_approximation.py``,
called in this process)."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protein_performer.experiments import places
from protein_performer.experiments.report.rules import control_of
from protein_performer.experiments.results import Plan, Results
from protein_performer.experiments.runs import Run

log = logging.getLogger(__name__)
BENCH_LENGTHS = "1024,4096,8192"
"""Attention benchmark lengths of the reproduction: up to the paper's 8192, where the speed targets are."""


@dataclass(frozen=True)
class Analysed:
    """A trained model whose amino-acid similarity ``reproduce`` reports, and what the report says of it."""

    label: str
    """``trained`` or ``trained, L=N``; its control is labelled ``un`` + this (``rules.control_of``)."""
    stem_suffix: str
    """Added to ``trained`` / ``untrained`` in the figure and CSV names."""
    attention: str
    seed: int
    window: int
    steps: int
    checkpoint: str


def similarity(res: Results, plan: Plan, runs: dict, long_runs: dict[str, Run], test: list[np.ndarray],
               figures: Path) -> None:
    """Amino-acid similarity (``analyse``) of two trained models, each beside an untrained control of
    its shape (torch seed 0): Table 2's BID model with the lowest test perplexity (``trained``), and
    part 2's with the lowest (``trained, L=N``). Part 2's models see about twice Table 2's residues per
    step (one window of 8,192 against 8 of 512); every L=8192 hybrid so far has had attention
    contexts of 0.42-0.48 against BLOSUM62, every Table 2 hybrid below 0.25
    (docs/benchmarks/learning.md)."""
    from protein_performer.alphabet import ALPHABET
    from protein_performer.analysis.similarity import analyse
    from protein_performer.checkpoint import load_checkpoint

    mlm = [r for r in res.table if r["objective"] == "mlm"]
    best = min(mlm, key=lambda r: r["perplexity"])
    models = [Analysed("trained", "", best["attention"], best["seed"], plan.window, best["steps"],
                       runs[(best["attention"], "mlm", best["seed"])].checkpoint)]
    long = [r for r in res.long if r.get("run") in long_runs]
    if long:
        top = min(long, key=lambda r: r["perplexity"])
        models.append(Analysed(f"trained, L={top['length']}", "_long", top["attention"], 0, top["length"],
                               top["steps"], long_runs[top["run"]].checkpoint))
    sequences = [ALPHABET.decode(p) for p in test[: plan.similarity_proteins]]
    controls: dict[str, object] = {}  # config (JSON) -> analysis of its untrained model
    for m in models:
        loaded = load_checkpoint(m.checkpoint)
        key = json.dumps(loaded.config.to_dict(), sort_keys=True)
        if key not in controls:
            controls[key] = _analyse_untrained(loaded.config.to_dict(), sequences)
        for label, stem, result in ((m.label, f"trained{m.stem_suffix}", analyse(loaded.model, sequences)),
                                    (control_of(m.label), f"untrained{m.stem_suffix}", controls[key])):
            _record_similarity(res, figures, label, stem, result, m)


def _analyse_untrained(config: dict, sequences: list[str]):
    import torch

    from protein_performer.analysis.similarity import analyse
    from protein_performer.model import PerformerConfig, PerformerLM

    torch.manual_seed(0)
    return analyse(PerformerLM(PerformerConfig(**config)).eval(), sequences)


def _record_similarity(res: Results, figures: Path, label: str, stem_label: str, result, model: Analysed) -> None:
    """Writes ``result``'s four matrices (CSV and heatmap) and appends their rows to ``res.similarity``."""
    import matplotlib.pyplot as plt

    from protein_performer.analysis.plots import save_figure, similarity_heatmaps
    from protein_performer.analysis.similarity import (
        AMINO_ACIDS,
        blosum62,
        cluster_order,
    )

    for which, matrix, comparison in (("attention", result.attention, result.attention_vs_blosum),
                                      ("pairs", result.pairs, result.pairs_vs_blosum),
                                      ("context", result.context, result.context_vs_blosum),
                                      ("embedding", result.embedding, result.embedding_vs_blosum)):
        stem = f"results_similarity_{stem_label}_{which}"
        result.frame(which).to_csv(figures / f"{stem}.csv", float_format="%.5f")
        title = f"{label} {model.attention} MLM (seed {model.seed}, L={model.window}): {which}"
        fig = similarity_heatmaps(matrix, blosum62(), AMINO_ACIDS, cluster_order(matrix), title=title,
                                  subtitle=f"vs BLOSUM62 ({comparison.n_pairs} pairs): Pearson "
                                           f"{comparison.pearson:.3f}, Spearman {comparison.spearman:.3f}")
        save_figure(fig, figures / stem, formats=("png",))
        plt.close(fig)
        res.similarity.append({"model": label, "attention": model.attention, "seed": model.seed,
                               "window": model.window, "steps": model.steps, "source": which,
                               "pearson": comparison.pearson, "spearman": comparison.spearman,
                               "pearson_p": comparison.pearson_p,
                               "top_pairs": " ".join(p for p, _, _ in comparison.top_pairs[:5]),
                               "landmark_ranks": comparison.landmark_ranks, "figure": f"{stem}.png",
                               "proteins": result.profiles.proteins})


def benchmarks(res: Results, plan: Plan, figures: Path, skip: bool) -> None:
    """Part 5: the attention benchmark at :data:`BENCH_LENGTHS` (one repeat; not with ``plan.tiny``) and
    the approximation error, their commands and table recorded in ``res.benchmark``. The full table is
    docs/benchmarks/attention.md of the working directory (the checkout's root)."""
    import torch

    from protein_performer.experiments.bench import approximation, attention

    full_table = Path("docs/benchmarks/attention.md")
    res.benchmark = {"existing_md": str(full_table) if (places.workdir() / full_table).is_file() else None}
    if skip:
        return
    block = Path(tempfile.mkdtemp()) / "attention.md"
    bench = ["--lengths", BENCH_LENGTHS, "--repeats", "1", "--out-md", str(block),
             "--out-png", str(figures / "results_attention_time.png"),
             "--out-json", str(figures / "results_attention.json")]
    approx = ["--out-csv", str(figures / "results_approximation_error.csv"),
              "--out-png", str(figures / "results_approximation_error.png"), "--threads", str(torch.get_num_threads())]
    approx += ["--length", "64", "--features", "8,16", "--draws", "2"] if plan.tiny else ["--draws", "8"]
    # the benchmark measures peak memory per process: each cell in a fresh worker process of its own
    commands = [] if plan.tiny else [("scripts/bench_attention.py", attention.main, bench)]
    commands.append(("scripts/plot_approximation.py", approximation.main, approx))
    for script, main, argv in commands:
        log.info("$ python %s %s", script, " ".join(argv))
        main(argv)
    res.benchmark["commands"] = [" ".join(["python", script, *argv]) for script, _, argv in commands]
    if block.is_file():
        res.benchmark["block"] = block.read_text()
