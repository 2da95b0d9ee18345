"""Lightning callbacks: cross-cutting training behaviour, kept out of :class:`~protein_performer.lit.ProteinLM`.

Named in the configs (``trainer.callbacks``):

- :class:`NonFiniteGuard` stops a diverged run at the first non-finite loss, gradient or
  validation loss, before the optimizer applies it and before any checkpoint is written, with a
  message that names the step and what to lower;
- :class:`EpochReseed` restarts global randomness from (seed, epoch) at every training epoch, so
  a resumed run continues bit for bit;
- :class:`Throughput` logs ``train/tokens_per_s``;
- :class:`LastStepCheckpoint` is Lightning's ``ModelCheckpoint`` with ``last.ckpt`` always the last
  validated step and the final one (Lightning 2.6 rewrites it only when a top-k checkpoint is written in that step).

Named by the experiments (:mod:`protein_performer.experiments.runs`), which train through the same
CLI: :class:`WallClock` (training seconds with validation excluded, and the validation curve) and
:class:`Deadline` (fits a run and its cosine schedule to a wall-clock budget).

Added by the CLI when the progress bar is on: :class:`StepProgressBar`, Lightning's rich bar counting
optimizer steps in a run bounded by steps (not "Epoch 0/-2").

Supplied by the model itself (``ProteinLM.configure_callbacks``), because its schedule is a
hyperparameter saved with the model: :class:`FeatureRedraw`, which redraws the FAVOR+ projections
every ``redraw_interval`` optimizer steps.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import time
from typing import Any, Callable

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint as _LightningModelCheckpoint
from pytorch_lightning.callbacks import RichProgressBar

log = logging.getLogger(__name__)

ADVICE = ("lower --model.lr, raise --model.warmup_steps, or set --trainer.gradient_clip_val (e.g. 1.0); "
          "the checkpoints written before this step are finite and kept")


class TrainingDiverged(RuntimeError):
    """Raised by :class:`NonFiniteGuard`; the CLI reports it in one line and exits with 1."""


class NonFiniteGuard(pl.Callback):
    """Stop training at the first NaN or infinite value, and never save one.

    Checked: the training loss before its backward pass, the gradients before the optimizer
    step (not under 16-bit mixed precision, whose gradient scaler skips such steps itself),
    the monitored validation metrics before checkpoint callbacks see them, and every weight of
    a checkpoint before it is written. Under DDP the decision is shared by all ranks.

    Args:
        check_gradients: also check gradients every optimizer step (one norm per parameter).
    """

    def __init__(self, check_gradients: bool = True) -> None:
        self.check_gradients = check_gradients

    def _stop(self, trainer: pl.Trainer, finite: bool, what: Callable[[], str]) -> None:
        """Raise :class:`TrainingDiverged` unless ``finite`` (on every rank); ``what`` names the value."""
        if trainer.strategy.reduce_boolean_decision(bool(finite), all=True):
            return
        rate = f" (learning rate {trainer.optimizers[0].param_groups[0]['lr']:.3g})" if trainer.optimizers else ""
        raise TrainingDiverged(f"training diverged at step {trainer.global_step}: {what()} is not finite{rate}; "
                               f"{ADVICE}")

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        finite = bool(torch.isfinite(loss.detach()).all())
        self._stop(trainer, finite, lambda: f"the training loss ({loss.item():.4g})")

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        if not self.check_gradients or str(trainer.precision).startswith("16"):
            return
        norms = [torch.linalg.vector_norm(p.grad.detach()) for p in pl_module.parameters() if p.grad is not None]
        if norms:
            self._stop(trainer, bool(torch.isfinite(torch.stack(norms)).all()), lambda: "a gradient")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        bad = [name for name, value in trainer.callback_metrics.items()
               if name.startswith("val/") and not math.isfinite(float(value))]
        self._stop(trainer, not bad, lambda: ", ".join(bad))

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        finite = all(bool(torch.isfinite(v).all()) for v in checkpoint.get("state_dict", {}).values()
                     if torch.is_tensor(v) and v.is_floating_point())
        self._stop(trainer, finite, lambda: "a weight of the checkpoint being saved")


def redraw_generator(seed: int, step: int) -> torch.Generator:
    """The generator of the redraw at optimizer step ``step``: a pure function of (seed, step),
    so a resumed run draws exactly the projections an uninterrupted run would."""
    digest = hashlib.blake2b(f"{seed}:{step}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


def epoch_seed(base_seed: int, epoch: int) -> int:
    """The global seed of training epoch ``epoch`` of a run seeded with ``base_seed``."""
    return int.from_bytes(hashlib.blake2b(f"{base_seed}:{epoch}".encode(), digest_size=4).digest(), "little")


class FeatureRedraw(pl.Callback):
    """Redraw the model's random projections once every ``interval`` optimizer steps, after the step.

    The projection of step ``s`` is drawn from :func:`redraw_generator` (``feature_seed``, ``s``), so
    it depends on the step only: a resumed run redraws exactly as an uninterrupted one. Exact
    attention has nothing to redraw. Under gradient accumulation the redraw happens once per step.

    Args:
        interval: optimizer steps between redraws (0: never).
    """

    def __init__(self, interval: int = 1000) -> None:
        if interval < 0:
            raise ValueError(f"redraw interval must be >= 0 (0: never), got {interval}")
        self.interval = interval
        self._last_step = -1

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        step = trainer.global_step
        config = pl_module.model.config
        if not self.interval or config.attention == "exact" or step == 0 or step % self.interval:
            return
        if step == self._last_step:
            return
        self._last_step = step
        pl_module.model.redraw_features(redraw_generator(config.feature_seed, step))


class EpochReseed(pl.Callback):
    """Restart global randomness from (seed, epoch) at the start of every training epoch.

    Dropout and any other global randomness then follow :func:`epoch_seed`, so a run resumed from
    an epoch-end checkpoint continues bit for bit, whatever ran in between (sanity checks,
    validation loaders); data randomness is keyed per sample already. Lightning numbers sampler
    epochs by *processed* epochs, which runs ahead of ``current_epoch`` after such a resume, so
    the samplers are set to ``current_epoch`` too (after Lightning's ``set_epoch``, before the
    epoch's loader and workers start). The run's seed is saved in checkpoints as ``base_seed``.

    A checkpoint written inside an epoch also holds the global random states (``rng_states``); a
    run resumed from it restores them before its first training batch (Lightning starts no new
    epoch then, and :class:`~protein_performer.datamodule.ProteinDataModule` serves the epoch's
    remaining batches), so it continues bit for bit too.
    """

    def __init__(self) -> None:
        self.base_seed = torch.initial_seed()
        self._rng_states: dict[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.base_seed = torch.initial_seed()  # the seed of seed_everything, before any reseeding

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._rng_states = None  # a new epoch: its seed rules
        seed = epoch_seed(self.base_seed, trainer.current_epoch)
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        loader = trainer.train_dataloader
        batch_sampler = getattr(loader, "batch_sampler", None)
        for part in (getattr(loader, "sampler", None), batch_sampler, getattr(batch_sampler, "sampler", None)):
            if callable(getattr(part, "set_epoch", None)):
                part.set_epoch(trainer.current_epoch)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch,
                             batch_idx: int) -> None:
        if self._rng_states is not None:  # the first batch of a run resumed mid-epoch
            _set_rng_states(self._rng_states)
            self._rng_states = None

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["base_seed"] = self.base_seed
        checkpoint["rng_states"] = _rng_states()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self.base_seed = int(checkpoint.get("base_seed", self.base_seed))
        self._rng_states = checkpoint.get("rng_states")


def _rng_states() -> dict[str, Any]:
    """The global random states (torch, CUDA, numpy, ``random``) as tensors and plain types, so a
    checkpoint holding them still loads with ``weights_only``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "random": random.getstate()}


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(states["random"])


