"""Part 2 of the reproduction: concatenated windows of 8192 tokens (and more), the Performer against the
largest exact model whose measured peak training memory is at most the Performer's, and the hybrid.

Memory is measured per shape in a fresh process (``python -m protein_performer.experiments.long_windows
SPEC``), so that each peak is that shape's own.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from protein_performer.experiments.registry import Variant, paper_model
from protein_performer.experiments.report.rules import learned
from protein_performer.experiments.results import LongRow, Plan, Probe, Results
from protein_performer.experiments.runs import (
    Run,
    score_checkpoint,
    train_run,
    val_curve,
)

log = logging.getLogger(__name__)
MODULE = "protein_performer.experiments.long_windows"  # what a memory probe's fresh process runs


def probe(config: dict, length: int) -> Probe:
    """Peak resident memory above the model (``peak_bytes``) and seconds of one MLM training step
    (``step_s``) at ``length``, measured in a fresh process so that the peak is this configuration's
    own; ``{"error": ...}`` when the process failed (out of memory, killed)."""
    cmd = [sys.executable, "-m", MODULE, json.dumps({"config": config, "length": length})]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        log.warning("memory probe of %s at L=%d failed (exit %d)", config, length, done.returncode)
        return {"error": f"exit {done.returncode}: {done.stderr[-500:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_probe(spec: str) -> None:
    """Worker of :func:`probe`: two AdamW steps on one random window; prints JSON."""
    import torch

    from protein_performer.experiments.machine import (
        peak_rss_bytes,
        reset_peak_rss,
        rss_bytes,
    )
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


def _models(plan: Plan, length: int) -> tuple[list[tuple[str, dict, Probe]], float, list[Probe]]:
    """The models to train at ``length`` (label, model config, its probe), the Performer's peak
    memory (the cap) and the exact shapes tried."""
    performer = dict(plan.shape, attention="softmax")
    measured = probe(performer, length)
    if "error" in measured:
        raise RuntimeError(f"memory probe of the Performer at L={length} failed: {measured['error']}")
    cap = measured["peak_bytes"]
    chosen, tried, m = None, [], {}
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
    hybrid = paper_model("hybrid", plan.shape, plan.local_window)  # Table 2's best, beside the paper's two
    hybrid_probe = probe(hybrid, length)
    if "error" in hybrid_probe:
        log.warning("memory probe of the hybrid at L=%d failed (%s); not training it", length,
                    hybrid_probe["error"].strip()[-200:])
    else:
        models.append(("hybrid", hybrid, hybrid_probe))
    return models, cap, tried


def long_windows(res: Results, plan: Plan, recipe: Variant, work: Path, test: list[np.ndarray]) -> dict[str, Run]:
    """Part 2: per length, the Performer, the largest exact model that fits in its memory, and the
    hybrid, each trained for ``plan.long_minutes`` from ``recipe`` (the plan's, with Performer-Softmax's
    ``local_heads: 0``); returns the runs by name."""
    runs = {}
    for length in plan.long_lengths:
        models, cap, tried = _models(plan, length)
        for label, config, m in models:
            expected_steps = plan.max_steps or max(1, plan.long_minutes * 60 / max(m["step_s"], 1e-3))
            attention = "hybrid" if label == "hybrid" else config["attention"]
            name = f"long{length}_{attention}_d{config['depth']}h{config['heads']}"
            variant = recipe.with_overrides(**{f"model__config__{k}": v for k, v in config.items()},
                                            data__window_tokens=length, data__batch_size=1)
            run = train_run(name, variant, work / name, seed=0, max_steps=plan.max_steps,
                            seconds=plan.long_minutes * 60, val_every=max(1, int(expected_steps // 6)),
                            val_batches=plan.val_batches, probe_steps=int(min(50, max(3, expected_steps // 5))),
                            csv=True)
            runs[name] = run
            scored = score_checkpoint(run.checkpoint, test, length, 1)
            row: LongRow = {"run": name, "length": length, "model": label, "depth": config["depth"],
                            "heads": config["heads"], "attention": attention, "peak_mib": m["peak_bytes"] / 2**20,
                            "cap_mib": cap / 2**20, "step_s": m["step_s"], "steps": run.steps,
                            "train_s": run.seconds, "accuracy": scored["accuracy"],
                            "perplexity": scored["perplexity"], "learned": learned(scored), "exact_probes": tried,
                            "curve": val_curve(run.metrics_csv).to_dict("list")}
            res.long.append(row)
    return runs


if __name__ == "__main__":  # the worker of probe()
    from protein_performer.allocator import keep_freed_memory

    keep_freed_memory()  # as every protein-performer command does
    run_probe(sys.argv[1])
