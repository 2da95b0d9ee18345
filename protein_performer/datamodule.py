"""``ProteinDataModule``: train/valid/test dataloaders over a prepared dataset (see ``corpus/shards.py``).

Every batch follows the contract of :mod:`protein_performer.datasets`: ``input_ids`` (B, L) long,
``labels`` (B, L) long with -100 where there is no loss, ``attention_mask`` (B, L) bool.

Training windows (``mode="concat"``) move each epoch: the train sampler is an
:class:`~protein_performer.datasets.EpochSampler`, a ``DistributedSampler`` (so Lightning keeps
it under DDP instead of injecting its own) whose ``set_epoch`` — called by Lightning before
each epoch's workers start — also draws the dataset's new window offset; a fit resumed from a
checkpoint written inside an epoch is served that epoch's remaining batches. Validation and test use
offset 0, ``crop="start"`` and deterministic masking with ``mask_token_prob=1.0`` (the
definition of ``protein-performer score``), so their metrics compare across runs.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from protein_performer.alphabet import ALPHABET
from protein_performer.cli_args import deprecation_message
from protein_performer.corpus.shards import MANIFEST, SPLITS, open_split, read_manifest
from protein_performer.datasets import (
    CLMCollator,
    ConcatWindowDataset,
    EpochSampler,
    FamilyWindowDataset,
    MLMCollator,
    ProteinDataset,
    TokenBudgetBatchSampler,
    check_objective,
    scoring_collator,
)

log = logging.getLogger(__name__)

MODES = ("concat", "protein", "family")
FORMER_NAMES = {"max_length": "window_tokens"}
"""Former names of :class:`ProteinDataModule` arguments (``data.*`` keys of older runs' configs and
checkpoints) -> their names now. A former name still sets the value, with a warning."""
_STAGE_SPLITS = {"fit": ("train", "valid"), "validate": ("valid",), "test": ("test",), "predict": ("test",)}


class _SeedWorker:
    """``worker_init_fn``: seeds torch, numpy and ``random`` in a worker from (seed, rank, worker id)."""

    def __init__(self, seed: int, rank: int) -> None:
        self.seed, self.rank = seed, rank

    def __call__(self, worker_id: int) -> None:
        state = np.random.SeedSequence([self.seed, self.rank, worker_id]).generate_state(2)
        torch.manual_seed(int(state[0]))
        np.random.seed(int(state[1]))
        random.seed(int(state[1]))


class ProteinDataModule(pl.LightningDataModule):
    """Serves a prepared dataset (``protein-performer prepare``) for masked or causal LM training.

    Args:
        data_dir: Directory written by ``protein-performer prepare`` (holds ``manifest.json`` and
            the ``train``/``valid``/``test`` splits).
        objective: ``"mlm"`` (masked LM) or ``"clm"`` (causal LM, shifted labels).
        mode: ``"concat"``: proteins joined by ``<eos>`` and cut into windows of ``window_tokens``;
            ``"protein"``: one ``<cls> protein <eos>`` per sample, cropped to ``window_tokens``;
            ``"family"``: a family dataset's members drawn by sequence weight into windows of
            ``window_tokens`` (:class:`~protein_performer.datasets.FamilyWindowDataset`).
        window_tokens: Tokens per window, special tokens included (concat, family) or of the
            longest sample (protein).
        batch_size: Samples per batch (ignored when ``token_budget`` is set).
        token_budget: Protein mode only: batch proteins sorted by length so that
            ``longest * count <= token_budget`` (ESM-style); None uses ``batch_size``.
        mask_prob: MLM training: share of residues selected for the loss (validation and test
            always hide ``SCORE_MASK_PROB`` = 15%, the scoring definition).
        mask_token_prob: MLM training: share of selected residues replaced by ``<mask>``.
        random_token_prob: MLM training: share of selected residues replaced by a random amino acid.
        num_workers: DataLoader worker processes (0: load in the main process).
        seed: Seed of window offsets, crops, masks, shuffling and workers.
        limit_windows: Cap on training and validation samples per epoch (quick runs); None: all.
            The test split is always served whole.
        max_length: Deprecated: the former name of ``window_tokens`` (configs and checkpoints of
            older runs); when set, it is used instead of ``window_tokens``, with a warning.
    """

    def __init__(
        self,
        data_dir: str,
        objective: str = "mlm",
        mode: str = "concat",
        window_tokens: int = 8192,
        batch_size: int = 1,
        token_budget: int | None = None,
        mask_prob: float = 0.15,
        mask_token_prob: float = 0.8,
        random_token_prob: float = 0.1,
        num_workers: int = 0,
        seed: int = 0,
        limit_windows: int | None = None,
        max_length: int | None = None,
    ) -> None:
        super().__init__()
        if max_length is not None:  # an older run's checkpoint (the CLI renames it in configs: rename_former_keys)
            window_tokens = _renamed("max_length", max_length)  # before save_hyperparameters records it
        check_objective(objective)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if window_tokens < (3 if mode == "protein" else 2):
            raise ValueError(f"window_tokens must be >= {3 if mode == 'protein' else 2}, got {window_tokens}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if token_budget is not None:
            if mode != "protein":
                raise ValueError("token_budget batches whole proteins: use it with mode='protein' "
                                 "(concat windows all have window_tokens tokens; set batch_size instead)")
            if token_budget < window_tokens:
                raise ValueError(f"token_budget ({token_budget}) must be >= window_tokens ({window_tokens}) "
                                 "so that the longest (cropped) protein fits in a batch")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if limit_windows is not None and limit_windows < 1:
            raise ValueError(f"limit_windows must be >= 1 or null, got {limit_windows}")
        if objective == "mlm":  # checks the probabilities now rather than at the first batch
            MLMCollator(mask_prob, mask_token_prob, random_token_prob, seed=seed)
        self.save_hyperparameters(ignore=["max_length"])
        self.data_dir = Path(data_dir)
        self.objective, self.mode, self.window_tokens = objective, mode, window_tokens
        self.batch_size, self.token_budget, self.num_workers = batch_size, token_budget, num_workers
        self.mask_prob, self.mask_token_prob, self.random_token_prob = mask_prob, mask_token_prob, random_token_prob
        self.seed, self.limit_windows = seed, limit_windows
        self._datasets: dict[str, Dataset] = {}

    # ------------------------------------------------------------------ data

    def _check_data_dir(self) -> dict:
        if not (self.data_dir / MANIFEST).is_file():
            raise FileNotFoundError(
                f"data_dir {self.data_dir}: no prepared dataset there ({MANIFEST} missing); "
                f"run `protein-performer prepare FASTA --out {self.data_dir}` first, "
                "or point data.data_dir at a prepared directory"
            )
        return read_manifest(self.data_dir)

    def token_counts(self, split: str = "train") -> np.ndarray:
        """Residue counts per token id, ``int64[len(ALPHABET)]``, from the manifest (unigram baseline)."""
        manifest = self._check_data_dir()
        try:
            counts = manifest["splits"][split]["token_counts"]
        except KeyError as err:
            raise ValueError(f"{self.data_dir / MANIFEST}: no token_counts for split {split!r}; "
                             "prepare the data again with this version") from err
        out = np.zeros(len(ALPHABET), dtype=np.int64)
        if isinstance(counts, dict):  # keyed by token ("A") or by id ("5")
            for key, value in counts.items():
                out[int(key) if str(key).isdigit() else ALPHABET.index(key)] = int(value)
        else:
            if len(counts) > len(ALPHABET):
                raise ValueError(f"{self.data_dir / MANIFEST}: {len(counts)} token counts for an alphabet "
                                 f"of {len(ALPHABET)}; prepare the data again with this version")
            out[: len(counts)] = counts
        return out

    def _make_dataset(self, split: str) -> Dataset:
        shard = open_split(self.data_dir, split)
        train = split == "train"
        limit = None if split == "test" else self.limit_windows
        if self.mode == "concat":
            return ConcatWindowDataset(shard, self.window_tokens, seed=self.seed, random_offset=train, limit=limit)
        if self.mode == "family":
            return FamilyWindowDataset(shard, self.window_tokens, seed=self.seed, random=train, limit=limit)
        crop = "random" if train else "start"
        return ProteinDataset(shard, self.window_tokens, crop=crop, seed=self.seed, limit=limit)

    def check(self, stage: str | None = None) -> None:
        """Open the splits ``stage`` needs (sizes, token range and sha256, each file hashed once per
        version: see :func:`~protein_performer.corpus.shards.verify_split`; no datasets built); raises
        naming the file. The CLI calls it before a run writes anything."""
        self._check_data_dir()
        for split in _STAGE_SPLITS.get(stage or "", SPLITS):
            open_split(self.data_dir, split)

    def setup(self, stage: str | None = None) -> None:
        self._check_data_dir()
        for split in _STAGE_SPLITS.get(stage or "", SPLITS):
            size = len(self.dataset(split))  # type: ignore[arg-type]
            log.info("%s: %d samples (%s, window_tokens %d)", split, size, self.mode, self.window_tokens)

    def dataset(self, split: str) -> Dataset:
        """The dataset of ``split`` (``train``/``valid``/``test``), opened on first use."""
        if split not in self._datasets:
            self._check_data_dir()
            self._datasets[split] = self._make_dataset(split)
        return self._datasets[split]

    # ------------------------------------------------------------------ loaders

    def _collator(self, train: bool) -> MLMCollator | CLMCollator:
        if train and self.objective == "mlm":
            return MLMCollator(self.mask_prob, self.mask_token_prob, self.random_token_prob, seed=self.seed)
        return scoring_collator(self.objective, self.seed)

    def _layout(self) -> tuple[int, int]:
        """(world size, global rank) of the attached trainer; (1, 0) without one."""
        if self.trainer is None:
            return 1, 0
        return self.trainer.world_size, self.trainer.global_rank

    def _loader(self, split: str) -> DataLoader:
        dataset = self.dataset(split)
        train = split == "train"
        num_replicas, rank = self._layout()
        common = dict(
            collate_fn=self._collator(train),
            num_workers=self.num_workers,
            worker_init_fn=_SeedWorker(self.seed, rank),
            # Not persistent: workers must be started after set_epoch to see the new epoch.
            persistent_workers=False,
        )
        if self.token_budget is not None:
            sampler = EpochSampler(dataset, num_replicas, rank, shuffle=True, seed=self.seed) if train else (
                SequentialSampler(dataset))
            lengths = _served_lengths(dataset)
            batches = TokenBudgetBatchSampler(sampler, lengths, self.token_budget, shuffle=train, seed=self.seed)
            return DataLoader(dataset, batch_sampler=batches, **common)
        if train:
            sampler = EpochSampler(dataset, num_replicas, rank, shuffle=True, seed=self.seed)
            return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, **common)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, **common)

    def train_dataloader(self) -> DataLoader:
        loader = self._loader("train")
        resumed = self._resumed_mid_epoch()
        if resumed is not None:  # continue the epoch where the checkpoint left it, not from its start
            epoch, batches = resumed
            if isinstance(loader.batch_sampler, TokenBudgetBatchSampler):
                loader.batch_sampler.resume(epoch, batches)
            else:
                loader.sampler.resume(epoch, batches * self.batch_size)
            log.info("resuming epoch %d after its first %d batches", epoch, batches)
        return loader

    def _resumed_mid_epoch(self) -> tuple[int, int] | None:
        """(epoch, batches it had served) when the attached trainer resumes ``fit`` from a checkpoint
        written inside an epoch (Lightning restarts such an epoch's loader from its first batch)."""
        loop = getattr(self.trainer, "fit_loop", None)
        if loop is None or not loop.restarting:
            return None
        epochs, done = loop.epoch_progress.total, loop.epoch_loop.batch_progress.current.processed
        if done == 0 or epochs.processed != epochs.started - 1:  # not inside an epoch
            return None
        return self.trainer.current_epoch, done

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


def _renamed(old: str, value: object) -> object:
    """``value``, given under the former name ``old``; logs that ``data.{old}`` is deprecated."""
    log.warning("%s", deprecation_message("protein-performer fit, validate and test", f"data.{old}",
                                          f"data.{FORMER_NAMES[old]}", value))
    return value


def rename_former_keys(data) -> None:
    """Move values set under a former name (:data:`FORMER_NAMES`) in the ``data`` section of a parsed
    config (a ``dict`` or jsonargparse ``Namespace``) to their names now, before the data module is
    built, so that its saved hyper-parameters and the run's config hold the new name. The value set
    under the former name wins: base.yaml always sets the new one."""
    for old, new in FORMER_NAMES.items():
        if data.get(old) is not None:
            data[new], data[old] = _renamed(old, data[old]), None


def _served_lengths(dataset: Dataset) -> np.ndarray:
    return dataset.served_lengths  # type: ignore[attr-defined]