class Throughput(pl.Callback):
    """Log ``train/tokens_per_s``: real (unpadded) tokens of each training batch, over all ranks,
    per second of its step."""

    def __init__(self) -> None:
        self._tokens = 0
        self._start = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch,
                             batch_idx: int) -> None:
        mask = batch.get("attention_mask")
        self._tokens = int(mask.sum()) if mask is not None else batch["input_ids"].numel()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        elapsed = time.perf_counter() - self._start
        pl_module.log("train/tokens_per_s", self._tokens * trainer.world_size / max(elapsed, 1e-9),
                      prog_bar=True, on_step=True, on_epoch=False, batch_size=1)


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar; a run bounded by ``max_steps`` alone (``max_epochs`` -1 or unset,
    the configs' way) shows ``Step s/max_steps`` and fills over the run, instead of ``Epoch 0/-2``."""

    def _by_steps(self) -> bool:
        return self.trainer.max_epochs in (None, -1) and self.trainer.max_steps > 0

    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps if self._by_steps() else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        if not self._by_steps():
            return super()._get_train_description(current_epoch)
        return f"Step {self.trainer.global_step}/{self.trainer.max_steps}"

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self._by_steps() and self.progress is not None and self.train_progress_bar_id is not None:
            self.progress.update(self.train_progress_bar_id, completed=trainer.global_step,
                                 description=self._get_train_description(trainer.current_epoch))


class WallClock(pl.Callback):
    """Training seconds with validation excluded. At each validation it logs ``train_s`` (the seconds
    trained before that validation) and appends ``(step, train_s, val/loss)`` to :attr:`curve`; it also
    keeps the seconds of every training batch in :attr:`step_times`."""

    def __init__(self) -> None:
        self.curve: list[tuple[int, float, float]] = []
        self.step_times: list[float] = []
        self._start: float | None = None
        self._in_validation = 0.0
        self._validation_start = 0.0
        self._batch_start = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self._in_validation = time.perf_counter(), 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch,
                             batch_idx: int) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        self.step_times.append(time.perf_counter() - self._batch_start)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validation_start = time.perf_counter()

    def _counts(self, trainer: pl.Trainer) -> bool:
        return self._start is not None and not trainer.sanity_checking

    def _trained_before_validation(self) -> float:
        return self._validation_start - self._start - self._in_validation

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._counts(trainer):
            pl_module.log("train_s", self._trained_before_validation())

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._counts(trainer):
            return
        seconds = self._trained_before_validation()
        self._in_validation += time.perf_counter() - self._validation_start
        loss = trainer.callback_metrics.get("val/loss")
        if loss is not None:
            self.curve.append((trainer.global_step, seconds, float(loss)))

    @property
    def train_seconds(self) -> float:
        """Seconds since training started, validation excluded."""
        return time.perf_counter() - self._start - self._in_validation


