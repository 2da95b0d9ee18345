"""What :meth:`~protein_performer.embed.Embedder.embed` accepts, as :class:`ProteinInput` records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator


@dataclass(frozen=True)
class ProteinInput:
    """One protein to embed."""

    id: str
    sequence: str
    header: str = ""
    """The full FASTA header (without ``>``); the id when unknown."""


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
