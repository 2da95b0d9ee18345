"""Per-protein (and per-residue) embeddings from a trained model: the Python API and ``embed``.

Each protein is framed ``<cls> sequence <eos>``; its embedding at a hidden layer is the mean
over its residues (the two special tokens are excluded). Proteins are sorted by length and
packed into batches of at most ``token_budget`` padded tokens (as ESM's ``extract.py``).
A protein longer than ``max_length`` residues (default: whatever fits one batch,
``token_budget - 2``) is embedded in overlapping windows of ``max_length`` residues, each framed
``<cls> … <eos>``; per-residue states are averaged where windows overlap, and the protein is
marked ``windowed``. Nothing is truncated.

    embedder = Embedder.from_checkpoint("runs/demo/checkpoints/last.ckpt")
    result = embedder.embed("proteins.fasta")        # or [("id", "MKV…"), …] or ["MKV…", …]
    result.means()                                   # {id: (dim,) array} at the first layer asked

Output files (``embed`` CLI; :func:`read_embeddings` reads all three back):

* HDF5 (default): one group per protein, named :func:`safe_key` of its id (never a nested
  path), with attributes ``id``, ``header``, ``sequence``, ``length``, ``windowed``, ``layers``
  and datasets ``mean`` (n_layers, dim) and, with ``--per-residue``, ``per_residue``
  (n_layers, L, dim). The file is opened and closed per batch; a group gets ``complete=True``
  last, and incomplete groups are deleted on the next run.
* ``.npz``: written atomically (temporary file, then rename) when the run ends, also when it
  ends with an error; batches go to a sidecar folder ``OUT.npz.parts/`` of atomically written
  parts first, so a killed run loses at most one batch. Keys ``KEY.mean`` / ``KEY.per_residue``
  and a JSON ``__index__`` (id, header, sequence, windowed per key) and ``__meta__``.
* a directory of ``KEY.pt`` files laid out like ESM's ``extract.py`` output: ``label``,
  ``mean_representations`` {layer: (dim,)} and ``representations`` {layer: (L, dim)}.

Rerunning with the same output skips proteins already there (resume).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from protein_performer.alphabet import ALPHABET
from protein_performer.checkpoint import add_device_argument
from protein_performer.corpus.fasta import add_unknown_argument
from protein_performer.model import PerformerLM, layer_index
from protein_performer.outputs import check_output

log = logging.getLogger(__name__)

DEFAULT_TOKEN_BUDGET = 8192
DEFAULT_WINDOW_OVERLAP = 128


@dataclass(frozen=True)
class ProteinInput:
    """One protein to embed."""

    id: str
    sequence: str
    header: str = ""
    """The full FASTA header (without ``>``); the id when unknown."""


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
    """True when the protein was embedded in overlapping windows (longer than max_length)."""

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
    """``<cls> residues <eos>`` as token ids."""


# ---------------------------------------------------------------------------------------------
# Inputs


def as_inputs(source: str | Path | Iterable, unknown: str = "error") -> Iterator[ProteinInput]:
    """Normalise what :meth:`Embedder.embed` accepts: a FASTA/UniProt path, ``(id, sequence)``
    pairs, plain sequences (ids ``seq1``, ``seq2``, …) or ``ProteinRecord``s."""
    if isinstance(source, (str, Path)) and not (isinstance(source, str) and _looks_like_sequence(source)):
        from protein_performer.corpus.fasta import CleaningPolicy, read_records

        for rec in read_records(Path(source), CleaningPolicy(unknown=unknown)):
            yield ProteinInput(rec.id, rec.sequence, rec.header)
        return
    if isinstance(source, str):
        raise ValueError("embed() got a single string; pass a FASTA path, or a list of sequences")
    for i, item in enumerate(source, start=1):
        if isinstance(item, ProteinInput):
            yield item
        elif isinstance(item, str):
            yield ProteinInput(f"seq{i}", item, f"seq{i}")
        elif isinstance(item, tuple) and len(item) == 2:
            yield ProteinInput(str(item[0]), str(item[1]), str(item[0]))
        elif hasattr(item, "sequence") and hasattr(item, "id"):
            yield ProteinInput(item.id, item.sequence, getattr(item, "header", item.id))
        else:
            raise ValueError(f"input {i}: expected a sequence, an (id, sequence) pair or a record, "
                             f"got {type(item).__name__}")


def _looks_like_sequence(text: str) -> bool:
    return len(text) > 0 and text.isalpha() and text.isupper() and not Path(text).exists()


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Starts of windows of ``window`` residues covering ``length`` with at least ``overlap`` shared;
    the last window ends at the protein's end."""
    if length <= window:
        return [0]
    stride = window - overlap
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


