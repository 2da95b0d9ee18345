"""Reproduce the protein experiments of the Performer paper (Choromanski et al. 2021) on E. coli.

Trains on the train split of the E. coli K-12 proteome and evaluates on its held-out test split,
then saves every measurement in ``docs/figures/results_all.json`` and writes ``docs/RESULTS.md`` with every
table and figure (``docs/figures/results_*``) from it (:mod:`protein_performer.report`):

1. Table 2: unigram baseline, exact Transformer, Performer-ReLU, Performer-Softmax and the hybrid
   Performer (the learning study's winner: all heads but one exact within a short window, one FAVOR+
   head), masked (BID) and causal (UNI), same shape and wall-clock budget each, over ``--seeds`` seeds;
2. concatenated windows of 8192 tokens: the Performer against the largest exact model whose
   measured peak training memory is at most the Performer's, accuracy over training time;
3. transfer: Performer-Softmax and the hybrid initialised from the exact model's checkpoint, zero-shot
   and fine-tuned for equal wall clock;
4. amino-acid similarity (attention, embeddings) vs BLOSUM62, trained model and untrained control;
5. the attention benchmark (``scripts/bench_attention.py`` at L = 1024, 4096, 8192, one repeat) and the
   approximation error.

    python scripts/reproduce.py --budget-minutes 45 [--out docs] [--seeds K] [--skip-benchmarks]

``--budget-minutes`` is training time only (split 50/30/20 between parts 1/2/3, and part 3's share
equally between its transfer targets); evaluation,
similarity and benchmarks come on top. ``--tiny`` runs a minutes-free smoke version (tests);
``--report-only`` redraws RESULTS.md and its figures from a saved ``results_all.json``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from bench_common import cpu_name, peak_rss_bytes, reset_peak_rss, rss_bytes  # noqa: E402  (scripts/)

from protein_performer.allocator import keep_freed_memory  # noqa: E402
from protein_performer.report import write_report  # noqa: E402
from protein_performer.report.rules import ATTENTIONS, OBJECTIVES, TRANSFER_TARGETS, learned  # noqa: E402

log = logging.getLogger("reproduce")
ECOLI = REPO.parent / "shared" / "data" / "UP000000625_83333.fasta.gz"
SHARES = (0.5, 0.3, 0.2)
"""Shares of --budget-minutes for Table 2, long windows and the transfer fine-tune."""
LONG_MODELS = 3
"""Models trained at each long-window length: Performer-Softmax, the exact model that fits, the hybrid."""


@dataclass
class Plan:
    """Everything the experiments depend on; written into RESULTS.md."""

    shape: dict
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
    redraw_interval: int = 1000
    """Optimizer steps between redraws of the FAVOR+ projections: 1000, as configs/base.yaml and the
    demo. Every 100 steps was worse on the validation split (demo model: perplexity 17.03 against
    16.99; attention contexts vs BLOSUM62 0.15 against 0.34), and on plain FAVOR+ in learning.md."""
    probe_steps: int = 50
    """Steps after which a budgeted run fixes its length from the measured rate (fewer for long windows)."""
    gradient_clip: float = 1.0
    hybrid_window: int = 16
    """The hybrid's local heads attend within this many residues (as configs/demo.yaml)."""


def make_plan(args: argparse.Namespace) -> Plan:
    budget = args.budget_minutes
    if args.tiny:
        shape = dict(dim=16, depth=1, heads=2, ff_mult=2, nb_features=8, dropout=0.0)
        return Plan(shape, window=64, batch_size=4, lr=2e-3, warmup_steps=2, seeds=list(range(args.seeds or 1)),
                    table_minutes=budget * SHARES[0] / 6, long_lengths=[256],
                    long_minutes=budget * SHARES[1] / LONG_MODELS,
                    transfer_minutes=budget * SHARES[2] / len(TRANSFER_TARGETS), max_steps=3, val_batches=1,
                    similarity_proteins=4, tiny=True)
    shape = dict(dim=128, depth=2, heads=4, ff_mult=4, nb_features=64, dropout=0.0)
    min_run = 3.0  # minutes: below this a run on 2 shared cores does not leave the unigram baseline
    seeds = args.seeds or max(1, min(3, int(budget * SHARES[0] / (len(ATTENTIONS) * len(OBJECTIVES) * min_run))))
    lengths = [8192] + ([16384] if budget >= 120 else [])
    return Plan(shape, window=512, batch_size=8, lr=1e-3, warmup_steps=30, seeds=list(range(seeds)),
                table_minutes=budget * SHARES[0] / (len(ATTENTIONS) * len(OBJECTIVES) * seeds),
                long_lengths=lengths, long_minutes=budget * SHARES[1] / (LONG_MODELS * len(lengths)),
                transfer_minutes=budget * SHARES[2] / len(TRANSFER_TARGETS), max_steps=None, val_batches=4,
                similarity_proteins=100)


