"""Lightning callbacks named in the configs (``trainer.callbacks``): cross-cutting training behaviour.

:class:`NonFiniteGuard` stops a diverged run at the first non-finite loss, gradient or
validation loss, before the optimizer applies it and before any checkpoint is written, with a
message that names the step and what to lower.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable

import pytorch_lightning as pl
import torch

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
