"""Per-protein (and per-residue) embeddings from a trained model: the Python API and ``embed``.

    embedder = Embedder.from_checkpoint("runs/demo/checkpoints/last.ckpt")
    result = embedder.embed("proteins.fasta")        # or [("id", "MKV…"), …] or ["MKV…", …]
    result.means()                                   # {id: (dim,) array} at the first layer asked

One job per module:

* :mod:`.inputs` — :class:`ProteinInput` and :func:`as_inputs` (FASTA paths, pairs, sequences, records);
* :mod:`.embedder` — the :class:`Embedder` (framing, token-budget batches, windows of long
  proteins, mean pooling) and its results, :class:`ProteinEmbedding` / :class:`EmbeddingResult`;
* :mod:`.files` — the HDF5 / npz / ESM-style ``.pt`` writers (resumable) and :func:`read_embeddings`;
* :mod:`.command` — ``protein-performer embed`` (``add_arguments`` / ``run``) and :func:`embed_to_file`.
"""

from protein_performer.embed.command import (
    EmbedStats,
    add_arguments,
    embed_to_file,
    run,
)
from protein_performer.embed.embedder import (
    DEFAULT_TOKEN_BUDGET,
    DEFAULT_WINDOW_OVERLAP,
    Embedder,
    EmbeddingResult,
    ProteinEmbedding,
    residue_windows,
    window_starts,
)
from protein_performer.embed.files import (
    FORMATS,
    H5Writer,
    NpzWriter,
    PtDirWriter,
    open_writer,
    output_format,
    read_embeddings,
    safe_key,
)
from protein_performer.embed.inputs import ProteinInput, as_inputs

__all__ = [
    "DEFAULT_TOKEN_BUDGET", "DEFAULT_WINDOW_OVERLAP", "FORMATS", "EmbedStats", "Embedder", "EmbeddingResult",
    "H5Writer", "NpzWriter", "ProteinEmbedding", "ProteinInput", "PtDirWriter", "add_arguments", "as_inputs",
    "embed_to_file", "open_writer", "output_format", "read_embeddings", "residue_windows", "run", "safe_key",
    "window_starts",
]
