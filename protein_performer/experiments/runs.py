"""Training and scoring runs of the experiments, through the command line's own path.

:func:`train_run` trains a :class:`~protein_performer.experiments.registry.Variant` as
``protein-performer fit`` does: :class:`~protein_performer.cli.ProteinCLI` reads configs/base.yaml,
then the variant's config, then a YAML file of the run's overrides (written into the run's folder as
``overrides.yaml``, so the run can be repeated by hand:
``protein-performer fit --config configs/demo.yaml --config RUN/overrides.yaml``). The overrides add
what an experiment needs over a user's run (:data:`EXPERIMENT_TRAINER`): float32 on one CPU, no
progress bar or checkpoint callback, and the callbacks :class:`~protein_performer.callbacks.WallClock`
and, for a wall-clock budget, :class:`~protein_performer.callbacks.Deadline`.

:func:`cli_command` runs any ``protein-performer`` command in this process and times it: the one way
the workflows (the demo, ``make variants``, the family benchmarks) call the command line.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from protein_performer.experiments.registry import Variant, config_path, nest

if TYPE_CHECKING:
    import pandas as pd

    from protein_performer.callbacks import Deadline, WallClock
    from protein_performer.lit import ProteinLM

log = logging.getLogger(__name__)

EXPERIMENT_TRAINER: dict[str, Any] = {
    "trainer.accelerator": "cpu", "trainer.devices": 1,
    "trainer.precision": "32-true",  # the experiments' numbers are float32 on every CPU
    "trainer.enable_progress_bar": False, "trainer.enable_model_summary": False,
    "trainer.enable_checkpointing": False, "trainer.num_sanity_val_steps": 0,
    "trainer.check_val_every_n_epoch": None,
    "data.num_workers": 0,
}
"""What every experiment run sets over its config (validation by steps, data loaded in-process)."""

KEPT_CALLBACKS = ("protein_performer.callbacks.NonFiniteGuard", "protein_performer.callbacks.EpochReseed")
"""configs/base.yaml's callbacks that experiment runs keep (the checkpoint callback and the throughput
log are left out: a run saves its final weights once, and logs no per-step metrics)."""


def _callback(class_path: str, **init_args: Any) -> dict[str, Any]:
    return {"class_path": class_path, "init_args": init_args} if init_args else {"class_path": class_path}


@dataclass
class PreparedRun:
    """A run's model, data and trainer as the CLI instantiated them, before training."""

    name: str
    run_dir: Path
    model: ProteinLM
    datamodule: Any
    trainer: Any
    clock: WallClock
    deadline: Deadline | None


@dataclass
class Run:
    """One finished training run."""

    name: str
    checkpoint: str | None
    """``final.ckpt`` in the run's folder (None when not saved)."""
    metrics_csv: str | None
    """The CSV logger's file (None without one)."""
    steps: int
    seconds: float
    """Wall clock of ``trainer.fit``, validation included."""
    config: dict
    """The model's ``PerformerConfig`` as a dict."""
    load: float | None = None
    """1-minute load average when the step rate was measured (None: no wall-clock budget)."""
    module: Any = dataclasses.field(default=None, repr=False)
    """The trained :class:`~protein_performer.lit.ProteinLM`."""
    clock: Any = dataclasses.field(default=None, repr=False)
    """Its :class:`~protein_performer.callbacks.WallClock`."""


def prepare_run(name: str, variant: Variant, run_dir: Path, *, seed: int = 0, max_steps: int | None = None,
                seconds: float | None = None, probe_steps: int = 50, cap_factor: float = 1.1,
                val_every: int | None = None, val_batches: int = 0, csv: bool = False) -> PreparedRun:
    """Instantiate ``variant`` through :class:`~protein_performer.cli.ProteinCLI` for a run in ``run_dir``.

    ``max_steps`` bounds the run by steps; ``seconds`` (when ``max_steps`` is None) by wall clock: a
    :class:`~protein_performer.callbacks.Deadline` fixes the step count after ``probe_steps`` steps so
    that the cosine ends with the budget. With ``seconds``, ``cap_factor`` times it is a hard cap in
    case the machine slows down later. ``seed`` seeds everything and the data's masks. Validation runs
    every ``val_every`` steps on ``val_batches`` batches (none when 0). ``csv``: log to
    ``run_dir/csv/metrics.csv``.
    """
    from protein_performer.callbacks import Deadline, WallClock
    from protein_performer.cli import run_lightning_cli

    if max_steps is None and seconds is None:
        raise ValueError(f"{name}: give max_steps or seconds")
    callbacks = [_callback(path) for path in KEPT_CALLBACKS] + [_callback("protein_performer.callbacks.WallClock")]
    budget: dict[str, Any] = {"trainer.max_steps": max_steps or 10**6}
    if seconds is not None:  # only a safety cap: the Deadline ends the run by steps
        budget["trainer.max_time"] = {"seconds": max(1, round(seconds * cap_factor))}
    if max_steps is None:
        callbacks.append(_callback("protein_performer.callbacks.Deadline", seconds=float(seconds),
                                   probe_steps=int(probe_steps)))
    logger = [_callback("pytorch_lightning.loggers.CSVLogger", save_dir=".", name="", version="csv")] if csv else False
    overrides = {**EXPERIMENT_TRAINER, **variant.overrides, **budget, "seed_everything": seed, "data.seed": seed,
                 "trainer.default_root_dir": str(run_dir), "trainer.logger": logger, "trainer.callbacks": callbacks,
                 "trainer.val_check_interval": max(1, val_every or max_steps or 10**6),
                 "trainer.limit_val_batches": val_batches if val_batches else 0}
    run_dir.mkdir(parents=True, exist_ok=True)
    written = run_dir / "overrides.yaml"
    written.write_text(yaml.safe_dump(nest(overrides), sort_keys=False))
    config = config_path(variant.config)
    log.debug("%s: protein-performer fit --config %s --config %s", name, config, written)
    with warnings.catch_warnings():  # this process's own command line is the experiment's, not the CLI's
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended", category=UserWarning)
        cli = run_lightning_cli(["--config", str(config), "--config", str(written)], run=False)
    clock = next(cb for cb in cli.trainer.callbacks if isinstance(cb, WallClock))
    deadline = next((cb for cb in cli.trainer.callbacks if isinstance(cb, Deadline)), None)
    return PreparedRun(name, run_dir, cli.model, cli.datamodule, cli.trainer, clock, deadline)


