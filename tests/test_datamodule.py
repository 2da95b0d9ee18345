"""ProteinDataModule: the batch contract, argument checks, epochs under Lightning, real E. coli data."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.data import _replace_dunder_methods, _set_sampler_epoch
from pytorch_lightning.utilities.data import _update_dataloader
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from protein_performer.alphabet import ALPHABET
from protein_performer.datamodule import ProteinDataModule
from protein_performer.datasets import (FIRST_RESIDUE, IGNORE_INDEX, ConcatWindowDataset, EpochSampler,
                                     TokenBudgetBatchSampler)
from shard_utils import random_proteins, read_fasta_tokens, split_proteins, write_prepared_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    splits = {split: random_proteins(rng, n, min_len=1, max_len=300) for split, n in
              (("train", 300), ("valid", 40), ("test", 40))}
    return write_prepared_dataset(tmp_path_factory.mktemp("prepared"), splits)


@pytest.fixture(scope="module")
def ecoli_dir(ecoli_fasta, tmp_path_factory):
    proteins = read_fasta_tokens(ecoli_fasta)
    return write_prepared_dataset(tmp_path_factory.mktemp("ecoli"), split_proteins(proteins, seed=0))


def check_contract(batch: dict, window_tokens: int) -> None:
    assert set(batch) == {"input_ids", "labels", "attention_mask"}
    ids, labels, attn = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.dtype == torch.long and labels.dtype == torch.long and attn.dtype == torch.bool
    assert ids.ndim == 2 and ids.shape == labels.shape == attn.shape and ids.shape[1] <= window_tokens
    assert torch.equal(attn, ids != ALPHABET.pad_idx)
    assert (labels[~attn] == IGNORE_INDEX).all(), "no loss on padding"
    assert ((labels == IGNORE_INDEX) | (labels >= ALPHABET.eos_idx)).all()
    assert (labels != IGNORE_INDEX).any()


@pytest.mark.parametrize("objective", ["mlm", "clm"])
@pytest.mark.parametrize("mode,kwargs", [("concat", {"batch_size": 2}), ("protein", {"batch_size": 4}),
                                         ("protein", {"token_budget": 1024})])
def test_batches_follow_the_contract(data_dir, objective, mode, kwargs):
    dm = ProteinDataModule(str(data_dir), objective=objective, mode=mode, window_tokens=512, **kwargs)
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        n = 0
        for batch in loader:
            check_contract(batch, 512)
            if "token_budget" in kwargs:
                assert batch["input_ids"].numel() <= 1024
            n += 1
        assert n == len(loader)
    batch = next(iter(dm.train_dataloader()))
    if objective == "clm":
        ids, labels = batch["input_ids"], batch["labels"]
        keep = labels[:, :-1] != IGNORE_INDEX
        assert torch.equal(labels[:, :-1][keep], ids[:, 1:][keep])
    if mode == "protein":
        assert (batch["input_ids"][:, 0] == ALPHABET.cls_idx).all()


def test_validation_is_deterministic_and_uses_the_score_setting(data_dir):
    def first_val(seed):
        dm = ProteinDataModule(str(data_dir), window_tokens=256, seed=seed)
        return next(iter(dm.val_dataloader()))

    a, b = first_val(0), first_val(0)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    selected = a["labels"] != IGNORE_INDEX
    assert (a["input_ids"][selected] == ALPHABET.mask_idx).all()
    assert not torch.equal(a["labels"], first_val(1)["labels"])
    dm = ProteinDataModule(str(data_dir), window_tokens=256)
    assert dm.dataset("valid").offset == 0 and dm.dataset("test").offset == 0


def test_epoch_reaches_workers(data_dir):
    """Lightning's set_epoch on the train sampler moves windows, also inside worker processes."""
    dm = ProteinDataModule(str(data_dir), objective="clm", window_tokens=256, batch_size=4, num_workers=2, seed=3)
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, EpochSampler)
    for epoch in (0, 1):
        _set_sampler_epoch(loader, epoch)
        served = {bytes(row.numpy().astype(np.uint8)) for batch in loader for row in batch["input_ids"]}
        reference = ConcatWindowDataset(dm.dataset("train").shard, 256, seed=3, epoch=epoch)
        assert served == {bytes(reference[i].tokens) for i in range(len(reference))}


