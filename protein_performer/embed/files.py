"""Embedding files: the writers ``embed`` flushes batches to, and :func:`read_embeddings`.

* HDF5 (default): one group per protein, named :func:`safe_key` of its id (never a nested
  path), with attributes ``id``, ``header``, ``sequence``, ``length``, ``windowed``, ``layers``
  and datasets ``mean`` (n_layers, dim) and, with ``--per-residue``, ``per_residue``
  (n_layers, L, dim); the root attributes ``format`` (:data:`H5_FORMAT`) and ``meta``. Batches go
  to atomically written part files in ``OUT.h5.parts/``; when the run ends (also with an error)
  they are merged into a copy of ``OUT.h5`` that replaces it in one rename, so a full disk or a
  kill never damages ``OUT.h5`` and a rerun resumes from it and the parts. (The merge needs room
  for a second copy of the file.)
* ``.npz``: written atomically (temporary file, then rename) when the run ends, also when it
  ends with an error; batches go to a sidecar folder ``OUT.npz.parts/`` of atomically written
  parts first, so a killed run loses at most one batch. Keys ``KEY.mean`` / ``KEY.per_residue``
  and a JSON ``__index__`` (id, header, sequence, windowed per key) and ``__meta__``.
* a directory of ``KEY.pt`` files laid out like ESM's ``extract.py`` output: ``label``,
  ``mean_representations`` {layer: (dim,)} and ``representations`` {layer: (L, dim)}.

Every writer resumes: opened on an existing output, it skips the proteins already there
(:meth:`has`) and refuses options that differ from the stored ones. Only outputs that ``embed``
wrote are resumed (HDF5: the ``format`` attribute; npz: ``__meta__``; .pt: ``meta.json``); any
other existing file or non-empty folder is refused and left as it is.
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

from protein_performer.checkpoint import load_weights_only
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


H5_FORMAT = "protein_performer.embed/1"
"""The root attribute ``format`` of every HDF5 file ``embed`` writes: only such a file is resumed."""


class H5Writer:
    """HDF5 output (see the module docstring): parts in ``OUT.h5.parts/`` during the run, merged
    into a copy of ``OUT.h5`` that replaces it (one rename) when the run ends."""

    def __init__(self, path: Path, meta: dict) -> None:
        import h5py

        self.path, self.meta = path, meta
        self.parts = path.with_name(path.name + ".parts")
        self.keys: set[str] = set()
        for source in self._sources():
            try:
                f = h5py.File(source, "r")
            except OSError as err:
                if _is_hdf5(source):
                    raise ValueError(f"{source}: a damaged HDF5 file ({str(err).splitlines()[0][:200]}); delete "
                                     "it to embed everything again, or choose another --out") from err
                raise ValueError(f"{source}: exists and is not an HDF5 file of embeddings; choose another "
                                 "--out") from err
            with f:
                if f.attrs.get("format") != H5_FORMAT or "meta" not in f.attrs:
                    raise ValueError(f"{source}: an HDF5 file that `protein-performer embed` did not write (no "
                                     f"format={H5_FORMAT} attribute); embed resumes only its own files and never "
                                     "changes others: choose another --out")
                _check_meta(source, json.loads(f.attrs["meta"]), meta)
                self.keys.update(k for k in f if f[k].attrs.get("complete", False))
        self.parts.mkdir(parents=True, exist_ok=True)

    def _sources(self) -> list[Path]:
        parts = sorted(self.parts.glob("part-*.h5")) if self.parts.is_dir() else []
        return ([self.path] if self.path.exists() else []) + parts

    def has(self, protein_id: str) -> bool:
        return safe_key(protein_id) in self.keys

    def write(self, batch: list[ProteinEmbedding]) -> None:
        import h5py

        number = len(list(self.parts.glob("part-*.h5"))) + 1
        with written_atomically(self.parts / f"part-{number:06d}.h5", sweep=False) as tmp:
            with h5py.File(tmp, "w") as f:
                _h5_header(f, self.meta)
                for p in batch:
                    g = f.create_group(safe_key(p.id))
                    layers = sorted(p.mean)
                    g.attrs.update({"id": p.id, "header": p.header, "sequence": p.sequence,
                                    "length": len(p.sequence), "windowed": p.windowed, "layers": layers})
                    g.create_dataset("mean", data=np.stack([p.mean[k] for k in layers]))  # (n_layers, dim)
                    if p.per_residue is not None:
                        g.create_dataset("per_residue", data=np.stack([p.per_residue[k] for k in layers]))
                    g.attrs["complete"] = True
        self.keys.update(safe_key(p.id) for p in batch)

    def close(self) -> None:
        """Merge the parts into a copy of ``OUT.h5`` that replaces it, then drop the parts. A failure
        (a full disk) leaves ``OUT.h5`` and the parts as they were, so a rerun resumes."""
        import shutil

        import h5py

        parts = self._sources()[1:] if self.path.exists() else self._sources()
        if not parts:
            shutil.rmtree(self.parts, ignore_errors=True)
            return
        with written_atomically(self.path, sweep=False) as tmp:
            if self.path.exists():
                shutil.copyfile(self.path, tmp)
            with h5py.File(tmp, "a") as out:
                if "format" not in out.attrs:
                    _h5_header(out, self.meta)
                for key in [k for k in out if not out[k].attrs.get("complete", False)]:
                    del out[key]  # left by an interrupted run of an older version
                for part in parts:
                    with h5py.File(part, "r") as f:
                        for key in f:
                            if key in out:
                                del out[key]
                            f.copy(f[key], out, name=key)
        shutil.rmtree(self.parts)


def _h5_header(f, meta: dict) -> None:
    f.attrs["format"] = H5_FORMAT
    f.attrs["meta"] = json.dumps(meta)


class NpzWriter:
    """``.npz`` output: parts in ``OUT.npz.parts/`` during the run, one atomic file at the end."""

    def __init__(self, path: Path, meta: dict) -> None:
        self.path, self.meta = path, meta
        self.parts = path.with_name(path.name + ".parts")
        self.keys: set[str] = set()
        for source in self._sources():
            try:
                z = np.load(source)
            except (OSError, ValueError) as err:
                raise ValueError(f"{source}: not an npz file of embeddings ({err}); choose another --out") from err
            with z:
                if not {"__meta__", "__index__"} <= set(z.files):
                    raise ValueError(f"{source}: an npz file that `protein-performer embed` did not write (no "
                                     "__meta__ and __index__ entries); embed resumes only its own files and never "
                                     "changes others: choose another --out")
                _check_meta(source, json.loads(str(z["__meta__"])), meta)
                self.keys.update(row["key"] for row in json.loads(str(z["__index__"])))
        self.parts.mkdir(parents=True, exist_ok=True)

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
        meta_file = path / "meta.json"
        if path.is_dir() and any(path.iterdir()) and not meta_file.is_file():
            raise ValueError(f"{path}: a folder that `protein-performer embed` did not write (no meta.json); embed "
                             "resumes only its own folders and never changes others: choose another --out")
        path.mkdir(parents=True, exist_ok=True)
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
            item = load_weights_only(file, "run `protein-performer embed` again to rewrite it")
            lay = sorted(item["mean_representations"])
            reps = item.get("representations") if per_residue else None
            add({"id": item["label"], "header": item.get("header", item["label"]),
                 "sequence": item.get("sequence", ""), "windowed": item.get("windowed", False), "layers": lay},
                np.stack([item["mean_representations"][k].numpy() for k in lay]),
                np.stack([reps[k].numpy() for k in lay]) if reps else None)
    if not proteins:
        raise ValueError(f"{path}: holds no embeddings")
    return EmbeddingResult(layers, proteins)
