"""Lightning training: :class:`ProteinLM` around :class:`~protein_performer.model.PerformerLM`, and the CLI.

Objectives: ``mlm`` (masked, bidirectional model) and ``clm`` (next token, causal model).
Batches follow the contract of :mod:`protein_performer.datasets`: ``input_ids`` (B, L),
``labels`` (B, L) with -100 where there is no loss, ``attention_mask`` (B, L) True at real tokens.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import sys
import time
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from protein_performer.alphabet import ALPHABET, ALPHABET_VERSION
from protein_performer.datasets import IGNORE_INDEX, OBJECTIVES, residue_targets_only
from protein_performer.model import PerformerConfig, PerformerLM

log = logging.getLogger(__name__)


def redraw_generator(seed: int, step: int) -> torch.Generator:
    """The generator of the redraw at optimizer step ``step``: a pure function of (seed, step),
    so a resumed run draws exactly the projections an uninterrupted run would."""
    digest = hashlib.blake2b(f"{seed}:{step}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


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
        config: the model's shape (:class:`PerformerConfig`).
        objective: ``mlm`` (needs ``config.causal=False``) or ``clm`` (needs ``config.causal=True``).
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay (matrices only; not norms, biases or embeddings).
        betas: AdamW betas.
        warmup_steps: linear warm-up length in optimizer steps.
        schedule: ``cosine`` decay to ``min_lr_ratio * lr`` over the run, or ``constant``.
        min_lr_ratio: final learning rate of the cosine schedule, as a fraction of ``lr``.
        redraw_interval: redraw FAVOR+ projections every N optimizer steps (0: never).
        init_from: a checkpoint (e.g. of an exact-attention model of the same shape) whose model
            weights initialise this one: the Performer paper's backward compatibility.
    """

    def __init__(
        self,
        config: PerformerConfig | dict | None = None,
        objective: Literal["mlm", "clm"] = "mlm",
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
        if isinstance(config, dict):
            config = PerformerConfig(**config)
        config = config or PerformerConfig()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if (objective == "clm") != config.causal:
            raise ValueError(f"objective {objective!r} needs config.causal={objective == 'clm'} "
                             f"(got causal={config.causal}); set model.config.causal accordingly")
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
        self._base_seed = torch.initial_seed()

    # ----------------------------------------------------------------- weights
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
        # The seed set by seed_everything (LightningCLI's seed_everything), before any reseeding.
        self._base_seed = torch.initial_seed()
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and hasattr(dm, "token_counts") and stage == "fit":
            counts = torch.as_tensor(np.asarray(dm.token_counts("train"), dtype=np.int64))
            self.train_token_counts.copy_(counts.to(self.train_token_counts.device))

    # ----------------------------------------------------------------- steps
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        return self.model(input_ids, attention_mask)

    def _shared_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        labels = batch["labels"]
        if stage != "train":  # the scoring definition: residues only (see protein_performer.score)
            labels = residue_targets_only(labels)
        out = self.model(batch["input_ids"], batch.get("attention_mask"))
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

    # ----------------------------------------------------------------- randomness, throughput, redraws
    def on_train_epoch_start(self) -> None:
        # Dropout and any other global randomness restart from (seed, epoch) every epoch, so a run
        # resumed from an epoch-end checkpoint continues bit for bit, whatever ran in between
        # (sanity checks, validation loaders). Data randomness is keyed per sample already.
        seed = int.from_bytes(hashlib.blake2b(f"{self._base_seed}:{self.current_epoch}".encode(),
                                              digest_size=4).digest(), "little")
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        # Lightning numbers sampler epochs by *processed* epochs, which runs ahead of current_epoch
        # after resuming from an epoch-end checkpoint; the data must follow current_epoch. This hook
        # runs after Lightning's set_epoch and before the epoch's loader (and workers) start.
        loader = self.trainer.train_dataloader
        for part in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
                     getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
            if callable(getattr(part, "set_epoch", None)):
                part.set_epoch(self.current_epoch)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self._batch_tokens = int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        elapsed = time.perf_counter() - self._batch_start
        self.log("train/tokens_per_s", self._batch_tokens * self.trainer.world_size / max(elapsed, 1e-9),
                 prog_bar=True, on_step=True, on_epoch=False, batch_size=1)
        self.model.commit_feature_statistics()
        self._maybe_redraw()

    def _maybe_redraw(self) -> None:
        """Redraw projections once every ``redraw_interval`` optimizer steps (after the step)."""
        interval = self.hparams.redraw_interval
        step = self.global_step
        if not interval or self.config.attention == "exact" or step == 0 or step % interval:
            return
        if getattr(self, "_last_redraw", -1) == step:  # gradient accumulation: once per step
            return
        self._last_redraw = step
        self.model.redraw_features(redraw_generator(self.config.feature_seed, step))

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

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            if not cosine:
                return 1.0
            total = self.schedule_steps  # read every step: a callback may shorten the run
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["alphabet_version"] = ALPHABET_VERSION
        checkpoint["performer_config"] = self.config.to_dict()
        checkpoint["objective"] = self.objective
        checkpoint["base_seed"] = self._base_seed

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        version = checkpoint.get("alphabet_version")
        if version != ALPHABET_VERSION:
            raise ValueError(f"checkpoint alphabet version {version} != {ALPHABET_VERSION}; "
                             "it was trained with a different tokenisation")
        self._base_seed = int(checkpoint.get("base_seed", self._base_seed))


def run_lightning_cli(args: list[str]) -> None:
    """``protein-performer fit|validate|test --config configs/X.yaml [overrides]``.

    Relative ``save_dir`` of loggers and ``dirpath`` of checkpoint callbacks are placed under
    ``trainer.default_root_dir``, so ``--trainer.default_root_dir`` moves every run output. The
    data and ``--ckpt_path`` are checked before anything is written, and a run that fails before
    its first optimizer step removes the output folders it created.
    """
    import shutil
    from pathlib import Path

    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.cli import LightningCLI

    from protein_performer.checkpoint import read_checkpoint_file
    from protein_performer.datamodule import ProteinDataModule

    def topmost_missing(path: Path) -> Path:
        """The highest folder of ``path`` that does not exist yet (what a run would create)."""
        while not path.parent.exists():
            path = path.parent
        return path

    def under_root(root: str | None, path: str | None) -> str | None:
        return str(Path(root) / path) if root and path and not Path(path).is_absolute() else path

    class _CLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.link_arguments("model.objective", "data.objective")

        def before_instantiate_classes(self) -> None:
            trainer = (self.config[self.subcommand] if self.subcommand else self.config).trainer
            root = trainer.get("default_root_dir")
            for logger in trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]:
                if getattr(logger, "init_args", None) is not None and "save_dir" in logger.init_args:
                    logger.init_args.save_dir = under_root(root, logger.init_args.save_dir)
            for callback in trainer.get("callbacks") or []:
                if str(getattr(callback, "class_path", "")).endswith("ModelCheckpoint"):
                    callback.init_args.dirpath = under_root(root, callback.init_args.get("dirpath"))

        def _output_dirs(self) -> list[Path]:
            dirs = [self.trainer.default_root_dir, *(lg.save_dir for lg in self.trainer.loggers if lg.save_dir)]
            dirs += [cb.dirpath for cb in self.trainer.callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
            return [Path(d) for d in dirs]

        def _parse_ckpt_path(self) -> None:
            # Lightning reads --ckpt_path first: check it (file named, safe loading) before it does.
            subcommand = self.config.get("subcommand")
            ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
            if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry"):
                read_checkpoint_file(ckpt_path, mmap=True)
            super()._parse_ckpt_path()

        def _run_subcommand(self, subcommand: str) -> None:
            self.datamodule.check(subcommand)  # before loggers or callbacks write anything
            fresh = {topmost_missing(d) for d in self._output_dirs() if not d.exists()}
            try:
                super()._run_subcommand(subcommand)
            except BaseException:
                if subcommand != "fit" or self.trainer.global_step == 0:
                    for folder in fresh:
                        shutil.rmtree(folder, ignore_errors=True)
                raise

        def _prepare_subcommand_kwargs(self, subcommand: str) -> dict:
            kwargs = super()._prepare_subcommand_kwargs(subcommand)
            # Resuming / evaluating from --ckpt_path unpickles only tensors and plain types,
            # unless the user says --weights_only false.
            if "weights_only" in kwargs and kwargs["weights_only"] is None:
                kwargs["weights_only"] = True
            return kwargs

    _CLI(
        ProteinLM,
        ProteinDataModule,
        args=None if args == sys.argv[1:] else args,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        auto_configure_optimizers=False,
    )