class _Recorder(pl.LightningModule):
    """A minimal model that records the windows it trains on, per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(len(ALPHABET), 4)
        self.head = torch.nn.Linear(4, len(ALPHABET))
        self.seen: dict[int, set[bytes]] = {}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        for row in batch["input_ids"]:
            self.seen.setdefault(self.current_epoch, set()).add(bytes(row.numpy().astype(np.uint8)))
        logits = self.head(self.embed(batch["input_ids"]))  # (B, L, V)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_windows_move_between_epochs_under_trainer(data_dir):
    dm = ProteinDataModule(str(data_dir), objective="clm", window_tokens=128, batch_size=8, seed=1, limit_windows=16)
    model = _Recorder()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    shard = dm.dataset("train").shard
    for epoch in (0, 1):
        reference = ConcatWindowDataset(shard, 128, seed=1, epoch=epoch, limit=16)
        assert model.seen[epoch] == {bytes(reference[i].tokens) for i in range(16)}
    assert model.seen[0] != model.seen[1]
    assert dm.hparams["window_tokens"] == 128 and dm.hparams["data_dir"] == str(data_dir)


def test_limit_windows_caps_proteins_in_protein_mode(data_dir):
    dm = ProteinDataModule(str(data_dir), mode="protein", window_tokens=128, token_budget=512, limit_windows=50)
    train, test = dm.dataset("train"), dm.dataset("test")
    assert len(train) == 50 and len(test) == 40  # the test split is always served whole
    served = sorted(i for batch in dm.train_dataloader().batch_sampler for i in batch)
    assert served == list(range(50))
    np.testing.assert_array_equal(train.served_lengths, np.minimum(train.shard.lengths[:50] + 2, 128))


def test_argument_errors(tmp_path, data_dir):
    dm = ProteinDataModule(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="protein-performer prepare"):
        dm.setup("fit")
    for kwargs, match in [({"objective": "mlmx"}, "objective"), ({"mode": "window"}, "mode"),
                          ({"token_budget": 4096}, "mode='protein'"),
                          ({"mode": "protein", "token_budget": 100, "window_tokens": 512}, "token_budget"),
                          ({"mask_prob": 1.5}, "mask_prob"), ({"batch_size": 0}, "batch_size"),
                          ({"limit_windows": 0}, "limit_windows")]:
        with pytest.raises(ValueError, match=match):
            ProteinDataModule(str(data_dir), **kwargs)


DEPRECATED = "data.max_length is deprecated and will be removed in the next release"


def test_the_former_name_max_length_still_sets_window_tokens_with_a_warning(data_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="protein_performer.datamodule"):
        dm = ProteinDataModule(str(data_dir), max_length=128)
    assert dm.window_tokens == 128 and len(dm.dataset("train")[0].tokens) == 128
    assert dm.hparams["window_tokens"] == 128 and "max_length" not in dm.hparams  # checkpoints record the new name
    assert (f"{DEPRECATED}; in protein-performer fit, validate and test it is data.window_tokens, counted in tokens: "
            "use data.window_tokens 128") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="protein_performer.datamodule"):
        assert ProteinDataModule(str(data_dir), window_tokens=128).window_tokens == 128
    assert DEPRECATED not in caplog.text


def test_a_checkpoint_with_the_former_hyper_parameter_name_loads(data_dir, tmp_path, caplog):
    """Checkpoints of older runs hold ``max_length`` among the datamodule's hyper-parameters."""
    old = {"data_dir": str(data_dir), "objective": "clm", "mode": "concat", "max_length": 96, "batch_size": 3}
    path = tmp_path / "old.ckpt"
    torch.save({"pytorch-lightning_version": pl.__version__, "datamodule_hyper_parameters": old}, path)
    with caplog.at_level(logging.WARNING, logger="protein_performer.datamodule"):
        dm = ProteinDataModule.load_from_checkpoint(path, weights_only=True)
    assert (dm.window_tokens, dm.objective, dm.batch_size) == (96, "clm", 3) and DEPRECATED in caplog.text
    assert dm.hparams["window_tokens"] == 96 and "max_length" not in dm.hparams


