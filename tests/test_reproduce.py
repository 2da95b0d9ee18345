"""The reproduction (``make reproduce``, :mod:`protein_performer.experiments.reproduce`) end to end on a
tiny synthetic proteome (--tiny: small shapes, 3 steps per run), and its parts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from protein_performer import callbacks
from protein_performer.callbacks import Deadline
from protein_performer.experiments import reproduce
from protein_performer.experiments.long_windows import exact_candidates
from protein_performer.experiments.registry import paper_model
from protein_performer.experiments.runs import train_run


def _fasta(path: Path, n: int = 400) -> Path:
    rng = np.random.default_rng(0)
    amino = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    with path.open("w") as f:
        for i in range(n):
            seq = "M" + "".join(rng.choice(amino, size=int(rng.integers(40, 160))))
            f.write(f">sp|Q{i:05d}|SYN{i}_ECOLI synthetic protein {i}\n{seq}\n")
    return path


def test_reproduce_tiny_writes_results_and_figures(tmp_path):
    from PIL import Image

    from protein_performer.experiments.report.document import count

    out = tmp_path / "docs"
    code = reproduce.main(["--tiny", "--budget-minutes", "0.5", "--out", str(out),
                           "--fasta", str(_fasta(tmp_path / "tiny.fasta")), "--work-dir", str(tmp_path / "work")])
    assert code == 0
    text = (out / "RESULTS.md").read_text()
    for heading in ("## 1. Table 2", "## 2. Long concatenated windows", "## 3. Transfer", "## 4. Amino-acid similarity",
                    "## 5. Attention benchmark"):
        assert heading in text
    for row in ("Empirical baseline (unigram)", "Transformer (exact)", "Performer-ReLU", "Performer-Softmax",
                "Performer hybrid (local + FAVOR+)"):
        assert f"| {row} |" in text
    assert "torch" in text and "pytorch-lightning" in text
    saved = json.loads((out / "figures" / "results_all.json").read_text())
    residues = saved["environment"]["train_residues"]  # the scale sentence comes from the prepared data
    assert residues > 0 and f"{residues:,} residues" in text and f"{count(residues)} training residues" in text
    assert all("exact_probes" in r for r in saved["long"])
    assert [r["attention"] for r in saved["long"]][-1] == "hybrid"  # beside Performer-Softmax and exact
    hybrid = [r for r in saved["table"] if r["attention"] == "hybrid"]
    assert [r["objective"] for r in hybrid] == ["mlm", "clm"]
    assert set(saved["transfer"]["targets"]) == {"softmax", "hybrid"}
    assert set(saved["transfer"]["zero_shot"]) == {"relu", "softmax", "hybrid"}
    passes = saved["plan"]["score_passes"]  # the transfer scores use Table 2's masks
    assert all(t["fine_tuned"]["passes"] == passes for t in saved["transfer"]["targets"].values())
    figures = sorted((out / "figures").glob("results_*.png"))
    names = {p.name for p in figures}
    assert {"results_training_curves.png", "results_long_windows.png", "results_transfer.png",
            "results_approximation_error.png", "results_similarity_trained_attention.png",
            "results_similarity_untrained_embedding.png", "results_similarity_trained_long_context.png"} <= names
    analysed = {(s["model"], s["window"]) for s in saved["similarity"]}  # Table 2's best and part 2's best
    assert analysed == {("trained", 64), ("untrained", 64), ("trained, L=256", 256), ("untrained, L=256", 256)}
    assert "| Amino-acid similarity from attention contexts resembles BLOSUM62 (L=256 model) |" in text
    (out / "RESULTS.md").unlink()
    assert reproduce.main(["--report-only", "--out", str(out)]) == 0  # redraws everything from results_all.json
    assert (out / "RESULTS.md").read_text() == text
    for png in figures:
        assert f"figures/{png.name}" in text, f"{png.name} is not linked from RESULTS.md"
        with Image.open(png) as image:
            image.verify()
            assert image.size[0] > 100 and image.size[1] > 100


def test_exact_candidates_shrink_depth_then_heads():
    shapes = exact_candidates(dict(dim=128, depth=2, heads=4, nb_features=64))
    assert [(s["depth"], s["heads"]) for s in shapes] == [(2, 4), (2, 2), (2, 1), (1, 4), (1, 2), (1, 1)]
    assert all(s["attention"] == "exact" for s in shapes)


def test_deadline_fixes_the_length_again_from_the_steady_rate(monkeypatch):
    """The first fix reads a slow start (start-up, first touch of memory); the second, at 4 x the
    probe, uses the rate since the first, so the run fills its budget."""
    from types import SimpleNamespace

    clock = [0.0]
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: clock[0])
    deadline = Deadline(seconds=100.0, probe_steps=10)
    loop = SimpleNamespace(max_steps=10**6)
    trainer = SimpleNamespace(global_step=0, fit_loop=SimpleNamespace(epoch_loop=loop))
    module = SimpleNamespace(schedule_steps=None)
    deadline.on_train_start(trainer, module)
    fixes = []
    for step, now in ((5, 15.0), (10, 20.0), (20, 25.0), (40, 35.0), (60, 45.0)):
        clock[0], trainer.global_step = now, step
        deadline.on_train_batch_end(trainer, module, None, None, step)
        fixes.append((loop.max_steps, module.schedule_steps))
    first = int(10 * 0.97 * 100 / 20)  # 0.5 steps/s over the first 10 steps
    second = 40 + int(0.97 * (100 - 35) * (30 / 15))  # 2 steps/s since then, for the 65 s left
    assert fixes == [(10**6, None), (first, first), (first, first), (second, second), (second, second)]


def test_wall_clock_runs_end_their_cosine_with_the_budget(prepared_ecoli, tmp_path):
    """A budgeted run fixes its step count after a probe, so the learning rate reaches its floor."""
    import dataclasses

    import torch

    args = reproduce.create_parser().parse_args(["--tiny", "--budget-minutes", "1"])
    plan = dataclasses.replace(reproduce.make_plan(args), max_steps=None)  # budgeted, not step-capped
    softmax = paper_model("softmax", plan.shape, plan.local_window)
    variant = reproduce.plan_recipe(plan, prepared_ecoli).with_overrides(**reproduce.model_overrides(softmax))
    assert (plan.window, plan.batch_size) == (64, 4)
    run = train_run("deadline", variant, tmp_path / "deadline", seed=0, seconds=0.1 * 60, val_every=10**6,
                    val_batches=plan.val_batches, probe_steps=3,
                    cap_factor=20.0)  # no wall-clock cut on a loaded machine: steps end the run
    state = torch.load(run.checkpoint, map_location="cpu", weights_only=True)
    final_lr = state["lr_schedulers"][0]["_last_lr"][0]
    assert run.steps > 3
    assert final_lr == pytest.approx(0.1 * plan.lr, rel=0.05), "the cosine did not end with the run"
