"""What FAVOR+ learns per step and per CPU-second, against exact attention (issue: Performers that learn).

Every run trains the demo recipe as it was before this study (configs/demo.yaml without its local
heads: Performer-Softmax, a cosine over the run, 30% masking, same data and seed) with one change
(:data:`~protein_performer.experiments.registry.VARIANTS`), through the CLI's own path
(:func:`~protein_performer.experiments.runs.train_run`), records held-out (validation) perplexity against
*training* seconds (validation time excluded), then scores the test split with 5 masks against the unigram and the
neighbour-context n-gram, with paired 95% bootstrap intervals over windows (as ``score`` does).

    # equal steps (the default: 1,600, the demo's):
    python scripts/study_learning.py run --variants exact favor-softmax hybrid conv --tag l512
    # equal wall clock: each variant gets as many steps as fit in 300 s at its own speed, measured
    # alone and interleaved beforehand
    python scripts/study_learning.py speed --variants exact hybrid+conv --length 8192 --batch-size 1
    python scripts/study_learning.py run --variants exact hybrid+conv --length 8192 --batch-size 1 \\
        --budget-seconds 300 --speeds outputs/study/speed-L8192.json --tag l8192
    # how well FAVOR+ estimates the attention a trained exact model learned, per layer
    python scripts/study_learning.py approx --weights outputs/study/l512/exact.pt
    # the trained exact model's weights in each variant: zero-shot, then fine-tuned at equal steps
    python scripts/study_learning.py transfer --weights outputs/study/l512/exact.pt
    # tables and figure from every saved run: docs/benchmarks/learning.md, docs/figures/learning_*.png
    python scripts/study_learning.py report

Runs are saved as ``outputs/study/<tag>/<variant>.json`` (and the trained weights as ``.pt``),
so the report can be redrawn without training again. ``--out`` (default outputs/study) and
``--data-dir`` (default data/prepared/UP000000625_83333) are relative to the working directory. Run it alone on the machine: the seconds are
only comparable between runs made under the same conditions.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from protein_performer.experiments import places
from protein_performer.experiments.registry import VARIANTS, Variant
from protein_performer.experiments.runs import Run, fit, prepare_run, train_run
from protein_performer.experiments.study_report import (
    approximation_study,
    load_weights,
    locality_study,
    similarity_study,
    write_report,
)

log = logging.getLogger(__name__)


def study_variant(variant: str, args: argparse.Namespace) -> Variant:
    """The registry's ``variant`` on ``--data-dir`` with windows of ``--length`` and ``--batch-size``."""
    return VARIANTS[variant].with_overrides(data__data_dir=str(args.data_dir), data__window_tokens=args.length,
                                            data__batch_size=args.batch_size)


def _fit(variant: str, args: argparse.Namespace, steps: int, *, eval_every: int | None) -> Run:
    """Train ``variant`` for ``steps`` (validation every ``eval_every`` steps; none when None)."""
    return train_run(variant, study_variant(variant, args), args.out / "runs" / f"{variant}-L{args.length}",
                     save=False, seed=args.seed, max_steps=steps, val_every=eval_every or steps,
                     val_batches=args.val_batches if eval_every else 0)


