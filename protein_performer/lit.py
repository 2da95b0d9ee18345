"""Lightning training: :class:`ProteinLM` around :class:`~protein_performer.model.PerformerLM`.

Objectives: ``mlm`` (masked, bidirectional model) and ``clm`` (next token, causal model).
Batches follow the contract of :mod:`protein_performer.datasets`: ``input_ids`` (B, L),
``labels`` (B, L) with -100 where there is no loss, ``attention_mask`` (B, L) True at real tokens.
The module holds the steps, metrics and optimiser; reseeding, throughput and the non-finite guard
are callbacks named in the configs (:mod:`protein_performer.callbacks`), and the command line is
:mod:`protein_performer.cli`.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from protein_performer.alphabet import ALPHABET, ALPHABET_VERSION
from protein_performer.callbacks import FeatureRedraw
from protein_performer.datasets import IGNORE_INDEX, check_objective, residue_targets_only
from protein_performer.model import PerformerConfig, PerformerLM

log = logging.getLogger(__name__)


def resolve_objective(config: PerformerConfig | dict | None, objective: str | None) -> tuple[PerformerConfig, str]:
    """The model shape and objective of a run, each following the other where it is not given.

    ``objective=None`` follows ``config.causal`` (``clm`` for a causal model); a ``config`` given as a
    dict without ``causal`` (or none at all) follows ``objective``. Both given and disagreeing is
    an error that names both.
    """
    if objective is not None:
        check_objective(objective)
    fields = config.to_dict() if isinstance(config, PerformerConfig) else dict(config or {})
    known = [f.name for f in dataclasses.fields(PerformerConfig)]
    for name in fields:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            raise ValueError(f"model.config: unknown setting {name!r}"
                             + (f" (did you mean {close[0]!r}?)" if close else "")
                             + f"; the settings are {', '.join(known)}")
    fields.setdefault("causal", objective == "clm")
    causal = bool(fields["causal"])
    if objective is None:
        objective = "clm" if causal else "mlm"
    elif (objective == "clm") != causal:
        raise ValueError(f"objective {objective!r} and config.causal={causal} disagree: {objective!r} needs "
                         f"causal={objective == 'clm'}; give one of them and the other follows")
    return PerformerConfig(**fields), objective


def lr_factor(step: int, warmup: int, total: int | None, floor: float) -> float:
    """Learning rate at optimizer step ``step`` as a fraction of the peak.

    Linear warm-up over the first ``warmup`` steps, then constant (``total=None``) or a cosine that
    reaches ``floor`` at step ``total`` and stays there.
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if total is None:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def lm_metrics(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed cross-entropy, number of correct predictions and of labelled tokens.

    logits: (B, L, V); labels: (B, L) with -100 where there is no target.
    """
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()  # (B*L, V)
    flat_labels = labels.reshape(-1)
    loss_sum = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    keep = flat_labels != IGNORE_INDEX
    correct = (flat_logits.argmax(-1) == flat_labels)[keep].sum()
    return loss_sum, correct, keep.sum()


class ProteinLM(pl.LightningModule):
    """Masked or causal protein language model training.

    Args:
        config: the model's shape (:class:`PerformerConfig`, or a dict of its fields).
        objective: ``mlm`` or ``clm``; by default the one ``config.causal`` implies, and a dict
            ``config`` without ``causal`` follows it (see :func:`resolve_objective`).
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay (matrices only; not norms, biases or embeddings).
        betas: AdamW betas.
        warmup_steps: linear warm-up length in optimizer steps.
        schedule: ``cosine`` decay to ``min_lr_ratio * lr`` over the run, or ``constant``.
        min_lr_ratio: final learning rate of the cosine schedule, as a fraction of ``lr``.
        redraw_interval: redraw FAVOR+ projections every N optimizer steps (0: never); the module
            brings its :class:`~protein_performer.callbacks.FeatureRedraw` to any trainer.
        init_from: a checkpoint (e.g. of an exact-attention model of the same shape) whose model
            weights initialise this one: the Performer paper's backward compatibility.
    """

    def __init__(
        self,
        config: PerformerConfig | dict | None = None,
        objective: Literal["mlm", "clm"] | None = None,
        lr: float = 5e-4,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.98),
        warmup_steps: int = 100,
        schedule: Literal["cosine", "constant"] = "cosine",
        min_lr_ratio: float = 0.1,
        redraw_interval: int = 1000,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        config, objective = resolve_objective(config, objective)
        if schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
        # Plain types only in hparams so checkpoints load with weights_only=True.
        self.save_hyperparameters({
            "config": config.to_dict(), "objective": objective, "lr": lr, "weight_decay": weight_decay,
            "betas": list(betas), "warmup_steps": warmup_steps, "schedule": schedule,
            "min_lr_ratio": min_lr_ratio, "redraw_interval": redraw_interval, "init_from": init_from,
        })
        self.config = config
        self.objective = objective
        self.schedule_steps: int | None = None
        """Optimizer steps the cosine schedule spans (default: the trainer's estimated run length)."""
        self.model = PerformerLM(config)
        if init_from:
            self.load_model_weights(init_from)
        # Residue counts of the training split (for the unigram baseline); set in setup().
        self.register_buffer("train_token_counts", torch.zeros(len(ALPHABET), dtype=torch.long))
        self.metrics = torch.nn.ModuleDict({
            f"{stage}_{name}": MeanMetric() for stage in ("val", "test") for name in ("loss", "acc")
        })

    def load_model_weights(self, path: str) -> None:
        """Initialise the model from another checkpoint's weights (shapes must match)."""
        from protein_performer.checkpoint import load_checkpoint

        source = load_checkpoint(path)
        try:
            self.model.load_state_dict(source.model.state_dict())
        except RuntimeError as err:
            raise ValueError(f"{path}: model shape differs from this config; --init-from needs the same "
                             f"dim/depth/heads/ff_mult/vocab ({err})") from err
        log.info("initialised %s model from %s (%s attention)", self.config.attention, path,
                 source.config.attention)

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and hasattr(dm, "token_counts") and stage == "fit":
            counts = torch.as_tensor(np.asarray(dm.token_counts("train"), dtype=np.int64))
            self.train_token_counts.copy_(counts.to(self.train_token_counts.device))

    def configure_callbacks(self) -> list[pl.Callback]:
        return [FeatureRedraw(self.hparams.redraw_interval)]

    # ----------------------------------------------------------------- steps and metrics
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        return self.model(input_ids, attention_mask)

    def _shared_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        labels = batch["labels"]
        if stage != "train":  # the scoring definition: residues only (see protein_performer.score)
            labels = residue_targets_only(labels)
        position_ids = batch.get("position_ids") if self.config.aligned_positions else None
        out = self.model(batch["input_ids"], batch.get("attention_mask"), position_ids=position_ids)
        loss_sum, correct, count = lm_metrics(out.logits, labels)
        n = count.clamp_min(1)
        loss = loss_sum / n
        acc = correct.float() / n
        if stage == "train":
            self.log_dict({"train/loss": loss, "train/acc": acc, "train/ppl": torch.exp(loss.detach())},
                          prog_bar=True, batch_size=int(n))
            if self._trainer is not None and self.trainer.optimizers:
                self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=1)
        else:
            self.metrics[f"{stage}_loss"].update(loss.detach(), count)
            self.metrics[f"{stage}_acc"].update(acc.detach(), count)
        return loss

    def training_step(self, batch, batch_idx):
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._shared_step(batch, "test")

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.model.commit_feature_statistics()  # FAVOR++'s running statistic, after the step

    def _log_epoch(self, stage: str) -> None:
        loss = self.metrics[f"{stage}_loss"].compute()
        acc = self.metrics[f"{stage}_acc"].compute()
        self.log_dict({f"{stage}/loss": loss, f"{stage}/acc": acc, f"{stage}/ppl": torch.exp(loss)},
                      prog_bar=stage == "val")
        self.metrics[f"{stage}_loss"].reset()
        self.metrics[f"{stage}_acc"].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    # ----------------------------------------------------------------- optimisation
    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (decay if p.ndim >= 2 and "embed" not in name else no_decay).append(p)
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.hparams.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=self.hparams.lr, betas=tuple(self.hparams.betas),
        )
        warmup = max(0, int(self.hparams.warmup_steps))
        estimated = float(self.trainer.estimated_stepping_batches) if self._trainer else 1.0
        cosine = self.hparams.schedule == "cosine"
        if cosine and not math.isfinite(estimated):
            log.warning("cosine schedule needs a finite run length (set trainer.max_steps or max_epochs); "
                        "using a constant learning rate after warm-up")
            cosine = False
        if self.schedule_steps is None:
            self.schedule_steps = max(1, int(estimated)) if math.isfinite(estimated) else 1
        floor = self.hparams.min_lr_ratio
        # schedule_steps is read every step: a callback may shorten the run.
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_factor(step, warmup, self.schedule_steps if cosine else None, floor))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["alphabet_version"] = ALPHABET_VERSION
        checkpoint["performer_config"] = self.config.to_dict()
        checkpoint["objective"] = self.objective

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        version = checkpoint.get("alphabet_version")
        if version != ALPHABET_VERSION:
            raise ValueError(f"checkpoint alphabet version {version} != {ALPHABET_VERSION}; "
                             "it was trained with a different tokenisation")
