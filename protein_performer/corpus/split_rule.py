"""The split rule: a text (a protein's id, a group's first member, a family's query) hashed to a
number in [0, 1), the same on every machine, in every run and whatever else the corpus holds::

    u = int.from_bytes(blake2b(salt + text, digest_size=8), "little") / 2**64
    test if u < test_fraction, valid if u < test_fraction + valid_fraction, else train

One home for it: ``prepare`` splits proteins by id with it (:class:`SplitFractions`, in exact
integers), :func:`protein_performer.corpus.families.similarity_splits` splits a family's groups by
their first member's id (:func:`hash_unit`, in floats), and the multi-family benchmark holds out
families by their query's accession (``hash_unit(query) < fraction``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

HASH_BITS = 64
"""Bits of the hash: ``u`` is ``hash_bits(...) / 2**HASH_BITS``."""
SPLIT_RULE = ("u = int.from_bytes(blake2b(salt + id, digest_size=8).digest(), 'little') / 2**64; "
              "test if u < test_fraction, valid if u < test_fraction + valid_fraction, else train")
"""The rule as the manifest of a prepared dataset states it."""

Number = TypeVar("Number", int, float)


def hash_bits(text: str, salt: str = "") -> int:
    """The rule's hash of ``salt + text`` as an integer in [0, 2**64): ``u`` times 2**64, exactly."""
    digest = hashlib.blake2b((salt + text).encode(), digest_size=HASH_BITS // 8).digest()
    return int.from_bytes(digest, "little")


def hash_unit(text: str, salt: str = "") -> float:
    """The rule's ``u`` in [0, 1) of ``salt + text`` (module docstring)."""
    return hash_bits(text, salt) / 2**HASH_BITS


def split_below(u: Number, test_below: Number, valid_below: Number) -> str:
    """``test`` if ``u < test_below``, ``valid`` if ``u < valid_below``, else ``train``: the rule's
    comparison, in units (``u`` from :func:`hash_unit`) or in integers (from :func:`hash_bits`)."""
    if u < test_below:
        return "test"
    return "valid" if u < valid_below else "train"


def check_split_fractions(valid: float, test: float, names: tuple[str, str] = ("valid fraction", "test fraction")
                          ) -> None:
    """Raise ``ValueError`` unless both fractions are in [0, 1) and sum to less than 1 (``names``:
    what the message calls them, e.g. the flags that gave them)."""
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise ValueError(f"{names[0]} {valid} and {names[1]} {test} must be in [0, 1) and sum to less than 1")


@dataclass(frozen=True)
class SplitFractions:
    """The valid and test fractions of a split by id, and the salt of its hash."""

    valid: float = 0.05
    test: float = 0.05
    salt: str = ""
    """Mixed into the hash: a different salt draws a different (still deterministic) split."""

    def __post_init__(self) -> None:
        check_split_fractions(self.valid, self.test)

    def split_of(self, protein_id: str) -> str:
        """The split of ``protein_id`` by :data:`SPLIT_RULE`, compared in integers (no float rounding)."""
        return split_below(hash_bits(protein_id, self.salt), self._test_below, self._valid_below)

    @cached_property
    def _test_below(self) -> int:
        return int(self.test * 2**HASH_BITS)

    @cached_property
    def _valid_below(self) -> int:
        return int((self.test + self.valid) * 2**HASH_BITS)


__all__ = ["HASH_BITS", "SPLIT_RULE", "SplitFractions", "check_split_fractions", "hash_bits", "hash_unit",
           "split_below"]
