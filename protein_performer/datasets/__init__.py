"""Datasets, samplers and collators that turn prepared shards into training batches (torch + numpy).

Three ways to serve a split (:class:`~protein_performer.corpus.shards.Shard`):

* :class:`ConcatWindowDataset` (:mod:`.stream`) — the Performer paper's setting: proteins joined
  by ``<eos>`` into one stream, cut into non-overlapping windows of ``window_tokens``
  (:class:`~protein_performer.windows.WindowPlan`). Each epoch starts the cut at a fresh random
  offset, so window boundaries move between epochs.
* :class:`ProteinDataset` (:mod:`.proteins`) — one protein per sample, framed ``<cls> seq <eos>``
  by :meth:`~protein_performer.alphabet.Alphabet.frame`, long proteins cropped; batch it with
  :class:`TokenBudgetBatchSampler` (:mod:`.samplers`; ESM-style: sort by length, fill a token
  budget, the one batcher :func:`token_budget_batches` that ``embed`` uses too).
* :class:`FamilyWindowDataset` (:mod:`.family_windows`) — one protein family (``prepare --family``):
  members drawn by sequence weight, each framed ``<cls> seq <eos>``, joined into windows of
  ``window_tokens``.

Collators (:mod:`.collate`: :class:`MLMCollator`, :class:`CLMCollator`) pad samples and return the
batch contract::

    input_ids       LongTensor (B, L)
    labels          LongTensor (B, L), -100 where there is no loss
    attention_mask  BoolTensor (B, L), True at real (non-pad) tokens

:func:`collate_proteins` returns the same padding without ``labels``: the input of ``embed``,
``similarity`` and ``attention``.

Randomness (window offsets, crops, masks) is drawn from ``np.random.SeedSequence([seed, epoch,
index])`` (:func:`~.samples.seeded_rng`), so it depends on neither the number of workers nor the
rank that serves a sample. The epoch reaches worker processes through :meth:`set_epoch`, which
:class:`EpochSampler` calls when Lightning calls the sampler's ``set_epoch`` (before the epoch's
workers start). :mod:`.samples` holds what they all share: :class:`Sample`, ``IGNORE_INDEX``, the
objectives.
"""

from protein_performer.datasets.collate import (
    CLMCollator,
    MLMCollator,
    collate_proteins,
    scoring_collator,
)
from protein_performer.datasets.family_windows import (
    FamilyWindowDataset,
    family_window,
    framed_positions,
    weighted_order,
)
from protein_performer.datasets.proteins import ProteinDataset
from protein_performer.datasets.samplers import (
    BatchOrder,
    EpochSampler,
    Oversize,
    TokenBudgetBatchSampler,
    token_budget_batches,
)
from protein_performer.datasets.samples import (
    FIRST_RESIDUE,
    IGNORE_INDEX,
    OBJECTIVES,
    SCORE_MASK_PROB,
    STANDARD_HIGH,
    STANDARD_LOW,
    Sample,
    check_objective,
    residue_targets_only,
)
from protein_performer.datasets.stream import (
    ConcatWindowDataset,
    windows_from_sequences,
)

__all__ = [
    "BatchOrder", "CLMCollator", "ConcatWindowDataset", "EpochSampler", "FIRST_RESIDUE", "FamilyWindowDataset",
    "IGNORE_INDEX", "MLMCollator", "OBJECTIVES", "Oversize", "ProteinDataset", "SCORE_MASK_PROB", "STANDARD_HIGH",
    "STANDARD_LOW", "Sample", "TokenBudgetBatchSampler", "check_objective", "collate_proteins", "family_window",
    "framed_positions", "residue_targets_only", "scoring_collator", "token_budget_batches", "weighted_order",
    "windows_from_sequences",
]