def batches_by_budget(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Indices grouped so that ``len(batch) * longest <= token_budget`` (a longer item goes alone),
    after sorting by length (longest first)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        if current and (len(current) + 1) * longest > token_budget:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


# ---------------------------------------------------------------------------------------------
# The embedder


class Embedder:
    """Embeds proteins with a :class:`PerformerLM` (in eval mode, no gradients).

    Args:
        model: the language model.
        layers: hidden layers to return (0 = embeddings, negatives from the end; default final).
        per_residue: also return (L, dim) states.
        token_budget: padded tokens per batch.
        max_length: longest protein (residues) embedded whole; default ``token_budget - 2``.
        window_overlap: residues shared by consecutive windows of a longer protein
            (default ``min(128, max_length // 4)``).
    """

    def __init__(
        self,
        model: PerformerLM,
        *,
        layers: Sequence[int] = (-1,),
        per_residue: bool = False,
        token_budget: int = DEFAULT_TOKEN_BUDGET,
        max_length: int | None = None,
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
        self.max_length = int(max_length) if max_length else self.token_budget - 2
        if window_overlap is None:
            window_overlap = min(DEFAULT_WINDOW_OVERLAP, self.max_length // 4)
        self.window_overlap = int(window_overlap)
        if self.token_budget < 3 or self.max_length < 1:
            raise ValueError(f"token budget {token_budget} / max length {max_length} too small")
        if not 0 <= self.window_overlap < self.max_length:
            raise ValueError(f"window overlap {window_overlap} must be in [0, max_length={self.max_length})")
        if self.max_length + 2 > model.config.max_position and model.config.position == "learned":
            raise ValueError(f"max length {self.max_length} exceeds the model's max_position "
                             f"{model.config.max_position}; pass --max-length {model.config.max_position - 2}")
        log.debug("embedder: layers %s of %d, budget %d, max length %d", self.layers, depth,
                  self.token_budget, self.max_length)

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
            for start in window_starts(residues.size, self.max_length, self.window_overlap):
                window = residues[start : start + self.max_length]
                tokens = np.concatenate([[ALPHABET.cls_idx], window, [ALPHABET.eos_idx]]).astype(np.int64)
                pieces.append(_Piece(i, start, tokens))
        pending = {i: sum(p.protein == i for p in pieces) for i in range(len(chunk))}
        # Per-residue sums and coverage counts of proteins whose windows are not all done yet.
        sums: dict[int, np.ndarray] = {}
        cover: dict[int, np.ndarray] = {}
        for batch in batches_by_budget([p.tokens.size for p in pieces], self.token_budget):
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
        longest = max(p.tokens.size for p in pieces)
        ids = torch.full((len(pieces), longest), ALPHABET.pad_idx, dtype=torch.long)
        for b, p in enumerate(pieces):
            ids[b, : p.tokens.size] = torch.from_numpy(p.tokens)
        ids = ids.to(self.device)
        mask = ids != ALPHABET.pad_idx  # (B, L) True at real tokens
        out = self.model(ids, mask, return_layers=self.layers)
        stacked = torch.stack([out.hidden_states[k] for k in self.layers], dim=1)  # (B, n_layers, L, dim)
        stacked = stacked.float().cpu().numpy()
        return [stacked[b, :, 1 : p.tokens.size - 1] for b, p in enumerate(pieces)]

    def _finish(self, item: ProteinInput, sums: np.ndarray, cover: np.ndarray) -> ProteinEmbedding:
        states = sums / cover[None, :, None]  # (n_layers, L, dim): overlaps averaged
        return ProteinEmbedding(
            id=item.id, header=item.header or item.id, sequence=item.sequence,
            mean={layer: states[k].mean(axis=0) for k, layer in enumerate(self.layers)},
            per_residue={layer: states[k] for k, layer in enumerate(self.layers)} if self.per_residue else None,
            windowed=len(item.sequence) > self.max_length,
        )


# ---------------------------------------------------------------------------------------------
# Output files


FORMATS = ("h5", "npz", "pt")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def safe_key(protein_id: str) -> str:
    """A file- and HDF5-safe name for a protein id: the id itself when it is made of
    ``[A-Za-z0-9_.-]`` (and does not start or end with ``.``), otherwise the cleaned id plus
    ``~`` and a hash of the original, so that distinct ids never share a key."""
    key = _UNSAFE.sub("_", protein_id).strip(".")[:100] or "_"
    if key == protein_id:
        return key
    digest = hashlib.blake2b(protein_id.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    return f"{key}~{digest}"


def output_format(path: Path, fmt: str | None) -> str:
    """``h5`` / ``npz`` / ``pt`` from ``--format`` or the extension of ``path`` (h5 by default)."""
    if fmt:
        if fmt not in FORMATS:
            raise ValueError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
        return fmt
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix == ".pt" or path.is_dir():
        return "pt"
    return "h5"


def _check_meta(path: Path, stored: dict, meta: dict) -> None:
    for name in ("layers", "per_residue"):
        if name in stored and stored[name] != meta[name]:
            raise ValueError(f"{path}: was written with {name}={stored[name]}, this run asks for "
                             f"{meta[name]}; use the same options to resume, or a new --out")


class H5Writer:
    """HDF5 output (see the module docstring). Opened and closed per batch."""

    def __init__(self, path: Path, meta: dict) -> None:
        import h5py

        self.path, self.meta = path, meta
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            f = h5py.File(path, "a")
        except OSError as err:
            raise ValueError(f"{path}: exists and is not an HDF5 file of embeddings ({err}); "
                             "choose another --out") from err
        with f:
            if "meta" in f.attrs:
                _check_meta(path, json.loads(f.attrs["meta"]), meta)
            else:
                f.attrs["format"] = "protein_performer.embed/1"
                f.attrs["meta"] = json.dumps(meta)
            stale = [k for k in f if not f[k].attrs.get("complete", False)]
            for key in stale:  # written by a run that was killed mid-batch
                del f[key]
            self.keys = {k for k in f}
        if stale:
            log.warning("%s: removed %d incomplete entries of an interrupted run", path, len(stale))

    def has(self, protein_id: str) -> bool:
        return safe_key(protein_id) in self.keys

    def write(self, batch: list[ProteinEmbedding]) -> None:
        import h5py

        with h5py.File(self.path, "a") as f:
            for p in batch:
                key = safe_key(p.id)
                if key in f:
                    del f[key]
                g = f.create_group(key)
                layers = sorted(p.mean)
                g.attrs.update({"id": p.id, "header": p.header, "sequence": p.sequence,
                                "length": len(p.sequence), "windowed": p.windowed, "layers": layers})
                g.create_dataset("mean", data=np.stack([p.mean[k] for k in layers]))  # (n_layers, dim)
                if p.per_residue is not None:
                    g.create_dataset("per_residue", data=np.stack([p.per_residue[k] for k in layers]))
                g.attrs["complete"] = True
                self.keys.add(key)
            f.flush()

    def close(self) -> None:
        pass


class NpzWriter:
    """``.npz`` output: parts in ``OUT.npz.parts/`` during the run, one atomic file at the end."""

    def __init__(self, path: Path, meta: dict) -> None:
        self.path, self.meta = path, meta
        self.parts = path.with_name(path.name + ".parts")
        self.parts.mkdir(parents=True, exist_ok=True)
        self.keys: set[str] = set()
        for source in self._sources():
            with np.load(source) as z:
                _check_meta(source, json.loads(str(z["__meta__"])), meta)
                self.keys.update(row["key"] for row in json.loads(str(z["__index__"])))

    def _sources(self) -> list[Path]:
        return ([self.path] if self.path.is_file() else []) + sorted(self.parts.glob("part-*.npz"))

    def has(self, protein_id: str) -> bool:
        return safe_key(protein_id) in self.keys

    def write(self, batch: list[ProteinEmbedding]) -> None:
        arrays: dict[str, np.ndarray] = {}
        index = []
        for p in batch:
            key = safe_key(p.id)
            layers = sorted(p.mean)
            arrays[f"{key}.mean"] = np.stack([p.mean[k] for k in layers])
            if p.per_residue is not None:
                arrays[f"{key}.per_residue"] = np.stack([p.per_residue[k] for k in layers])
            index.append({"key": key, "id": p.id, "header": p.header, "sequence": p.sequence,
                          "windowed": p.windowed, "layers": layers})
            self.keys.add(key)
        number = len(list(self.parts.glob("part-*.npz"))) + 1
        _atomic_savez(self.parts / f"part-{number:06d}.npz", arrays, index, self.meta)

    def close(self) -> None:
        """Merge the existing file and the parts into ``OUT.npz`` (atomically), drop the parts."""
        sources = self._sources()
        if not sources:
            self.parts.rmdir()
            return
        arrays: dict[str, np.ndarray] = {}
        index: dict[str, dict] = {}
        for source in sources:
            with np.load(source) as z:
                for row in json.loads(str(z["__index__"])):
                    index[row["key"]] = row
                arrays.update({k: z[k] for k in z.files if not k.startswith("__")})
        _atomic_savez(self.path, arrays, list(index.values()), self.meta)
        for source in sources[1:] if self.path in sources else sources:
            source.unlink()
        self.parts.rmdir()


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray], index: list[dict], meta: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, __index__=np.array(json.dumps(index)), __meta__=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, path)


class PtDirWriter:
    """A directory of ``KEY.pt`` files in the layout of ESM's ``extract.py`` (each written atomically)."""

    def __init__(self, path: Path, meta: dict) -> None:
        self.path, self.meta = path, meta
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path}: exists and is not a directory; .pt output is a directory of files")
        path.mkdir(parents=True, exist_ok=True)
        meta_file = path / "meta.json"
        if meta_file.is_file():
            _check_meta(path, json.loads(meta_file.read_text()), meta)
        else:
            meta_file.write_text(json.dumps(meta, indent=2) + "\n")
        self.keys = {f.stem for f in path.glob("*.pt")}

    def has(self, protein_id: str) -> bool:
        return safe_key(protein_id) in self.keys

    def write(self, batch: list[ProteinEmbedding]) -> None:
        for p in batch:
            key = safe_key(p.id)
            item = {"label": p.id, "header": p.header, "sequence": p.sequence, "windowed": p.windowed,
                    "mean_representations": {k: torch.from_numpy(v) for k, v in p.mean.items()}}
            if p.per_residue is not None:
                item["representations"] = {k: torch.from_numpy(v) for k, v in p.per_residue.items()}
            tmp = self.path / f"{key}.pt.tmp"
            torch.save(item, tmp)
            os.replace(tmp, self.path / f"{key}.pt")
            self.keys.add(key)

    def close(self) -> None:
        pass


def open_writer(path: str | Path, fmt: str | None, meta: dict) -> H5Writer | NpzWriter | PtDirWriter:
    """The writer for ``path`` (resuming what is already there)."""
    path = Path(path)
    kind = output_format(path, fmt)
    return {"h5": H5Writer, "npz": NpzWriter, "pt": PtDirWriter}[kind](path, meta)


def _stored_format(path: Path, fmt: str | None) -> str:
    """``h5`` / ``npz`` / ``pt`` of an existing output, from its content (``fmt`` if given)."""
    if fmt or path.is_dir():
        return output_format(path, fmt)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head == b"\x89HDF\r\n\x1a\n":
        return "h5"
    if head.startswith(b"PK"):
        return "npz"
    raise ValueError(f"{path}: not an output of `protein-performer embed` (neither HDF5 nor npz, nor a folder "
                     "of .pt files); pass the file or folder that embed wrote")


def read_embeddings(path: str | Path, *, per_residue: bool = False, fmt: str | None = None) -> EmbeddingResult:
    """Read an ``embed`` output (HDF5, npz or .pt directory) back into an :class:`EmbeddingResult`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no embeddings there (write them with `protein-performer embed`)")
    kind = _stored_format(path, fmt)
    proteins: dict[str, ProteinEmbedding] = {}
    layers: tuple[int, ...] = ()

    def add(row: dict, mean: np.ndarray, states: np.ndarray | None) -> None:
        nonlocal layers
        layers = tuple(int(k) for k in row["layers"])
        proteins[str(row["id"])] = ProteinEmbedding(
            id=str(row["id"]), header=str(row["header"]), sequence=str(row["sequence"]),
            mean=dict(zip(layers, mean)), windowed=bool(row["windowed"]),
            per_residue=dict(zip(layers, states)) if states is not None else None)

    if kind == "h5":
        import h5py

        try:
            f = h5py.File(path, "r")
        except OSError as err:
            raise ValueError(f"{path}: a damaged HDF5 file ({err}); run `protein-performer embed` again") from err
        with f:
            for key, g in f.items():
                if g.attrs.get("complete", False):
                    add(dict(g.attrs), g["mean"][()],
                        g["per_residue"][()] if per_residue and "per_residue" in g else None)
    elif kind == "npz":
        with np.load(path) as z:
            for row in json.loads(str(z["__index__"])):
                res_key = f"{row['key']}.per_residue"
                add(row, z[f"{row['key']}.mean"], z[res_key] if per_residue and res_key in z.files else None)
    else:
        for file in sorted(path.glob("*.pt")):
            item = torch.load(file, weights_only=True)
            lay = sorted(item["mean_representations"])
            reps = item.get("representations") if per_residue else None
            add({"id": item["label"], "header": item.get("header", item["label"]),
                 "sequence": item.get("sequence", ""), "windowed": item.get("windowed", False), "layers": lay},
                np.stack([item["mean_representations"][k].numpy() for k in lay]),
                np.stack([reps[k].numpy() for k in lay]) if reps else None)
    if not proteins:
        raise ValueError(f"{path}: holds no embeddings")
    return EmbeddingResult(layers, proteins)


# ---------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="ProteinLM checkpoint (.ckpt)")
    parser.add_argument("--fasta", required=True, type=Path, help="FASTA or UniProt file (may be compressed)")
    parser.add_argument("--out", required=True, type=Path,
                        help="output: FILE.h5 (default), FILE.npz, or a directory of .pt files")
    parser.add_argument("--format", choices=("h5", "npz", "pt"), default=None,
                        help="output format (default: from the extension of --out; h5 otherwise)")
    parser.add_argument("--layers", type=int, nargs="+", default=[-1],
                        help="hidden layers (0 = embeddings, -1 = final; default -1)")
    parser.add_argument("--per-residue", action="store_true", help="also write (L, dim) states")
    parser.add_argument("--token-budget", type=int, default=DEFAULT_TOKEN_BUDGET,
                        help=f"padded tokens per batch (default {DEFAULT_TOKEN_BUDGET})")
    parser.add_argument("--max-length", type=int, default=None,
                        help="embed longer proteins in overlapping windows (default: token budget - 2)")
    parser.add_argument("--window-overlap", type=int, default=None,
                        help=f"residues shared by consecutive windows (default min({DEFAULT_WINDOW_OVERLAP}, "
                             "max length / 4))")
    add_unknown_argument(parser)
    add_device_argument(parser)


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="protein-performer embed", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return parser


@dataclass
class EmbedStats:
    """Summary of one :func:`embed_to_file` run."""

    proteins: int = 0
    residues: int = 0
    windowed: int = 0
    skipped_existing: int = 0
    """Proteins already in the output (resume) or repeated ids."""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        rate = max(self.seconds, 1e-9)
        return {**asdict(self), "proteins_per_s": self.proteins / rate, "residues_per_s": self.residues / rate}


def embed_to_file(embedder: Embedder, inputs: Iterable[ProteinInput], writer: H5Writer | NpzWriter | PtDirWriter,
                  progress: bool = True) -> EmbedStats:
    """Embed ``inputs`` not yet in ``writer``'s output and write them batch by batch; closes ``writer``."""
    from tqdm import tqdm

    stats = EmbedStats()
    seen: set[str] = set()

    def todo() -> Iterator[ProteinInput]:
        for item in inputs:
            if item.id in seen or writer.has(item.id):
                stats.skipped_existing += 1
                continue
            seen.add(item.id)
            yield item

    start = time.perf_counter()
    bar = tqdm(unit=" proteins", desc="embed", disable=None if progress else True, file=sys.stderr)
    try:
        for batch in embedder.embed_iter(todo()):
            writer.write(batch)
            stats.proteins += len(batch)
            stats.residues += sum(len(p) for p in batch)
            stats.windowed += sum(p.windowed for p in batch)
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.update(len(batch))
            bar.set_postfix_str(f"{stats.proteins / elapsed:.1f} proteins/s, "
                                f"{stats.residues / elapsed:,.0f} residues/s")
    finally:
        bar.close()
        writer.close()
        stats.seconds = time.perf_counter() - start
    return stats


def run(args: argparse.Namespace) -> int:
    from protein_performer.checkpoint import load_checkpoint
    from protein_performer.corpus.fasta import CleaningPolicy, ReadCounts, read_records

    if not args.fasta.is_file():
        raise FileNotFoundError(f"{args.fasta}: no such input file")
    check_output(args.out, "dir" if output_format(args.out, args.format) == "pt" else "file", inputs=[args.fasta])
    loaded = load_checkpoint(args.checkpoint)
    embedder = Embedder(loaded.model, layers=args.layers, per_residue=args.per_residue,
                        token_budget=args.token_budget, max_length=args.max_length,
                        window_overlap=args.window_overlap, device=args.device)
    created = not args.out.exists()
    writer = open_writer(args.out, args.format, meta={
        "checkpoint": str(args.checkpoint), "layers": list(embedder.layers),
        "per_residue": embedder.per_residue, "max_length": embedder.max_length,
        "window_overlap": embedder.window_overlap, "dim": loaded.config.dim,
    })
    counts = ReadCounts()
    inputs = (ProteinInput(r.id, r.sequence, r.header)
              for r in read_records(args.fasta, CleaningPolicy(unknown=args.unknown), counts))
    try:
        stats = embed_to_file(embedder, inputs, writer)
        if counts.kept == 0:
            raise ValueError(f"no sequences in {args.fasta} ({counts.records_read} records read, skipped: "
                             f"{dict(counts.skipped) or 'none'}); check the input file")
    except BaseException:
        if created and not writer.keys:  # leave no empty output behind
            _remove_output(args.out)
        raise
    log.info("embedded %d proteins (%d residues, %d windowed) in %.1f s: %.1f proteins/s, %.0f residues/s; "
             "%d skipped (already in %s or repeated ids); input: %s", stats.proteins, stats.residues,
             stats.windowed, stats.seconds, stats.to_dict()["proteins_per_s"], stats.to_dict()["residues_per_s"],
             stats.skipped_existing, args.out, counts.to_dict())
    return 0


def _remove_output(path: Path) -> None:
    """Remove an output this run created and left empty (a file, or a folder of .pt files)."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    log.debug("removed the empty output %s", path)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(create_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