# --------------------------------------------------------------------------- training


def variant(config: dict, name: str, plan: Plan) -> dict:
    """``config``'s shape with Table 2's model ``name``: an attention of :data:`ATTENTIONS`, or the
    hybrid: every head but one runs exact softmax attention within ``plan.hybrid_window`` residues,
    the last runs FAVOR+ (softmax) over the whole window."""
    if name == "hybrid":
        return dict(config, attention="softmax", local_heads=config["heads"] - 1, local_window=plan.hybrid_window)
    return dict(config, attention=name, local_heads=0)


def _wall_clock_callback():
    import pytorch_lightning as pl

    class WallClock(pl.Callback):
        """Logs ``train_s``: seconds since training started, validation time excluded."""

        def on_train_start(self, trainer, pl_module):
            self.start, self.in_val = time.perf_counter(), 0.0

        def on_validation_start(self, trainer, pl_module):
            self.val_start = time.perf_counter()

        def on_validation_epoch_end(self, trainer, pl_module):
            if trainer.sanity_checking or not hasattr(self, "start"):
                return
            now = time.perf_counter()
            pl_module.log("train_s", now - self.start - self.in_val - (now - self.val_start))

        def on_validation_end(self, trainer, pl_module):
            if hasattr(self, "start"):
                self.in_val += time.perf_counter() - self.val_start

    return WallClock()