class Deadline(pl.Callback):
    """Fits a run to a wall-clock budget of ``seconds`` so that its cosine schedule ends with it.

    After ``probe_steps`` optimizer steps it measures the rate (validation included) and sets both
    the trainer's ``max_steps`` and the model's ``schedule_steps`` to the steps that fit. At ``4 *
    probe_steps`` it fixes them once more from the rate since the first fix: the first steps pay for
    start-up and for the first touch of memory that later steps reuse (``allocator.py``), so the
    first rate under-reads the steady one (with one fix, Table 2's hybrid made 1,116 steps against
    1,353 in the run before the allocator, and Performer-Softmax at L=8192 stopped after 310 of its
    360 s). By then the cosine has moved little, so the second fix barely changes the learning rate.
    :attr:`load` is the 1-minute load average at the first fix (None before it).
    """

    def __init__(self, seconds: float, probe_steps: int = 50) -> None:
        self.seconds, self.probe_steps = seconds, probe_steps
        self.fixes: list[tuple[int, float]] = []
        """(step, elapsed seconds) at each fix."""
        self.load: float | None = None
        self._start = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self.fixes = time.perf_counter(), []

    def _fix(self, trainer: pl.Trainer, pl_module: pl.LightningModule, total: int, rate: float) -> None:
        trainer.fit_loop.epoch_loop.max_steps = total
        pl_module.schedule_steps = total
        log.info("deadline: %.1f steps/s -> %d steps in %.0f s", rate, total, self.seconds)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        step, probe = trainer.global_step, self.probe_steps
        if step == probe and not self.fixes:
            elapsed = time.perf_counter() - self._start
            self.fixes.append((step, elapsed))
            rate = probe / max(elapsed, 1e-9)
            self._fix(trainer, pl_module, max(probe + 1, int(0.97 * self.seconds * rate)), rate)
            self.load = os.getloadavg()[0]
            if self.load > (os.cpu_count() or 1) + 0.5:
                log.warning("load average %.1f on %d CPUs while measuring the step rate: another process competes "
                            "for the CPUs, so this run gets fewer steps than its peers (rerun on a quiet machine)",
                            self.load, os.cpu_count() or 1)
        elif len(self.fixes) == 1 and step == 4 * probe and step < trainer.fit_loop.epoch_loop.max_steps:
            elapsed = time.perf_counter() - self._start
            first_step, first_elapsed = self.fixes[0]
            rate = (step - first_step) / max(elapsed - first_elapsed, 1e-9)  # steps/s since the first fix
            self.fixes.append((step, elapsed))
            self._fix(trainer, pl_module, max(step + 1, step + int(0.97 * (self.seconds - elapsed) * rate)), rate)


class LastStepCheckpoint(_LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` whose ``save_last`` means the last step.

    Lightning 2.6 writes ``last.ckpt`` only in a step that also wrote a top-k checkpoint, and at
    the end of training only if it never wrote one: with ``monitor`` and ``save_top_k: 1``,
    ``last.ckpt`` was the best step's (a 10,000-step run whose validation loss last improved at step
    8,000 ended with step 8,000 in ``last.ckpt``), so resuming from it went back and scoring it
    scored the wrong model. Here ``last.ckpt`` is also written after every validation that did not
    write one, and at the end of training when the final step is not in it."""

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        super().on_validation_end(trainer, pl_module)
        self._save_last_if_behind(trainer)

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        super().on_train_end(trainer, pl_module)
        self._save_last_if_behind(trainer)

    def _save_last_if_behind(self, trainer: "pl.Trainer") -> None:
        from pytorch_lightning.trainer.states import TrainerFn

        if (not self.save_last or trainer.fast_dev_run or trainer.sanity_checking
                or trainer.state.fn != TrainerFn.FITTING or self._last_global_step_saved == trainer.global_step):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

