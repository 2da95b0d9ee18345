"""What ``prepare`` reads, behind one interface: proteins (FASTA / UniProt files, split by id; here)
or homolog sets (``--family``, split by similarity; :mod:`protein_performer.corpus.prepare_family`).

An :class:`InputKind` names the files it reads, the formats the manifest records, its entries of
the manifest's options, and tokenises the files into the split writers, returning what else the
dataset holds (:class:`Tokenised`). :func:`protein_performer.corpus.prepare.prepare` does the
rest, the same for both: checks, the scratch folder, the manifest, the swap into place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol

import numpy as np

from protein_performer.corpus.fasta import CleaningPolicy, ReadCounts, read_records, sniff_format
from protein_performer.corpus.split_rule import SplitFractions
from protein_performer.progress import progress_bar


class SplitSink(Protocol):
    """Where one split's proteins go (:class:`protein_performer.corpus.prepare.SplitWriter`)."""

    def add(self, protein_id: str, tokens: bytes) -> None: ...


@dataclass
class Tokenised:
    """What an input kind wrote into the splits, and what else the dataset holds."""

    counts: ReadCounts
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    """Per split, more files of the split: name -> array (written as its bytes, in this order)."""
    manifest: dict = field(default_factory=dict)
    """Entries the manifest gains, or replaces (``split_rule``)."""


class InputKind(Protocol):
    """One kind of input of ``prepare`` (module docstring)."""

    def files(self, inputs: list[Path]) -> list[Path]:
        """The files to read for the ``inputs`` given."""
        ...

    def formats(self, files: list[Path]) -> list[str]:
        """The formats the manifest records for ``files``; refuses options that do not fit them."""
        ...

    def options(self) -> dict:
        """This kind's entries of the manifest's ``options``."""
        ...

    def tokenise(self, files: list[Path], policy: CleaningPolicy, fractions: SplitFractions,
                 writers: Mapping[str, SplitSink], progress: bool | None) -> Tokenised:
        """Every kept protein of ``files`` into the writer of its split."""
        ...


@dataclass(frozen=True)
class ProteinInputs:
    """FASTA or UniProt ``.dat`` files; each protein goes to the split its id's hash picks."""

    format: str = "auto"
    """fasta, swiss or auto (sniffed from each file's content)."""

    def files(self, inputs: list[Path]) -> list[Path]:
        return inputs

    def formats(self, files: list[Path]) -> list[str]:
        return [sniff_format(p) if self.format == "auto" else self.format for p in files]

    def options(self) -> dict:
        return {}

    def tokenise(self, files: list[Path], policy: CleaningPolicy, fractions: SplitFractions,
                 writers: Mapping[str, SplitSink], progress: bool | None) -> Tokenised:
        counts = ReadCounts()
        split_of = fractions.split_of
        add = {split: writer.add for split, writer in writers.items()}
        start = time.perf_counter()
        with progress_bar(unit="rec", unit_scale=True, enabled=progress, desc="prepare") as bar:
            for path, fmt in zip(files, self.formats(files)):
                n = 0
                for record in read_records(path, policy, counts, format=fmt):  # type: ignore[arg-type]
                    add[split_of(record.id)](record.id, record.tokens)
                    n += 1
                    if n == 2048:
                        bar.update(n)
                        n = 0
                        bar.set_postfix_str(f"{counts.residues / (time.perf_counter() - start):.3g} res/s",
                                            refresh=False)
                bar.update(n)
        return Tokenised(counts)


__all__ = ["InputKind", "ProteinInputs", "SplitSink", "Tokenised"]