def _deadline_callback(seconds: float, probe_steps: int):
    """Fits the run to a wall-clock budget so that its cosine schedule ends with it: after
    ``probe_steps`` optimizer steps it measures the rate (validation included) and sets both the
    trainer's ``max_steps`` and the model's ``schedule_steps`` to the steps that fit. At ``4 *
    probe_steps`` it fixes them once more from the rate since the first fix: the first steps pay for
    start-up and for the first touch of memory that later steps reuse (``allocator.py``), so the
    first rate under-reads the steady one (with one fix, Table 2's hybrid made 1,116 steps against
    1,353 in the run before the allocator, and Performer-Softmax at L=8192 stopped after 310 of its
    360 s). By then the cosine has moved little, so the second fix barely changes the learning rate."""
    import pytorch_lightning as pl

    class Deadline(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            self.start = time.perf_counter()
            self.fixes: list[tuple[int, float]] = []  # (step, elapsed s) at each fix

        def _fix(self, trainer, pl_module, total: int, rate: float) -> None:
            trainer.fit_loop.epoch_loop.max_steps = total
            pl_module.schedule_steps = total
            log.info("deadline: %.1f steps/s -> %d steps in %.0f s", rate, total, seconds)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            step = trainer.global_step
            if step == probe_steps and not self.fixes:
                elapsed = time.perf_counter() - self.start
                self.fixes.append((step, elapsed))
                rate = probe_steps / max(elapsed, 1e-9)
                self._fix(trainer, pl_module, max(probe_steps + 1, int(0.97 * seconds * rate)), rate)
                self.load = os.getloadavg()[0]
                if self.load > (os.cpu_count() or 1) + 0.5:
                    log.warning("load average %.1f on %d CPUs while measuring the step rate: another process competes "
                                "for the CPUs, so this run gets fewer steps than its peers (rerun on a quiet machine)",
                                self.load, os.cpu_count() or 1)
            elif len(self.fixes) == 1 and step == 4 * probe_steps and step < trainer.fit_loop.epoch_loop.max_steps:
                elapsed = time.perf_counter() - self.start
                first_step, first_elapsed = self.fixes[0]
                rate = (step - first_step) / max(elapsed - first_elapsed, 1e-9)  # steps/s since the first fix
                self.fixes.append((step, elapsed))
                self._fix(trainer, pl_module, max(step + 1, step + int(0.97 * (seconds - elapsed) * rate)), rate)

    return Deadline()


@dataclass
class Run:
    """One finished training run."""

    name: str
    checkpoint: str
    metrics_csv: str
    steps: int
    seconds: float
    config: dict
    load: float | None = None
    """1-minute load average when the step rate was measured (None: a --tiny run, no probe)."""


def train(name: str, out: Path, data_dir: Path, plan: Plan, config: dict, objective: str, *, minutes: float,
          seed: int, window: int, batch_size: int, val_every: int, lr: float | None = None,
          warmup_steps: int | None = None, init_from: str | None = None, probe_steps: int | None = None,
          cap_factor: float = 1.1) -> Run:
    """Train one model for ``minutes`` of wall clock (or ``plan.max_steps``) and save its checkpoint.

    The learning rate warms up, then follows a cosine to 10% that ends with the budget: the run
    length is fixed after ``probe_steps`` (default ``plan.probe_steps``) steps from the measured rate (see
    ``_deadline_callback``);
    ``cap_factor`` times the budget is a hard wall-clock cap in case the machine slows down later.
    """
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger

    from protein_performer.datamodule import ProteinDataModule
    from protein_performer.lit import ProteinLM

    run_dir = out / name
    pl.seed_everything(seed, workers=True, verbose=False)
    dm = ProteinDataModule(str(data_dir), objective=objective, mode="concat", max_length=window,
                           batch_size=batch_size, num_workers=0, seed=seed, mask_prob=plan.mask_prob)
    lit = ProteinLM(config=dict(config, causal=objective == "clm"), objective=objective, lr=lr or plan.lr,
                    warmup_steps=plan.warmup_steps if warmup_steps is None else warmup_steps,
                    schedule="cosine", redraw_interval=plan.redraw_interval, init_from=init_from)
    callbacks = [_wall_clock_callback()]
    deadline = None
    if plan.max_steps is None:
        deadline = _deadline_callback(minutes * 60, plan.probe_steps if probe_steps is None else probe_steps)
        callbacks.append(deadline)
    trainer = pl.Trainer(  # max_time is only a safety cap: the deadline callback ends the run by steps
        accelerator="cpu", devices=1, max_time=datetime.timedelta(seconds=max(1, round(minutes * 60 * cap_factor))),
        max_steps=plan.max_steps or 10**6, logger=CSVLogger(str(out), name=name, version="csv"),
        callbacks=callbacks, val_check_interval=max(1, val_every), check_val_every_n_epoch=None,
        limit_val_batches=plan.val_batches, num_sanity_val_steps=0, gradient_clip_val=plan.gradient_clip,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=10,
    )
    started = time.perf_counter()
    trainer.fit(lit, dm)
    seconds = time.perf_counter() - started
    ckpt = run_dir / "final.ckpt"
    trainer.save_checkpoint(str(ckpt))
    log.info("%s: %d steps in %.0f s", name, trainer.global_step, seconds)
    return Run(name, str(ckpt), str(run_dir / "csv" / "metrics.csv"), int(trainer.global_step), seconds,
               lit.config.to_dict(), getattr(deadline, "load", None))


def validate(data_dir: Path, plan: Plan, model_config: dict, objective: str, window: int, batch_size: int,
             init_from: str) -> float:
    """Validation accuracy (``plan.val_batches`` batches) of a model of ``model_config`` with ``init_from``'s
    weights: the step-0 point of a fine-tune curve."""
    import pytorch_lightning as pl

    from protein_performer.datamodule import ProteinDataModule
    from protein_performer.lit import ProteinLM

    dm = ProteinDataModule(str(data_dir), objective=objective, mode="concat", max_length=window,
                           batch_size=batch_size, num_workers=0, seed=0)
    lit = ProteinLM(config=model_config, objective=objective, init_from=init_from)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, limit_val_batches=plan.val_batches,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    return float(trainer.validate(lit, dm, verbose=False)[0]["val/acc"])


def score(model, objective: str, proteins: list[np.ndarray], unigram, window: int, batch_size: int,
          passes: int = 1, context=None) -> dict:
    from protein_performer.score import score_windows

    result = score_windows(model, objective, proteins, max_length=window, batch_size=batch_size, seed=0,
                           unigram=unigram, passes=passes, context=context)
    return asdict(result)


def score_checkpoint(path: str, proteins: list[np.ndarray], window: int, batch_size: int, passes: int = 1,
                     context=None) -> dict:
    from protein_performer.baselines import unigram_probabilities
    from protein_performer.checkpoint import load_checkpoint

    loaded = load_checkpoint(path)
    return score(loaded.model, loaded.objective, proteins, unigram_probabilities(loaded.train_token_counts),
                 window, batch_size, passes, context)


def context_baselines(data_dir: Path, window: int) -> dict:
    """The neighbour-context n-gram baseline of each objective, fitted on the train split."""
    from protein_performer.baselines import ContextBaseline

    return {o: ContextBaseline.from_split(o, data_dir, max_length=window) for o in OBJECTIVES}


def val_curve(metrics_csv: str) -> pd.DataFrame:
    """``step``, ``train_s``, ``val_acc``, ``val_loss`` rows of a CSVLogger file."""
    frame = pd.read_csv(metrics_csv)
    if "val/acc" not in frame:
        return pd.DataFrame(columns=["step", "train_s", "val_acc", "val_loss"])
    rows = frame.dropna(subset=["val/acc"])
    return pd.DataFrame({"step": rows["step"].to_numpy(), "train_s": rows.get("train_s", np.nan),
                         "val_acc": rows["val/acc"].to_numpy(), "val_loss": rows["val/loss"].to_numpy()})


# --------------------------------------------------------------------------- part 2: memory probes


def probe(config: dict, length: int) -> dict:
    """Peak resident memory above the model (``peak_bytes``) and seconds of one MLM training step
    (``step_s``) at ``length``, measured in a fresh process (``--probe``) so that the peak is this
    configuration's own; ``{"error": ...}`` when the process failed (out of memory, killed)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", json.dumps({"config": config, "length": length})]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        log.warning("memory probe of %s at L=%d failed (exit %d)", config, length, done.returncode)
        return {"error": f"exit {done.returncode}: {done.stderr[-500:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_probe(spec: str) -> None:
    """Worker of :func:`probe`: two AdamW steps on one random window; prints JSON."""
    from protein_performer.model import PerformerConfig, PerformerLM

    torch.set_num_threads(2)
    spec = json.loads(spec)
    model = PerformerLM(PerformerConfig(**spec["config"]))
    opt = torch.optim.AdamW(model.parameters())
    length = spec["length"]
    ids = torch.randint(4, 24, (1, length))  # (B, L) residue ids
    mask = torch.ones(1, length, dtype=torch.bool)
    reset_peak_rss()
    base = rss_bytes()
    seconds = []
    for _ in range(2):
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(ids, mask).logits[0], ids[0])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - t)
    print(json.dumps({"peak_bytes": peak_rss_bytes() - base, "step_s": min(seconds)}))


def exact_candidates(shape: dict) -> list[dict]:
    """Exact shapes from the Performer's down, largest first: fewer blocks, then fewer heads."""
    out = []
    for depth in range(shape["depth"], 0, -1):
        heads = shape["heads"]
        while heads >= 1:
            if (shape["dim"] // heads) % 2 == 0:
                out.append(dict(shape, depth=depth, heads=heads, attention="exact"))
            heads //= 2
    return out


# --------------------------------------------------------------------------- the experiments


@dataclass
class Results:
    plan: dict
    table: list[dict] = field(default_factory=list)
    curves: dict = field(default_factory=dict)
    long: list[dict] = field(default_factory=list)
    transfer: dict = field(default_factory=dict)
    similarity: list[dict] = field(default_factory=list)
    benchmark: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)


def table2(res: Results, plan: Plan, data_dir: Path, work: Path, test: list[np.ndarray]) -> dict[tuple, Run]:
    runs = {}
    contexts = context_baselines(data_dir, plan.window)
    for seed in plan.seeds:
        for objective in OBJECTIVES:
            for attention in ATTENTIONS:
                name = f"table2_{attention}_{objective}_s{seed}"
                run = train(name, work, data_dir, plan, variant(plan.shape, attention, plan), objective,
                            minutes=plan.table_minutes, seed=seed, window=plan.window,
                            batch_size=plan.batch_size, val_every=25 if not plan.tiny else 2)
                scored = score_checkpoint(run.checkpoint, test, plan.window, plan.batch_size,
                                          plan.score_passes if objective == "mlm" else 1, contexts[objective])
                res.table.append({"attention": attention, "objective": objective, "seed": seed, "steps": run.steps,
                                  "train_s": run.seconds, "load_at_probe": run.load, **scored})
                res.curves[name] = val_curve(run.metrics_csv).to_dict("list")
                runs[(attention, objective, seed)] = run
    return runs


def long_windows(res: Results, plan: Plan, data_dir: Path, work: Path, test: list[np.ndarray]) -> dict[str, Run]:
    """Part 2: per length, the Performer, the largest exact model that fits in its memory, and the
    hybrid, each trained for ``plan.long_minutes``; returns the runs by name."""
    runs = {}
    for length in plan.long_lengths:
        performer = dict(plan.shape, attention="softmax")
        measured = probe(performer, length)
        cap = measured["peak_bytes"]
        if "error" in measured:
            raise RuntimeError(f"memory probe of the Performer at L={length} failed: {measured['error']}")
        cap = measured["peak_bytes"]
        chosen, tried = None, []
        for candidate in exact_candidates(plan.shape):
            m = probe(candidate, length)
            tried.append({"depth": candidate["depth"], "heads": candidate["heads"], **m})
            if m.get("peak_bytes", float("inf")) <= cap:
                chosen = ("exact (largest that fits)", candidate, m)
                break
        models = [("Performer-Softmax", performer, measured)]
        if chosen is not None:
            models.append(chosen)
        elif "error" not in m:
            log.warning("no exact model fits in %.0f MiB at L=%d; training the smallest anyway", cap / 2**20, length)
            models.append(("exact (smallest; does not fit)", exact_candidates(plan.shape)[-1], m))
        else:
            log.warning("no exact model fits in %.0f MiB at L=%d and the smallest failed its probe; training the "
                        "Performer only", cap / 2**20, length)
        hybrid = variant(plan.shape, "hybrid", plan)  # Table 2's best Performer, beside the paper's two models
        hybrid_probe = probe(hybrid, length)
        if "error" in hybrid_probe:
            log.warning("memory probe of the hybrid at L=%d failed (%s); not training it", length,
                        hybrid_probe["error"].strip()[-200:])
        else:
            models.append(("hybrid", hybrid, hybrid_probe))
        for label, config, m in models:
            expected_steps = plan.max_steps or max(1, plan.long_minutes * 60 / max(m["step_s"], 1e-3))
            attention = "hybrid" if label == "hybrid" else config["attention"]
            name = f"long{length}_{attention}_d{config['depth']}h{config['heads']}"
            run = train(name, work, data_dir, plan, config, "mlm", minutes=plan.long_minutes, seed=0, window=length,
                        batch_size=1, val_every=max(1, int(expected_steps // 6)),
                        probe_steps=int(min(50, max(3, expected_steps // 5))))
            runs[name] = run
            scored = score_checkpoint(run.checkpoint, test, length, 1)
            res.long.append({"run": name, "length": length, "model": label, "depth": config["depth"],
                             "heads": config["heads"],
                             "attention": attention, "peak_mib": m["peak_bytes"] / 2**20,
                             "cap_mib": cap / 2**20, "step_s": m["step_s"], "steps": run.steps,
                             "train_s": run.seconds, "accuracy": scored["accuracy"],
                             "perplexity": scored["perplexity"], "learned": learned(scored), "exact_probes": tried,
                             "curve": val_curve(run.metrics_csv).to_dict("list")})
    return runs


def transfer(res: Results, plan: Plan, data_dir: Path, work: Path, test: list[np.ndarray], runs: dict) -> None:
    """The exact BID model's weights in each Performer of ``TRANSFER_TARGETS`` (and, zero-shot only,
    Performer-ReLU), scored on the test split with Table 2's masks, then each target fine-tuned for
    ``plan.transfer_minutes``."""
    from protein_performer.baselines import unigram_probabilities
    from protein_performer.lit import ProteinLM

    source = runs[("exact", "mlm", 0)]
    exact_test = next(r for r in res.table if r["attention"] == "exact" and r["objective"] == "mlm" and r["seed"] == 0)
    zero_shot = {}
    for attention in ("relu", *TRANSFER_TARGETS):
        lit = ProteinLM(config=variant(source.config, attention, plan), objective="mlm", init_from=source.checkpoint)
        unigram = unigram_probabilities(np.zeros(lit.config.vocab_size))  # baseline is in Table 2
        zero_shot[attention] = score(lit.model, "mlm", test, unigram, plan.window, plan.batch_size, plan.score_passes)
    exact_val = validate(data_dir, plan, source.config, "mlm", plan.window, plan.batch_size, source.checkpoint)
    lr, targets = plan.lr / 4, {}
    for target in TRANSFER_TARGETS:
        config = variant(source.config, target, plan)
        start_acc = validate(data_dir, plan, config, "mlm", plan.window, plan.batch_size, source.checkpoint)
        scratch = runs[(target, "mlm", 0)]
        steps_per_minute = scratch.steps / max(scratch.seconds / 60, 1e-6)
        expected = plan.max_steps or max(1, plan.transfer_minutes * steps_per_minute)
        run = train(f"transfer_exact_to_{target}", work, data_dir, plan, config, "mlm", minutes=plan.transfer_minutes,
                    seed=0, window=plan.window, batch_size=plan.batch_size, val_every=max(1, int(expected // 10)),
                    lr=lr, warmup_steps=0, init_from=source.checkpoint)
        targets[target] = {"fine_tuned": score_checkpoint(run.checkpoint, test, plan.window, plan.batch_size,
                                                          plan.score_passes),
                           "zero_shot_val_accuracy": start_acc, "steps": run.steps, "train_s": run.seconds, "lr": lr,
                           "curve": val_curve(run.metrics_csv).to_dict("list"),
                           "scratch_curve": val_curve(scratch.metrics_csv).to_dict("list")}
    res.transfer = {"source": source.name, "exact_test_accuracy": exact_test["accuracy"],
                    "exact_test_perplexity": exact_test["perplexity"], "exact_val_accuracy": exact_val,
                    "zero_shot": zero_shot, "targets": targets}


@dataclass(frozen=True)
class _Analysed:
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
    from protein_performer.report.rules import control_of

    mlm = [r for r in res.table if r["objective"] == "mlm"]
    best = min(mlm, key=lambda r: r["perplexity"])
    models = [_Analysed("trained", "", best["attention"], best["seed"], plan.window, best["steps"],
                        runs[(best["attention"], "mlm", best["seed"])].checkpoint)]
    long = [r for r in res.long if r.get("run") in long_runs]
    if long:
        top = min(long, key=lambda r: r["perplexity"])
        models.append(_Analysed(f"trained, L={top['length']}", "_long", top["attention"], 0, top["length"],
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
    from protein_performer.analysis.similarity import analyse
    from protein_performer.model import PerformerConfig, PerformerLM

    torch.manual_seed(0)
    return analyse(PerformerLM(PerformerConfig(**config)).eval(), sequences)


def _record_similarity(res: Results, figures: Path, label: str, stem_label: str, result, model: _Analysed) -> None:
    """Writes ``result``'s four matrices (CSV and heatmap) and appends their rows to ``res.similarity``."""
    import matplotlib.pyplot as plt

    from protein_performer.analysis.plots import save_figure, similarity_heatmaps
    from protein_performer.analysis.similarity import AMINO_ACIDS, blosum62, cluster_order

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


BENCH_LENGTHS = "1024,4096,8192"
"""Attention benchmark lengths of the reproduction: up to the paper's 8192, where the speed targets are."""


def benchmarks(res: Results, plan: Plan, figures: Path, skip: bool) -> None:
    res.benchmark = {"existing_md": str((REPO / "docs/benchmarks/attention.md").relative_to(REPO))
                     if (REPO / "docs/benchmarks/attention.md").is_file() else None}
    if skip:
        return
    block = Path(tempfile.mkdtemp()) / "attention.md"
    bench = [sys.executable, "scripts/bench_attention.py", "--lengths", BENCH_LENGTHS, "--repeats", "1",
             "--out-md", str(block),
             "--out-png", str(figures / "results_attention_time.png"),
             "--out-json", str(figures / "results_attention.json")]
    approx = ["--out-csv", str(figures / "results_approximation_error.csv"),
              "--out-png", str(figures / "results_approximation_error.png"), "--threads", str(torch.get_num_threads())]
    approx += ["--length", "64", "--features", "8,16", "--draws", "2"] if plan.tiny else ["--draws", "8"]
    commands = [] if plan.tiny else [" ".join(["python", *bench[1:]])]
    if not plan.tiny:  # the benchmark measures peak memory per process: it spawns its own workers
        log.info("$ %s", commands[0])
        subprocess.run(bench, cwd=REPO, check=True)
    commands.append(" ".join(["python scripts/plot_approximation.py", *approx]))
    log.info("$ %s", commands[-1])
    spec = importlib.util.spec_from_file_location("plot_approximation", REPO / "scripts" / "plot_approximation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.main(approx)
    res.benchmark["commands"] = commands
    if block.is_file():
        res.benchmark["block"] = block.read_text()


def environment(args: argparse.Namespace, started: float) -> dict:
    import pytorch_lightning as pl

    cpus, threads = os.cpu_count(), torch.get_num_threads()
    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": pl.__version__,
            "machine": f"{cpu_name()}, {cpus} CPUs visible, torch threads {threads}", "cpus": cpus,
            "torch_threads": threads,
            "load_average_end": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "command": "python scripts/reproduce.py " + " ".join(sys.argv[1:] if args.argv is None else args.argv),
            "date": datetime.date.today().isoformat(), "wall_minutes": (time.perf_counter() - started) / 60}


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-minutes", type=float, default=60.0, help="training wall clock in all (default 60)")
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="RESULTS.md goes here, figures in OUT/figures")
    parser.add_argument("--seeds", type=int, default=None, help="seeds of Table 2 (default: as many as the budget allows)")
    parser.add_argument("--skip-benchmarks", action="store_true", help="do not rerun the attention benchmarks")
    parser.add_argument("--fasta", type=Path, default=ECOLI, help="proteome (default: the shared E. coli K-12)")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "reproduce", help="data and checkpoints")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes and 3 steps per run (smoke test)")
    parser.add_argument("--report-only", action="store_true",
                        help="redraw the figures and RESULTS.md from OUT/figures/results_all.json")
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)  # worker mode of probe()
    return parser


def main(argv: list[str] | None = None) -> int:
    args = create_parser().parse_args(argv)
    args.argv = argv
    keep_freed_memory()  # as every protein-performer command does
    if args.probe:
        run_probe(args.probe)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    started = time.perf_counter()
    if args.report_only:
        write_report(json.loads((args.out / "figures" / "results_all.json").read_text()), args.out, REPO)
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
    res = Results(plan=asdict(plan))
    log.info("plan: %s", plan)
    runs = table2(res, plan, data_dir, args.work_dir, test)
    long_runs = long_windows(res, plan, data_dir, args.work_dir, test)
    transfer(res, plan, data_dir, args.work_dir, test, runs)
    similarity(res, plan, runs, long_runs, test, figures)
    benchmarks(res, plan, figures, args.skip_benchmarks)
    res.environment = environment(args, started)
    res.environment.update(test_proteins=len(test), fasta=args.fasta.name, budget_minutes=args.budget_minutes,
                           train_proteins=manifest["splits"]["train"]["proteins"],
                           train_residues=manifest["splits"]["train"]["residues"])
    saved = json.loads(json.dumps(asdict(res), default=float))  # exactly what results_all.json holds
    (figures / "results_all.json").write_text(json.dumps(saved, indent=1) + "\n")
    path = write_report(saved, args.out, REPO)
    log.info("wrote %s in %.1f minutes", path, res.environment["wall_minutes"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
