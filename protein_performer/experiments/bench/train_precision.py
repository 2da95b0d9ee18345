"""``scripts/bench_train.py --precision`` (:mod:`.train`): the training step in float32 against ``bf16-mixed``.

``bf16-mixed`` is autocast to bfloat16, as Lightning runs it (FAVOR+ inside in float32). The shapes
are those of ``configs/demo.yaml`` and ``configs/performer_softmax_mlm.yaml`` (``--configs``: model,
batch, window and MLM share as the CLI reads them, base.yaml first). Per config one model per
precision, in this process; they take turns for ``--rounds`` rounds (``--long-rounds`` at L >= 8192),
the order alternating, after a warm-up step each, and the ratio is the median over rounds of the two
step times in the same round. ``--profile N`` adds the N ops with the most self time in one
bf16-mixed step of each config.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import statistics
from functools import partial

import torch
import yaml

from protein_performer.allocator import keep_freed_memory
from protein_performer.cli import BASE_CONFIG, CONFIG_DIR
from protein_performer.experiments.bench.common import time_call
from protein_performer.experiments.bench.train_common import MLM_FRACTION, TARGET_L, make_batch, training_step
from protein_performer.experiments.machine import machine_description, write_marked_block
from protein_performer.experiments.report.tables import md_table
from protein_performer.model import PerformerConfig, PerformerLM

log = logging.getLogger("bench_train")

PRECISIONS = ["32-true", "bf16-mixed"]  # Lightning's names


def config_shape(name: str) -> tuple[PerformerConfig, int, int, float]:
    """The model, batch size, window length and MLM share that ``configs/NAME.yaml`` trains with,
    read as the CLI reads it: configs/base.yaml first, then the config."""
    model, data = {}, {}
    for path in (BASE_CONFIG, CONFIG_DIR / f"{name}.yaml"):
        config = yaml.safe_load(path.read_text())
        model.update((config.get("model") or {}).get("config") or {})
        data.update(config.get("data") or {})
    return PerformerConfig(**model), data["batch_size"], data["window_tokens"], data.get("mask_prob", MLM_FRACTION)


def run_precision(name: str, *, rounds: int, profile_rows: int, device: str) -> dict:
    """Float32 and bf16-mixed training steps of config ``name``'s shape, taking turns for ``rounds``
    rounds (the order alternating) after a warm-up step each; per precision the step times, and
    with ``profile_rows`` the profiler's table of one bf16-mixed step."""
    config, batch_size, length, mlm_fraction = config_shape(name)
    batch = make_batch(length, config.causal, torch.Generator().manual_seed(0), device, batch_size=batch_size,
                       mlm_fraction=mlm_fraction)
    steps = {}
    for precision in PRECISIONS:
        torch.manual_seed(0)
        model = PerformerLM(config).to(device).train()
        steps[precision] = training_step(model, device, bf16=precision == "bf16-mixed")
        steps[precision](batch)  # warm-up: thread pool, AdamW state, kernels picked for these shapes
    seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for r in range(rounds):
        for precision in PRECISIONS[r % 2:] + PRECISIONS[: r % 2]:
            seconds[precision].append(time_call(partial(steps[precision], batch), device))
    result = {"config": name, "batch_size": batch_size, "length": length, "seconds": seconds, "profile": ""}
    if profile_rows:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
            steps["bf16-mixed"](batch)
        result["profile"] = prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=profile_rows, max_name_column_width=40, max_shapes_column_width=80)
    return result


def precision_report(results: list[dict], args: argparse.Namespace, command: str) -> str:
    lines = [
        (f"Measured {datetime.date.today().isoformat()} on {machine_description(args.device)}; device "
        f"{args.device}, {args.threads} threads. One training step (forward, cross-entropy, backward, AdamW) of "
        "each config's model, batch and window on random amino acids; float32 against bf16-mixed "
        "(torch.autocast to bfloat16, as Lightning runs it; FAVOR+ forms its features, normaliser and prefix "
        "sums in float32 inside it). One model per precision in one process, taking turns for "
        f"{args.rounds} rounds ({args.long_rounds} at L >= {TARGET_L}), the order alternating, after a warm-up "
        "step each. fp32 / bf16 = median over rounds of the two step times in the same round."),
        "",
        f"Command: `{command}`",
        "",
    ]
    body = []
    for r in results:
        fp32, bf16 = r["seconds"]["32-true"], r["seconds"]["bf16-mixed"]
        ratio = statistics.median(a / b for a, b in zip(fp32, bf16))
        body.append([r["config"], f"{r['batch_size']} x {r['length']}",
                     f"{statistics.median(fp32):.3g} (n={len(fp32)})", f"{statistics.median(bf16):.3g}", f"{ratio:.2f}x"])
    lines.append(md_table(["config", "batch x L", "fp32 s/step (median)", "bf16-mixed s/step (median)", "fp32 / bf16"],
                          body, align="lrrrr"))
    return "\n".join(lines)


def run(args: argparse.Namespace, command: str) -> None:
    """Every ``--configs`` (``--quick``: demo only) in this process; writes ``--out-json`` and the
    ``bench_train_precision`` block of ``--out-md``, and prints the block and any profiles."""
    keep_freed_memory()  # as every protein-performer command does
    torch.set_num_threads(args.threads)
    results = []
    for name in ["demo"] if args.quick else args.configs.split(","):
        length = config_shape(name)[2]
        results.append(run_precision(name, rounds=args.long_rounds if length >= TARGET_L else args.rounds,
                                     profile_rows=args.profile, device=args.device))
        log.info("%s: %s", name, "; ".join(f"{p} {', '.join(f'{t:.3f}' for t in s)} s"
                                           for p, s in results[-1]["seconds"].items()))
    if args.out_json:
        args.out_json.write_text(json.dumps({"command": command, "precision": results}, indent=1))
    block = precision_report(results, args, command)
    if args.out_md:
        write_marked_block(args.out_md, block, "bench_train_precision", "Training-step benchmark")
    print(block)
    for r in results:
        if r["profile"]:
            print(f"\nOne bf16-mixed step of {r['config']}, ops by self CPU time:\n{r['profile']}")
