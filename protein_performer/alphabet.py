"""Amino-acid alphabet: tokens, special indices and a version stamped into data and checkpoints.

Token ids (``ALPHABET_VERSION`` 1)::

    0 <pad>  1 <mask>  2 <cls>  3 <eos>  4 <unk>
    5..24   the 20 standard amino acids, ``ACDEFGHIKLMNPQRSTVWY``
    25..29  the extended codes ``X B Z U O``

``<cls>`` doubles as beginning-of-sequence; ``<eos>`` separates proteins in concatenated
windows. Ids fit in ``uint8``, the dtype of prepared shards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

ALPHABET_VERSION = 1

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<mask>", "<cls>", "<eos>", "<unk>")
STANDARD_AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
EXTENDED_AMINO_ACIDS = "XBZUO"
AMINO_ACIDS = STANDARD_AMINO_ACIDS + EXTENDED_AMINO_ACIDS


@dataclass(frozen=True)
class Alphabet:
    """Maps residues to token ids and back. Use :data:`ALPHABET` (the one instance)."""

    version: int = ALPHABET_VERSION
    tokens: tuple[str, ...] = field(default=SPECIAL_TOKENS + tuple(AMINO_ACIDS))

    pad_idx: int = 0
    mask_idx: int = 1
    cls_idx: int = 2
    eos_idx: int = 3
    unk_idx: int = 4

    def __post_init__(self) -> None:
        lut = np.full(256, 255, dtype=np.uint8)  # 255 = not an amino-acid code
        for i, tok in enumerate(self.tokens):
            if len(tok) == 1:
                lut[ord(tok)] = i
                lut[ord(tok.lower())] = i
        object.__setattr__(self, "_lut", lut)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def special_indices(self) -> tuple[int, ...]:
        return tuple(range(len(SPECIAL_TOKENS)))

    @property
    def standard_indices(self) -> tuple[int, ...]:
        """Ids of the 20 standard amino acids, in ``STANDARD_AMINO_ACIDS`` order."""
        start = len(SPECIAL_TOKENS)
        return tuple(range(start, start + len(STANDARD_AMINO_ACIDS)))

    @property
    def amino_acid_indices(self) -> tuple[int, ...]:
        """Ids of all 25 residue codes (standard and extended)."""
        return tuple(range(len(SPECIAL_TOKENS), len(self.tokens)))

    @property
    def lookup_table(self) -> np.ndarray:
        """``uint8[256]``: byte value -> token id, 255 where the byte is not an amino-acid code."""
        return self._lut  # type: ignore[attr-defined]

    def index(self, token: str) -> int:
        return self.tokens.index(token)

    def encode(self, sequence: str | bytes) -> np.ndarray:
        """Encode residues (either case) to ``uint8`` ids; raises ``ValueError`` on any other character."""
        raw = sequence.encode("ascii", errors="replace") if isinstance(sequence, str) else sequence
        ids = self._lut[np.frombuffer(raw, dtype=np.uint8)]  # type: ignore[attr-defined]
        bad = np.flatnonzero(ids == 255)
        if bad.size:
            pos = int(bad[0])
            char = chr(raw[pos]) if raw[pos] < 128 else repr(raw[pos : pos + 1])
            raise ValueError(f"character {char!r} at position {pos + 1} is not an amino-acid code")
        return ids

    def frame(self, residues: str | bytes | np.ndarray) -> np.ndarray:
        """One protein as model input: ``<cls> residues <eos>``, ``uint8`` ids of length n + 2.

        ``residues`` is a sequence of amino-acid letters (encoded with :meth:`encode`, so any other
        character raises ``ValueError``) or an array of residue ids.
        """
        ids = self.encode(residues) if isinstance(residues, (str, bytes)) else np.asarray(residues, dtype=np.uint8)
        tokens = np.empty(len(ids) + 2, dtype=np.uint8)  # (n + 2,)
        tokens[0], tokens[-1] = self.cls_idx, self.eos_idx
        tokens[1:-1] = ids
        return tokens

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.tokens[int(i)] for i in ids)


ALPHABET = Alphabet()
