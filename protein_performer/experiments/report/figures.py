"""The figures and CSVs of RESULTS.md, drawn from ``results_all.json`` alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from protein_performer.experiments.report.rules import (
    ATTENTIONS,
    NAMES,
    OBJECTIVES,
    transfer_targets,
)
from protein_performer.experiments.results import Results


def _accuracy_over_time(ax, title: str) -> None:
    ax.set(title=title, xlabel="training wall-clock seconds (validation excluded)", ylabel="validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=120)
    plt.close(fig)


COLOURS = dict(zip(ATTENTIONS, ("tab:gray", "tab:orange", "tab:blue", "tab:green")))
"""One colour per Table 2 model, in every figure."""


def plot_training_curves(res: Results, path: Path) -> None:
    """Validation accuracy over training seconds of the Table 2 runs, BID and UNI panels."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for ax, objective in zip(axes, OBJECTIVES):
        for name, curve in res.curves.items():
            _, attention, obj, seed = name.split("_")  # table2_<attention>_<objective>_s<seed>
            if obj == objective and curve["val_acc"]:
                ax.plot(curve["train_s"], np.array(curve["val_acc"]) * 100, marker=".", color=COLOURS[attention],
                        alpha=1.0 if seed == "s0" else 0.5, label=f"{attention} ({seed})")
        _accuracy_over_time(ax, f"{'BID (masked)' if objective == 'mlm' else 'UNI (causal)'}, window "
                                f"{res.plan.window}")
    _save(fig, path)


def plot_long(res: Results, path: Path) -> None:
    """Validation accuracy over training seconds at each long-window length, one panel per length."""
    import matplotlib.pyplot as plt

    lengths = sorted({r["length"] for r in res.long})
    fig, axes = plt.subplots(1, len(lengths), figsize=(6 * len(lengths), 4.2), constrained_layout=True, squeeze=False)
    for ax, length in zip(axes[0], lengths):
        at = [r for r in res.long if r["length"] == length]
        for r in at:
            c = r["curve"]
            ax.plot(c["train_s"], np.array(c["val_acc"]) * 100, marker="o",
                    label=f"{r['model']}: depth {r['depth']}, heads {r['heads']}, peak {r['peak_mib']:.0f} MiB")
        _accuracy_over_time(ax, f"BID, concatenated windows of {length} (memory cap {at[0]['cap_mib']:.0f} MiB)")
    _save(fig, path)


def plot_transfer(res: Results, path: Path) -> None:
    """Fine-tuning curve of each Performer initialised from the exact model, beside its scratch run."""
    import matplotlib.pyplot as plt

    t = res.transfer
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    last = 1
    for target, f in transfer_targets(res).items():
        steps = [0] + list(f["curve"].get("step", []))
        last = max(last, steps[-1])
        ax.plot(steps, np.array([f["zero_shot_val_accuracy"]] + list(f["curve"].get("val_acc", []))) * 100, marker="o",
                color=COLOURS[target], label=f"{NAMES[target]} initialised from the exact model")
        if f["scratch_curve"].get("step"):
            ax.plot(f["scratch_curve"]["step"], np.array(f["scratch_curve"]["val_acc"]) * 100, marker=".",
                    color=COLOURS[target], ls=":", alpha=0.7, label=f"{NAMES[target]} from scratch (Table 2 run)")
    ax.axhline(t["exact_val_accuracy"] * 100, color="tab:gray", ls="--", label="exact source model")
    ax.set(xlabel="optimizer steps", ylabel="validation accuracy (%)",
           title="Transfer: exact Transformer -> Performer (zero-shot at step 0, then fine-tune)")
    ax.set_xlim(0, last * 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def draw_figures(res: Results, figures: Path) -> None:
    """The three PNGs of RESULTS.md and the per-run CSVs (Table 2, long windows) into ``figures``."""
    import pandas as pd

    figures.mkdir(parents=True, exist_ok=True)
    plot_training_curves(res, figures / "results_training_curves.png")
    pd.DataFrame(res.table).to_csv(figures / "results_table2.csv", index=False, float_format="%.5f")
    if res.long:
        plot_long(res, figures / "results_long_windows.png")
        pd.DataFrame([{k: v for k, v in r.items() if k not in ("curve", "exact_probes")} for r in res.long]).to_csv(
            figures / "results_long_windows.csv", index=False, float_format="%.5f")
    if res.transfer:
        plot_transfer(res, figures / "results_transfer.png")