def test_token_counts(data_dir):
    dm = ProteinDataModule(str(data_dir))
    counts = dm.token_counts("train")
    tokens = np.asarray(dm.dataset("train").shard.tokens)
    assert counts.shape == (len(ALPHABET),) and counts.dtype == np.int64
    np.testing.assert_array_equal(counts, np.bincount(tokens, minlength=len(ALPHABET)))
    assert counts[:FIRST_RESIDUE].sum() == 0


def test_ecoli_through_the_datamodule(ecoli_dir):
    dm = ProteinDataModule(str(ecoli_dir), window_tokens=8192, seed=0)
    dm.setup("fit")
    train = dm.dataset("train")
    shard = train.shard
    assert len(shard) > 3000, "E. coli K-12 has ~4400 proteins; 90% train"
    assert len(train) == -(-(len(shard.tokens) + len(shard)) // 8192)  # residues + one <eos> each
    masked, residues = 0, 0
    for i, batch in enumerate(dm.train_dataloader()):
        check_contract(batch, 8192)
        assert batch["input_ids"].shape == (1, 8192)
        masked += int((batch["labels"] != IGNORE_INDEX).sum())
        residues += int(((batch["labels"] != IGNORE_INDEX) | (batch["input_ids"] >= FIRST_RESIDUE)).sum())
        if i == 20:
            break
    assert abs(masked / residues - 0.15) < 0.01
    check_contract(next(iter(dm.val_dataloader())), 8192)
    counts = dm.token_counts()
    assert counts.sum() == len(train.shard.tokens) and counts[ALPHABET.index("L")] == counts.max()


def _rank_loader(data_dir, rank: int, **kwargs):
    """A train loader as rank ``rank`` of 2 sees it: our sampler, or Lightning's injected one."""
    dm = ProteinDataModule(str(data_dir), seed=0, **kwargs)
    dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)  # what DDP's trainer reports
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = dm.train_dataloader()  # as Lightning requests it, recording init args
    if not isinstance(loader.sampler, DistributedSampler):  # Lightning's DDP injection
        loader = _update_dataloader(loader, DistributedSampler(loader.dataset, 2, rank, shuffle=True, seed=0))
    return loader


@pytest.mark.parametrize("kwargs", [{"window_tokens": 256, "batch_size": 2},
                                    {"mode": "protein", "window_tokens": 128, "token_budget": 512}])
def test_ranks_see_disjoint_samples(data_dir, kwargs):
    seen = []
    for rank in range(2):
        loader = _rank_loader(data_dir, rank, **kwargs)
        _set_sampler_epoch(loader, 1)
        assert loader.dataset.epoch == 1
        seen.append([list(indices) for indices in loader.batch_sampler])
    assert len(seen[0]) == len(seen[1]), "equal batch counts keep DDP in step"
    flat = [{i for batch in rank_batches for i in batch} for rank_batches in seen]
    n = len(loader.dataset)
    assert flat[0] | flat[1] == set(range(n))
    largest = max(len(batch) for rank_batches in seen for batch in rank_batches)
    assert len(flat[0] & flat[1]) <= largest, "only the padding that evens out ranks repeats"
    if "token_budget" in kwargs:  # Lightning re-created our batch sampler around its sampler
        assert isinstance(loader.batch_sampler, TokenBudgetBatchSampler) and loader.batch_sampler.num_replicas == 2
