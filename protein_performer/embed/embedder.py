"""The :class:`Embedder`: per-protein (and per-residue) states of a trained model, in memory.

Each protein is framed ``<cls> sequence <eos>`` (:meth:`~protein_performer.alphabet.Alphabet.frame`);
its embedding at a hidden layer is the mean over its residues (the two special tokens are
excluded). Proteins are sorted by length and packed, longest first, into batches of at most
``token_budget`` padded tokens (:func:`~protein_performer.datasets.token_budget_batches`, as ESM's
``extract.py``) and padded by :func:`~protein_performer.datasets.collate_proteins`. A protein
longer than ``window_residues`` residues (default: whatever fits one batch, ``token_budget - 2``) is
embedded in overlapping windows of ``window_residues`` residues (:func:`residue_windows`, planned by
:class:`~protein_performer.windows.WindowPlan`), each framed ``<cls> … <eos>``; per-residue states
are averaged over every window that reads a residue (no single window owns it), and the protein
is marked ``windowed``. Nothing is truncated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from protein_performer.alphabet import ALPHABET
from protein_performer.datasets import collate_proteins, token_budget_batches
from protein_performer.embed.inputs import ProteinInput, as_inputs
from protein_performer.model import PerformerLM, layer_index
from protein_performer.windows import WindowPlan

log = logging.getLogger(__name__)

DEFAULT_TOKEN_BUDGET = 8192
DEFAULT_WINDOW_OVERLAP = 128


@dataclass
class ProteinEmbedding:
    """Embeddings of one protein. Layer keys are non-negative (ESM convention: ``depth`` = final)."""

    id: str
    header: str
    sequence: str
    mean: dict[int, np.ndarray]
    """Layer -> (dim,) mean over residues."""
    per_residue: dict[int, np.ndarray] | None = None
    """Layer -> (L, dim), when asked for."""
    windowed: bool = False
    """True when the protein was embedded in overlapping windows (longer than window_residues)."""

    def __len__(self) -> int:
        return len(self.sequence)


@dataclass
class EmbeddingResult:
    """What :meth:`Embedder.embed` returns: embeddings by id, in input order."""

    layers: tuple[int, ...]
    proteins: dict[str, ProteinEmbedding] = field(default_factory=dict)

    def __getitem__(self, protein_id: str) -> ProteinEmbedding:
        return self.proteins[protein_id]

    def __len__(self) -> int:
        return len(self.proteins)

    def __iter__(self) -> Iterator[str]:
        return iter(self.proteins)

    def means(self, layer: int | None = None) -> dict[str, np.ndarray]:
        """``{id: (dim,) mean embedding}`` at ``layer`` (default: the first layer asked for)."""
        layer = self.layers[0] if layer is None else layer
        return {pid: p.mean[layer] for pid, p in self.proteins.items()}

    def matrix(self, layer: int | None = None) -> np.ndarray:
        """(N, dim) mean embeddings in input order."""
        return np.stack(list(self.means(layer).values()))


@dataclass(frozen=True)
class _Piece:
    """A framed stretch of one protein: the whole protein or one window of it."""

    protein: int
    """Index of the protein in its chunk."""
    start: int
    """First residue (0-based) covered."""
    tokens: np.ndarray
    """``<cls> residues <eos>`` as token ids (:meth:`~protein_performer.alphabet.Alphabet.frame`)."""


def residue_windows(length: int, window: int, overlap: int) -> WindowPlan:
    """Windows of ``window`` residues covering ``length`` with at least ``overlap`` shared; the last
    window ends at the protein's end (the :class:`~protein_performer.windows.WindowPlan` of ``embed``)."""
    return WindowPlan(length, window, overlap, tail="full")


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Starts of :func:`residue_windows` (``[0]`` for a protein that fits one window)."""
    return [w.start for w in residue_windows(max(length, 1), window, overlap)]


class Embedder:
    """Embeds proteins with a :class:`PerformerLM` (in eval mode, no gradients).

    Args:
        model: the language model.
        layers: hidden layers to return (0 = embeddings, negatives from the end; default final).
        per_residue: also return (L, dim) states.
        token_budget: padded tokens per batch.
        window_residues: longest protein (residues) embedded whole; default ``token_budget - 2``.
        window_overlap: residues shared by consecutive windows of a longer protein
            (default ``min(128, window_residues // 4)``).
    """

    def __init__(
        self,
        model: PerformerLM,
        *,
        layers: Sequence[int] = (-1,),
        per_residue: bool = False,
        token_budget: int = DEFAULT_TOKEN_BUDGET,
        window_residues: int | None = None,
        window_overlap: int | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)
        depth = model.config.depth
        self.layers = tuple(dict.fromkeys(layer_index(i, depth) for i in layers))  # ESM: non-negative keys
        if not self.layers:
            raise ValueError("no layers asked for; pass e.g. --layers -1")
        self.per_residue = per_residue
        self.token_budget = int(token_budget)
        self.window_residues = int(window_residues) if window_residues else self.token_budget - 2
        if window_overlap is None:
            window_overlap = min(DEFAULT_WINDOW_OVERLAP, self.window_residues // 4)
        self.window_overlap = int(window_overlap)
        if self.token_budget < 3 or self.window_residues < 1:
            raise ValueError(f"--token-budget {token_budget} / --window-residues {window_residues} too small")
        if not 0 <= self.window_overlap < self.window_residues:
            raise ValueError(f"--window-overlap {window_overlap} must be in [0, --window-residues "
                             f"{self.window_residues})")
        if self.window_residues + 2 > model.config.max_position and model.config.position == "learned":
            raise ValueError(f"--window-residues {self.window_residues} exceeds the model's max_position "
                             f"{model.config.max_position}; pass --window-residues {model.config.max_position - 2}")
        log.debug("embedder: layers %s of %d, budget %d, window residues %d", self.layers, depth,
                  self.token_budget, self.window_residues)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs) -> "Embedder":
        """An embedder around the model of a ``ProteinLM`` checkpoint (keyword args as ``__init__``)."""
        from protein_performer.checkpoint import load_checkpoint

        return cls(load_checkpoint(path).model, **kwargs)

    def embed(self, source: str | Path | Iterable, unknown: str = "error") -> EmbeddingResult:
        """Embed a FASTA path, ``(id, sequence)`` pairs or plain sequences, all in memory."""
        result = EmbeddingResult(self.layers)
        inputs = list(as_inputs(source, unknown))
        for batch in self.embed_iter(inputs):
            result.proteins.update((emb.id, emb) for emb in batch)
        result.proteins = {p.id: result.proteins[p.id] for p in inputs if p.id in result.proteins}
        return result

    def embed_iter(self, inputs: Iterable[ProteinInput], chunk_tokens: int | None = None
                   ) -> Iterator[list[ProteinEmbedding]]:
        """Yield finished proteins batch by batch (for writers that flush as they go).

        Inputs are read in chunks of about ``chunk_tokens`` residues (default 16 budgets), sorted
        by length within a chunk, so memory stays bounded on a whole proteome.
        """
        chunk_tokens = chunk_tokens or 16 * self.token_budget
        chunk: list[ProteinInput] = []
        size = 0
        for item in inputs:
            chunk.append(item)
            size += len(item.sequence) + 2
            if size >= chunk_tokens:
                yield from self._embed_chunk(chunk)
                chunk, size = [], 0
        if chunk:
            yield from self._embed_chunk(chunk)

    def _embed_chunk(self, chunk: list[ProteinInput]) -> Iterator[list[ProteinEmbedding]]:
        pieces: list[_Piece] = []
        for i, item in enumerate(chunk):
            try:
                residues = ALPHABET.encode(item.sequence)
            except ValueError as err:
                raise ValueError(f"protein {item.id!r}: {err}; use --unknown x to map it to X") from err
            if residues.size == 0:
                raise ValueError(f"protein {item.id!r}: empty sequence")
            for w in residue_windows(residues.size, self.window_residues, self.window_overlap):
                pieces.append(_Piece(i, w.start, ALPHABET.frame(residues[w.start : w.stop])))
        pending = {i: sum(p.protein == i for p in pieces) for i in range(len(chunk))}
        # Per-residue sums and coverage counts of proteins whose windows are not all done yet.
        sums: dict[int, np.ndarray] = {}
        cover: dict[int, np.ndarray] = {}
        lengths = [p.tokens.size for p in pieces]
        for batch in token_budget_batches(lengths, self.token_budget, order="longest_first", oversize="alone"):
            states = self._forward([pieces[j] for j in batch])  # per piece: (n_layers, n, dim)
            done: list[ProteinEmbedding] = []
            for j, st in zip(batch, states):
                piece = pieces[j]
                n_res = len(chunk[piece.protein].sequence)
                if piece.protein not in sums:
                    sums[piece.protein] = np.zeros((len(self.layers), n_res, st.shape[-1]), np.float32)
                    cover[piece.protein] = np.zeros(n_res, np.float32)
                sums[piece.protein][:, piece.start : piece.start + st.shape[1]] += st
                cover[piece.protein][piece.start : piece.start + st.shape[1]] += 1
                pending[piece.protein] -= 1
                if pending[piece.protein] == 0:
                    done.append(self._finish(chunk[piece.protein], sums.pop(piece.protein),
                                             cover.pop(piece.protein)))
            if done:
                yield done

    @torch.no_grad()
    def _forward(self, pieces: list[_Piece]) -> list[np.ndarray]:
        """Residue states (n_layers, n_residues, dim) of each piece; specials dropped."""
        batch = collate_proteins([p.tokens for p in pieces])  # (B, L) ids and mask
        out = self.model(batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device),
                         return_layers=self.layers)
        stacked = torch.stack([out.hidden_states[k] for k in self.layers], dim=1)  # (B, n_layers, L, dim)
        stacked = stacked.float().cpu().numpy()
        return [stacked[b, :, 1 : p.tokens.size - 1] for b, p in enumerate(pieces)]

    def _finish(self, item: ProteinInput, sums: np.ndarray, cover: np.ndarray) -> ProteinEmbedding:
        states = sums / cover[None, :, None]  # (n_layers, L, dim): overlaps averaged
        return ProteinEmbedding(
            id=item.id, header=item.header or item.id, sequence=item.sequence,
            mean={layer: states[k].mean(axis=0) for k, layer in enumerate(self.layers)},
            per_residue={layer: states[k] for k, layer in enumerate(self.layers)} if self.per_residue else None,
            windowed=len(item.sequence) > self.window_residues,
        )