def fit(prepared: PreparedRun, *, save: bool = True) -> Run:
    """Train a prepared run; with ``save``, its weights go to ``run_dir/final.ckpt``."""
    trainer, module = prepared.trainer, prepared.model
    started = time.perf_counter()
    trainer.fit(module, prepared.datamodule)
    seconds = time.perf_counter() - started
    checkpoint = None
    if save:
        checkpoint = str(prepared.run_dir / "final.ckpt")
        trainer.save_checkpoint(checkpoint)
    log.info("%s: %d steps in %.0f s", prepared.name, trainer.global_step, seconds)
    metrics = Path(trainer.logger.log_dir) / "metrics.csv" if trainer.logger is not None else None
    return Run(prepared.name, checkpoint, str(metrics) if metrics else None, int(trainer.global_step), seconds,
               module.config.to_dict(), prepared.deadline.load if prepared.deadline else None, module,
               prepared.clock)


def train_run(name: str, variant: Variant, run_dir: Path, *, save: bool = True, **settings: Any) -> Run:
    """Train ``variant`` as ``protein-performer fit`` does (see :func:`prepare_run` for ``settings``)."""
    return fit(prepare_run(name, variant, run_dir, **settings), save=save)


def validate_run(variant: Variant, run_dir: Path, val_batches: int) -> float:
    """Validation accuracy on ``val_batches`` batches of ``variant`` (typically with ``model.init_from``):
    the step-0 point of a fine-tune curve."""
    prepared = prepare_run(run_dir.name, variant, run_dir, max_steps=1, val_batches=val_batches)
    return float(prepared.trainer.validate(prepared.model, prepared.datamodule, verbose=False)[0]["val/acc"])


# --------------------------------------------------------------------------- commands


class CommandFailed(RuntimeError):
    """A ``protein-performer`` command run by :func:`cli_command` exited with an error (its own message
    was logged above)."""


def cli_command(*args: str) -> float:
    """Run ``protein-performer ARGS`` in this process, logged as the command a user would type; returns
    its wall-clock seconds. Raises :class:`CommandFailed` when it exits with a non-zero status."""
    from protein_performer.cli import main as cli

    log.info("$ protein-performer %s", " ".join(args))
    started = time.perf_counter()
    code = cli(list(args))
    if code:
        raise CommandFailed(f"`protein-performer {' '.join(args)}` failed with exit code {code} (its message is above)")
    return time.perf_counter() - started


# --------------------------------------------------------------------------- scoring


def score(model, objective: str, proteins: list[np.ndarray], unigram, window: int, batch_size: int,
          passes: int = 1, context=None) -> dict:
    """:func:`protein_performer.score.score_windows` of ``model`` on ``proteins`` (seed 0), as a dict."""
    from protein_performer.score import score_windows

    result = score_windows(model, objective, proteins, window_tokens=window, batch_size=batch_size, seed=0,
                           unigram=unigram, passes=passes, context=context)
    return dataclasses.asdict(result)


def score_checkpoint(path: str, proteins: list[np.ndarray], window: int, batch_size: int, passes: int = 1,
                     context=None) -> dict:
    """:func:`score` of a checkpoint, against the unigram of its own training split."""
    from protein_performer.baselines import unigram_probabilities
    from protein_performer.checkpoint import load_checkpoint

    loaded = load_checkpoint(path)
    return score(loaded.model, loaded.objective, proteins, unigram_probabilities(loaded.train_token_counts),
                 window, batch_size, passes, context)


def val_curve(metrics_csv: str) -> pd.DataFrame:
    """``step``, ``train_s``, ``val_acc``, ``val_loss`` rows of a CSVLogger file."""
    import pandas as pd

    frame = pd.read_csv(metrics_csv)
    if "val/acc" not in frame:
        return pd.DataFrame(columns=["step", "train_s", "val_acc", "val_loss"])
    rows = frame.dropna(subset=["val/acc"])
    return pd.DataFrame({"step": rows["step"].to_numpy(), "train_s": rows.get("train_s", np.nan),
                         "val_acc": rows["val/acc"].to_numpy(), "val_loss": rows["val/loss"].to_numpy()})
