"""Embedding files: the writers ``embed`` flushes batches to, and :func:`read_embeddings`.

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

Every writer resumes: opened on an existing output, it skips the proteins already there
(:meth:`has`) and refuses options that differ from the stored ones.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from pathlib import Path

import numpy as np
import torch

from protein_performer.embed.embedder import EmbeddingResult, ProteinEmbedding
from protein_performer.outputs import written_atomically

log = logging.getLogger(__name__)

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
    """Resuming appends to ``path``: refuse unless its entries came from the same weights and options."""
    if "weights" in stored and "weights" in meta and stored["weights"] != meta["weights"]:
        raise ValueError(f"{path}: holds embeddings from other weights (checkpoint {stored.get('checkpoint')}, "
                         f"weights sha256 {stored['weights'][:12]}) than this run's ({meta.get('checkpoint')}, "
                         f"{meta['weights'][:12]}); resuming would mix two models: choose a new --out, or "
                         "delete it to embed everything again")
    for name in ("layers", "per_residue", "max_length", "window_overlap"):
        if name in stored and name in meta and stored[name] != meta[name]:
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
            if _is_hdf5(path):
                raise ValueError(f"{path}: a damaged HDF5 file ({str(err).splitlines()[0][:200]}), e.g. from a run "
                                 "stopped by a full disk; delete it to embed everything again, or choose another "
                                 "--out") from err
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
        number = len(list(self.parts.glob("part-*.npz"))) + 1
        _atomic_savez(self.parts / f"part-{number:06d}.npz", arrays, index, self.meta)
        self.keys.update(row["key"] for row in index)

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
    with written_atomically(path, sweep=False) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, __index__=np.array(json.dumps(index)), __meta__=np.array(json.dumps(meta)), **arrays)


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
            data = io.BytesIO()  # serialised first: a full disk then fails a plain write, with its errno
            torch.save(item, data)
            with written_atomically(self.path / f"{key}.pt", sweep=False) as tmp:
                tmp.write_bytes(data.getbuffer())
            self.keys.add(key)

    def close(self) -> None:
        pass


def open_writer(path: str | Path, fmt: str | None, meta: dict) -> H5Writer | NpzWriter | PtDirWriter:
    """The writer for ``path`` (resuming what is already there)."""
    path = Path(path)
    kind = output_format(path, fmt)
    return {"h5": H5Writer, "npz": NpzWriter, "pt": PtDirWriter}[kind](path, meta)


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89HDF\r\n\x1a\n"


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
