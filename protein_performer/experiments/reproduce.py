"""Reproduce the protein experiments of the Performer paper (Choromanski et al. 2021) on E. coli.

Trains on the train split of the E. coli K-12 proteome and evaluates on its held-out test split,
then saves every measurement in ``docs/figures/results_all.json`` (:class:`~.results.Results`) and
writes ``docs/RESULTS.md`` with every table and figure (``docs/figures/results_*``) from it
(:mod:`protein_performer.experiments.report`):

1. Table 2: unigram baseline, exact Transformer, Performer-ReLU, Performer-Softmax and the hybrid
   Performer (the learning study's winner: all heads but one exact within a short window, one FAVOR+
   head), masked (BID) and causal (UNI), same shape and wall-clock budget each, over ``--seeds`` seeds;
2. concatenated windows of 8192 tokens: the Performer against the largest exact model whose
   measured peak training memory is at most the Performer's, accuracy over training time
   (:mod:`.long_windows`);
3. transfer: Performer-Softmax and the hybrid initialised from the exact model's checkpoint, zero-shot
   and fine-tuned for equal wall clock;
4. amino-acid similarity (attention, embeddings) vs BLOSUM62, trained model and untrained control;
5. the attention benchmark (:mod:`.bench.attention` at L = 1024, 4096, 8192, one repeat) and the
   approximation error (:mod:`.analyses`).

Every model is configs/demo.yaml's recipe (read after configs/base.yaml) with its attention changed,
trained through the CLI's own path (:func:`~.runs.train_run`).

    python scripts/reproduce.py --budget-minutes 45 [--out docs] [--seeds K] [--skip-benchmarks]

``--budget-minutes`` is training time only (split 50/30/20 between parts 1/2/3, and part 3's share
equally between its transfer targets); evaluation,
similarity and benchmarks come on top. ``--tiny`` runs a minutes-free smoke version (tests);
``--report-only`` redraws RESULTS.md and its figures from a saved ``results_all.json``. The default
paths (docs/, runs/reproduce, ../shared/data) are relative to the working directory
(:mod:`.places`): run it from the checkout's root.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from protein_performer.experiments.analyses import benchmarks, similarity
from protein_performer.experiments.long_windows import long_windows
from protein_performer.experiments import places
from protein_performer.experiments.registry import Variant, paper_model, recipe
from protein_performer.experiments.report import write_report
from protein_performer.experiments.report.rules import (
    ATTENTIONS,
    OBJECTIVES,
    TRANSFER_TARGETS,
)
from protein_performer.experiments.results import Environment, Plan, Results
from protein_performer.experiments.runs import (
    Run,
    score,
    score_checkpoint,
    train_run,
    val_curve,
    validate_run,
)

log = logging.getLogger(__name__)
SHARES = (0.5, 0.3, 0.2)
"""Shares of --budget-minutes for Table 2, long windows and the transfer fine-tune."""
LONG_MODELS = 3
"""Models trained at each long-window length: Performer-Softmax, the exact model that fits, the hybrid."""
WARMUP_STEPS = 30
"""Warm-up of every budgeted run (the demo's 50 is a larger share of a run of a few minutes)."""
MIN_RUN_MINUTES = 3.0
"""Below this a run on 2 shared cores does not leave the unigram baseline: fewer seeds instead."""


def make_plan(args: argparse.Namespace) -> Plan:
    """The plan of a ``--budget-minutes`` run: configs/demo.yaml's shape, windows, batch and optimiser,
    with budgets per run; ``--tiny``: a tiny shape and 3 steps per run."""
    budget = args.budget_minutes
    if args.tiny:
        shape = dict(dim=16, depth=1, heads=2, ff_mult=2, nb_features=8, dropout=0.0)
        return Plan(shape, window=64, batch_size=4, lr=2e-3, warmup_steps=2, seeds=list(range(args.seeds or 1)),
                    table_minutes=budget * SHARES[0] / 6, long_lengths=[256],
                    long_minutes=budget * SHARES[1] / LONG_MODELS,
                    transfer_minutes=budget * SHARES[2] / len(TRANSFER_TARGETS), max_steps=3, val_batches=1,
                    similarity_proteins=4, tiny=True)
    demo = recipe(Variant("demo"))
    model, data = demo["model"], demo["data"]
    shape = {k: model["config"][k] for k in ("dim", "depth", "heads", "ff_mult", "nb_features", "dropout")}
    runs_per_seed = len(ATTENTIONS) * len(OBJECTIVES)
    seeds = args.seeds or max(1, min(3, int(budget * SHARES[0] / (runs_per_seed * MIN_RUN_MINUTES))))
    lengths = [8192] + ([16384] if budget >= 120 else [])
    return Plan(shape, window=data["window_tokens"], batch_size=data["batch_size"], lr=model["lr"],
                warmup_steps=WARMUP_STEPS, seeds=list(range(seeds)),
                table_minutes=budget * SHARES[0] / (runs_per_seed * seeds),
                long_lengths=lengths, long_minutes=budget * SHARES[1] / (LONG_MODELS * len(lengths)),
                transfer_minutes=budget * SHARES[2] / len(TRANSFER_TARGETS), max_steps=None, val_batches=4,
                similarity_proteins=100, mask_prob=data["mask_prob"], redraw_interval=model["redraw_interval"],
                gradient_clip=demo["trainer"]["gradient_clip_val"], local_window=model["config"]["local_window"])


def plan_recipe(plan: Plan, data_dir: Path) -> Variant:
    """configs/demo.yaml with the plan's settings: every run of the reproduction starts from this."""
    overrides = {f"model.config.{k}": v for k, v in plan.shape.items()}
    overrides.update({"model.config.local_heads": 0, "model.lr": plan.lr, "model.warmup_steps": plan.warmup_steps,
                      "model.schedule": "cosine", "model.redraw_interval": plan.redraw_interval,
                      "trainer.gradient_clip_val": plan.gradient_clip, "data.data_dir": str(data_dir),
                      "data.mode": "concat", "data.window_tokens": plan.window, "data.batch_size": plan.batch_size,
                      "data.mask_prob": plan.mask_prob})
    return Variant("demo", overrides)


def model_overrides(config: dict, objective: str = "mlm") -> dict:
    """``model.config`` overrides (``model__config__KEY``) of ``config``, causal for ``clm``."""
    return {f"model__config__{k}": v for k, v in dict(config, causal=objective == "clm").items()}


def context_baselines(data_dir: Path, window: int) -> dict:
    """The neighbour-context n-gram baseline of each objective, fitted on the train split."""
    from protein_performer.baselines import ContextBaseline

    return {o: ContextBaseline.from_split(o, data_dir, window_tokens=window) for o in OBJECTIVES}


def table2(res: Results, plan: Plan, base: Variant, data_dir: Path, work: Path,
           test: list[np.ndarray]) -> dict[tuple, Run]:
    """Part 1: every model of :data:`ATTENTIONS`, both objectives, every seed, for ``plan.table_minutes``."""
    runs = {}
    contexts = context_baselines(data_dir, plan.window)
    for seed in plan.seeds:
        for objective in OBJECTIVES:
            for attention in ATTENTIONS:
                name = f"table2_{attention}_{objective}_s{seed}"
                config = paper_model(attention, plan.shape, plan.local_window)
                run = train_run(name, base.with_overrides(**model_overrides(config, objective)), work / name,
                                seed=seed, max_steps=plan.max_steps, seconds=plan.table_minutes * 60,
                                probe_steps=plan.probe_steps, val_every=25 if not plan.tiny else 2,
                                val_batches=plan.val_batches, csv=True)
                scored = score_checkpoint(run.checkpoint, test, plan.window, plan.batch_size,
                                          plan.score_passes if objective == "mlm" else 1, contexts[objective])
                res.table.append({"attention": attention, "objective": objective, "seed": seed, "steps": run.steps,
                                  "train_s": run.seconds, "load_at_probe": run.load, **scored})
                res.curves[name] = val_curve(run.metrics_csv).to_dict("list")
                runs[(attention, objective, seed)] = run
    return runs


def transfer(res: Results, plan: Plan, base: Variant, work: Path, test: list[np.ndarray], runs: dict) -> None:
    """The exact BID model's weights in each Performer of ``TRANSFER_TARGETS`` (and, zero-shot only,
    Performer-ReLU), scored on the test split with Table 2's masks, then each target fine-tuned for
    ``plan.transfer_minutes``."""
    from protein_performer.baselines import unigram_probabilities
    from protein_performer.lit import ProteinLM

    source = runs[("exact", "mlm", 0)]
    exact_test = next(r for r in res.table if r["attention"] == "exact" and r["objective"] == "mlm" and r["seed"] == 0)
    zero_shot = {}
    for attention in ("relu", *TRANSFER_TARGETS):
        lit = ProteinLM(config=paper_model(attention, source.config, plan.local_window), objective="mlm",
                        init_from=source.checkpoint)
        unigram = unigram_probabilities(np.zeros(lit.config.vocab_size))  # baseline is in Table 2
        zero_shot[attention] = score(lit.model, "mlm", test, unigram, plan.window, plan.batch_size, plan.score_passes)
    from_source = base.with_overrides(model__init_from=source.checkpoint)
    exact_val = validate_run(from_source.with_overrides(**model_overrides(source.config)), work / "validate_exact",
                             plan.val_batches)
    lr, targets = plan.lr / 4, {}
    for target in TRANSFER_TARGETS:
        variant = from_source.with_overrides(**model_overrides(paper_model(target, source.config, plan.local_window)))
        start_acc = validate_run(variant, work / f"validate_{target}", plan.val_batches)
        scratch = runs[(target, "mlm", 0)]
        steps_per_minute = scratch.steps / max(scratch.seconds / 60, 1e-6)
        expected = plan.max_steps or max(1, plan.transfer_minutes * steps_per_minute)
        name = f"transfer_exact_to_{target}"
        run = train_run(name, variant.with_overrides(model__lr=lr, model__warmup_steps=0), work / name, seed=0,
                        max_steps=plan.max_steps, seconds=plan.transfer_minutes * 60, probe_steps=plan.probe_steps,
                        val_every=max(1, int(expected // 10)), val_batches=plan.val_batches, csv=True)
        targets[target] = {"fine_tuned": score_checkpoint(run.checkpoint, test, plan.window, plan.batch_size,
                                                          plan.score_passes),
                           "zero_shot_val_accuracy": start_acc, "steps": run.steps, "train_s": run.seconds, "lr": lr,
                           "curve": val_curve(run.metrics_csv).to_dict("list"),
                           "scratch_curve": val_curve(scratch.metrics_csv).to_dict("list")}
    res.transfer = {"source": source.name, "exact_test_accuracy": exact_test["accuracy"],
                    "exact_test_perplexity": exact_test["perplexity"], "exact_val_accuracy": exact_val,
                    "zero_shot": zero_shot, "targets": targets}


def environment(argv: list[str], started: float) -> Environment:
    import pytorch_lightning as pl
    import torch

    from protein_performer.experiments.machine import cpu_name

    cpus, threads = os.cpu_count(), torch.get_num_threads()
    return Environment(python=platform.python_version(), torch=torch.__version__, lightning=pl.__version__,
                       machine=f"{cpu_name()}, {cpus} CPUs visible, torch threads {threads}", cpus=cpus,
                       torch_threads=threads, load_average_end=" ".join(f"{x:.1f}" for x in os.getloadavg()),
                       command="python scripts/reproduce.py " + " ".join(argv),
                       date=datetime.date.today().isoformat(), wall_minutes=(time.perf_counter() - started) / 60)


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reproduce.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-minutes", type=float, default=60.0, help="training wall clock in all (default 60)")
    parser.add_argument("--out", type=Path, default=places.workdir() / "docs",
                        help="RESULTS.md goes here, figures in OUT/figures")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds of Table 2 (default: as many as the budget allows)")
    parser.add_argument("--skip-benchmarks", action="store_true", help="do not rerun the attention benchmarks")
    parser.add_argument("--fasta", type=Path, default=places.ecoli(), help="proteome (default: the shared E. coli K-12)")
    parser.add_argument("--work-dir", type=Path, default=places.workdir() / "runs" / "reproduce", help="data and checkpoints")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes and 3 steps per run (smoke test)")
    parser.add_argument("--report-only", action="store_true",
                        help="redraw the figures and RESULTS.md from OUT/figures/results_all.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    from protein_performer.allocator import keep_freed_memory

    argv = list(sys.argv[1:] if argv is None else argv)
    args = create_parser().parse_args(argv)
    keep_freed_memory()  # as every protein-performer command does
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    started = time.perf_counter()
    if args.report_only:
        write_report(Results.load(args.out / "figures" / "results_all.json"), args.out, places.workdir())
        return 0
    from protein_performer.corpus.prepare import prepare
    from protein_performer.corpus.shards import open_split

    if not args.fasta.is_file():
        raise SystemExit(f"reproduce: --fasta {args.fasta}: no such file; pass the E. coli proteome "
                         "(protein-performer fetch --proteome UP000000625 --out FILE)")
    plan = make_plan(args)
    figures = args.out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    data_dir = args.work_dir / "data"
    manifest = prepare([args.fasta], data_dir)
    shard = open_split(data_dir, "test")
    test = [np.asarray(shard.protein(i)) for i in range(len(shard))]
    res = Results(plan=plan)
    log.info("plan: %s", plan)
    base = plan_recipe(plan, data_dir)
    runs = table2(res, plan, base, data_dir, args.work_dir, test)
    long_runs = long_windows(res, plan, base, args.work_dir, test)
    transfer(res, plan, base, args.work_dir, test, runs)
    similarity(res, plan, runs, long_runs, test, figures)
    benchmarks(res, plan, figures, args.skip_benchmarks)
    res.environment = environment(argv, started)
    res.environment.test_proteins, res.environment.fasta = len(test), args.fasta.name
    res.environment.budget_minutes = args.budget_minutes
    res.environment.train_proteins = manifest["splits"]["train"]["proteins"]
    res.environment.train_residues = manifest["splits"]["train"]["residues"]
    saved = Results.from_json(res.save(figures / "results_all.json"))  # exactly what results_all.json holds
    path = write_report(saved, args.out, places.workdir())
    log.info("wrote %s in %.1f minutes", path, res.environment.wall_minutes)
    return 0