def measure_step_seconds(variant: str, args: argparse.Namespace, probe: int = 30) -> float:
    """Median seconds per optimizer step over a short probe run (the first third dropped)."""
    return float(np.median(_fit(variant, args, probe, eval_every=None).clock.step_times[probe // 3:]))


def score_model(model, objective: str, train_token_counts, args: argparse.Namespace) -> dict:
    """The test split, scored as ``score --passes`` does, against the unigram and the n-gram."""
    from protein_performer.baselines import ContextBaseline, unigram_probabilities
    from protein_performer.corpus.shards import open_split
    from protein_performer.score import score_windows

    test = open_split(args.data_dir, "test")
    proteins = [np.asarray(test.protein(i)) for i in range(len(test))]
    unigram = unigram_probabilities(train_token_counts)
    context = ContextBaseline.from_split(objective, args.data_dir, unigram, window_tokens=512)
    return asdict(score_windows(model, objective, proteins, window_tokens=args.length,
                                batch_size=max(1, 4096 // args.length), passes=args.passes, unigram=unigram,
                                context=context))


def rescore(path: Path, args: argparse.Namespace) -> None:
    """Score a saved run's weights again (e.g. after the scoring gained a field) and update its JSON."""
    from protein_performer.datamodule import ProteinDataModule
    from protein_performer.model import PerformerConfig, PerformerLM

    record = json.loads(path.read_text())
    saved = torch.load(path.with_suffix(".pt"), weights_only=True)
    model = PerformerLM(PerformerConfig(**saved["performer_config"]))
    model.load_state_dict(saved["state_dict"])
    args.length = record["length"]
    counts = saved.get("train_token_counts")
    if counts is None:  # runs saved before the counts were: the manifest's, as training read them
        counts = ProteinDataModule(str(args.data_dir)).token_counts("train")
    record["test"] = score_model(model, "clm" if model.config.causal else "mlm", counts, args)
    path.write_text(json.dumps(record, indent=1) + "\n")
    log.info("rescored %s: test ppl %.3f", path, record["test"]["perplexity"])


def speed(args: argparse.Namespace) -> Path:
    """Seconds per training step of each variant, interleaved over ``--rounds`` rounds (median of
    the rounds), so that all variants see the same machine: outputs/study/speed-L<length>.json."""
    times: dict[str, list[float]] = {v: [] for v in args.variants}
    for _ in range(args.rounds):
        for variant in args.variants:
            times[variant].append(measure_step_seconds(variant, args, args.probe_steps))
    result = {"length": args.length, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
              "rounds": args.rounds, "probe_steps": args.probe_steps,
              "seconds_per_step": {v: float(np.median(t)) for v, t in times.items()}, "all": times}
    path = args.out / f"speed-L{args.length}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    log.info("seconds per step: %s", result["seconds_per_step"])
    return path


def run_variant(variant: str, args: argparse.Namespace) -> dict:
    steps = args.steps
    step_seconds = None
    if args.budget_seconds:
        if args.speeds:  # measured beforehand, interleaved (the `speed` command): load-independent
            step_seconds = json.loads(args.speeds.read_text())["seconds_per_step"][variant]
        else:
            step_seconds = measure_step_seconds(variant, args, args.probe_steps)
        steps = max(20, int(args.budget_seconds / step_seconds))
        log.info("%s: %.3f s/step -> %d steps in %.0f s", variant, step_seconds, steps, args.budget_seconds)
    eval_every = max(1, steps // args.evals)
    run = _fit(variant, args, steps, eval_every=eval_every)
    module, clock = run.module, run.clock
    train_seconds = clock.train_seconds
    score = score_model(module.model, module.objective, module.train_token_counts, args)
    out_dir = args.out / args.tag
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"performer_config": module.config.to_dict(), "state_dict": module.model.state_dict(),
                "train_token_counts": module.train_token_counts}, out_dir / f"{variant}.pt")
    record = {
        "variant": variant, "overrides": VARIANTS[variant].overrides, "tag": args.tag, "length": args.length,
        "batch_size": args.batch_size, "seed": args.seed, "steps": steps, "train_seconds": train_seconds,
        "probe_step_seconds": step_seconds, "budget_seconds": args.budget_seconds,
        "threads": torch.get_num_threads(), "parameters": module.model.num_parameters(),
        "curve": clock.curve, "test": score,
    }
    (out_dir / f"{variant}.json").write_text(json.dumps(record, indent=1) + "\n")
    log.info("%s: %d steps, %.0f s, test ppl %.3f acc %.2f%% (unigram %.3f, n-gram %.3f)", variant, steps,
             train_seconds, score["perplexity"], 100 * score["accuracy"], score["unigram_perplexity"],
             score["context_perplexity"])
    return record


def _split_score(model, proteins: list[np.ndarray], passes: int) -> dict:
    from protein_performer.score import score_windows

    result = score_windows(model.eval(), "mlm", proteins, window_tokens=512, batch_size=8, seed=0, passes=passes)
    return {"perplexity": result.perplexity, "accuracy": result.accuracy, "tokens": result.tokens}


def transfer(args: argparse.Namespace) -> Path:
    """A trained exact model's weights in each variant of ``--variants`` (same shape; FAVOR+
    projections drawn afresh), scored on ``--split`` as they are (zero-shot); the variants of
    ``--fine-tune`` then train ``--steps`` steps from those weights (lr ``--lr``, no warm-up, a cosine
    over the steps, the study's data recipe). Writes outputs/study/transfer.json."""
    from protein_performer.corpus.shards import open_split

    exact = load_weights(args.weights)
    if exact.config.attention != "exact":
        raise SystemExit(f"transfer: {args.weights} is a {exact.config.attention} model; "
                         "pass an exact one (outputs/study/TAG/exact.pt)")
    weights = {k: v for k, v in exact.state_dict().items() if not k.endswith("attn.projection")}
    split = open_split(args.data_dir, args.split)
    proteins = [np.asarray(split.protein(i)) for i in range(min(len(split), args.max_proteins or len(split)))]
    args.length, args.batch_size = 512, 8
    rows = [{"variant": "exact (source)", "zero_shot": _split_score(exact, proteins, args.passes)}]
    log.info("exact source: %s ppl %.3f", args.split, rows[0]["zero_shot"]["perplexity"])
    for variant in args.variants:
        tuned = study_variant(variant, args).with_overrides(model__lr=args.lr, model__warmup_steps=0,
                                                            model__schedule="cosine")
        run_dir = Path(args.weights).parents[1] / "runs" / f"transfer-{variant}"
        prepared = prepare_run(f"transfer-{variant}", tuned, run_dir, seed=args.seed, max_steps=args.steps,
                               val_batches=0)
        module = prepared.model
        missing, unexpected = module.model.load_state_dict(weights, strict=False)
        if unexpected or any(not k.endswith("attn.projection") for k in missing):
            raise SystemExit(f"transfer: {variant} does not have the exact model's shape ({missing}, {unexpected})")
        row = {"variant": variant, "overrides": VARIANTS[variant].overrides,
               "zero_shot": _split_score(module.model, proteins, args.passes)}
        log.info("%s zero-shot: ppl %.3f", variant, row["zero_shot"]["perplexity"])
        if variant in args.fine_tune:
            module.model.train()  # scoring left it in eval mode
            fit(prepared, save=False)
            row.update(steps=args.steps, lr=args.lr, fine_tuned=_split_score(module.model, proteins, args.passes))
            log.info("%s after %d steps: ppl %.3f", variant, args.steps, row["fine_tuned"]["perplexity"])
        rows.append(row)
    out = Path(args.weights).parents[1] / "transfer.json"
    out.write_text(json.dumps({"weights": str(args.weights), "split": args.split, "passes": args.passes,
                               "rows": rows}, indent=1) + "\n")
    return out


def _parents() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The options several commands share: ``--data-dir``, and ``--out`` (the study's folder)."""
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data-dir", type=Path, default=places.workdir() / "data" / "prepared" / "UP000000625_83333")
    out = argparse.ArgumentParser(add_help=False)
    out.add_argument("--out", type=Path, default=places.workdir() / "outputs" / "study",
                     help="the study's folder: runs, speeds and results (default outputs/study)")
    return data, out


def _add_training(sub, data: argparse.ArgumentParser, out: argparse.ArgumentParser) -> None:
    """The commands that train: ``run`` and ``speed``."""
    run = sub.add_parser("run", parents=[data, out], help="train and score variants")
    run.add_argument("--variants", nargs="+", required=True, choices=sorted(VARIANTS))
    run.add_argument("--tag", required=True, help="OUT/TAG/ holds the runs")
    run.add_argument("--steps", type=int, default=1600, help="optimizer steps (equal-steps runs)")
    run.add_argument("--budget-seconds", type=float, default=0.0,
                     help="equal wall clock: steps = budget / the variant's measured seconds per step")
    run.add_argument("--probe-steps", type=int, default=30, help="steps of the timing probe (--budget-seconds)")
    run.add_argument("--speeds", type=Path, default=None,
                     help="with --budget-seconds: seconds per step from `speed` (outputs/study/speed-L*.json) "
                          "instead of a probe, so the step counts do not depend on the load during the run")
    run.add_argument("--length", type=int, default=512)
    run.add_argument("--batch-size", type=int, default=8)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--evals", type=int, default=8, help="validation points on the curve")
    run.add_argument("--val-batches", type=int, default=20)
    run.add_argument("--passes", type=int, default=5)
    run.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    fast = sub.add_parser("speed", parents=[data, out], help="seconds per step of variants, interleaved (run it alone)")
    fast.add_argument("--variants", nargs="+", required=True, choices=sorted(VARIANTS))
    fast.add_argument("--length", type=int, default=512)
    fast.add_argument("--batch-size", type=int, default=8)
    fast.add_argument("--seed", type=int, default=0)
    fast.add_argument("--val-batches", type=int, default=0)
    fast.add_argument("--probe-steps", type=int, default=30)
    fast.add_argument("--rounds", type=int, default=3)
    fast.add_argument("--threads", type=int, default=0)


def _add_analyses(sub, data: argparse.ArgumentParser, out: argparse.ArgumentParser) -> None:
    """The commands that read trained weights or saved runs."""
    local = sub.add_parser("locality", parents=[data], help="attention mass near the query, per layer and head")
    local.add_argument("--weights", type=Path, nargs="+", required=True)
    sim = sub.add_parser("similarity", parents=[data],
                         help="attention/embedding similarity vs BLOSUM62, trained and untrained")
    sim.add_argument("--weights", type=Path, nargs="+", required=True)
    sim.add_argument("--max-proteins", type=int, default=197)
    again = sub.add_parser("rescore", parents=[data], help="score saved runs again (outputs/study/TAG/VARIANT.json)")
    again.add_argument("runs", nargs="+", type=Path)
    again.add_argument("--passes", type=int, default=5)
    report = sub.add_parser("report", parents=[out],
                            help="write docs/benchmarks/learning.md and figures from saved runs")
    report.add_argument("--docs", type=Path, default=places.workdir() / "docs",
                        help="the docs folder: benchmarks/learning.md and figures/learning_*.png go there")
    approx = sub.add_parser("approx", parents=[data], help="FAVOR+ estimate of a trained exact model's attention")
    approx.add_argument("--weights", type=Path, required=True, help="outputs/study/TAG/exact.pt")
    approx.add_argument("--features", type=int, nargs="+", default=[64, 256, 1024])
    move = sub.add_parser("transfer", parents=[data], help="a trained exact model's weights in other variants, "
                                                          "zero-shot and fine-tuned at equal steps")
    move.add_argument("--weights", type=Path, required=True, help="outputs/study/TAG/exact.pt")
    move.add_argument("--split", default="valid", choices=("valid", "test"))
    move.add_argument("--passes", type=int, default=1)
    move.add_argument("--max-proteins", type=int, default=0, help="score only the split's first N (0: all)")
    move.add_argument("--variants", nargs="+", choices=sorted(VARIANTS),
                      default=["favor-softmax", "m256", "m1024", "favor-relu", "hybrid-3local", "hybrid-3local-w64"])
    move.add_argument("--fine-tune", nargs="*", choices=sorted(VARIANTS), default=["favor-softmax", "hybrid-3local"])
    move.add_argument("--steps", type=int, default=1000)
    move.add_argument("--lr", type=float, default=2.5e-4, help="reproduce's transfer lr (its lr / 4)")
    move.add_argument("--seed", type=int, default=0)


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="study_learning.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    data, out = _parents()
    _add_training(sub, data, out)
    _add_analyses(sub, data, out)
    return parser


def _train(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command == "speed":
        speed(args)
        return
    for variant in args.variants:
        run_variant(variant, args)


COMMANDS = {"run": _train, "speed": _train, "locality": locality_study, "similarity": similarity_study,
            "rescore": lambda args: [rescore(path, args) for path in args.runs], "transfer": transfer,
            "approx": approximation_study, "report": lambda args: write_report(args.out, args.docs)}
"""What each command of :func:`main` runs, given the parsed arguments."""


def main(argv: list[str] | None = None) -> int:
    from protein_performer.allocator import keep_freed_memory

    keep_freed_memory()  # as every protein-performer command does
    args = create_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    COMMANDS[args.command](args)
    return 0
