"""Mutants: ESM ``predict.py`` syntax (``H24C``, multi-mutants ``H24C:A30G``) and variant CSVs."""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from protein_performer.alphabet import STANDARD_AMINO_ACIDS

log = logging.getLogger(__name__)

_MUTANT = re.compile(r"^([A-Za-z])(-?\d+)([A-Za-z])$")

@dataclass(frozen=True)
class Substitution:
    """One amino-acid change; ``index`` is 0-based in the wild-type sequence."""

    wt: str
    index: int
    mt: str


class InvalidVariant(ValueError):
    """A row that cannot be scored; the message names the problem and the fix."""


def parse_mutant(text: str, sequence: str, offset: int) -> tuple[Substitution, ...]:
    """``'H24C:A30G'`` -> substitutions, checked against ``sequence`` numbered from ``offset``.

    Raises :class:`InvalidVariant` for an unparsable mutant, an unknown letter, a position out of
    range, a wild-type letter that does not match, or a position mutated twice.
    """
    text = text.strip()
    if not text:
        raise InvalidVariant("empty mutant; write it as H24C (wild type, position, mutant)")
    subs = []
    for part in text.split(":"):
        m = _MUTANT.match(part.strip())
        if m is None:
            raise InvalidVariant(f"{part!r} is not a substitution like H24C (wild-type letter, position, mutant "
                                 "letter; multi-mutants joined by ':'); correct the mutant")
        wt, number, mt = m.group(1).upper(), int(m.group(2)), m.group(3).upper()
        for letter in (wt, mt):
            if letter not in STANDARD_AMINO_ACIDS:
                raise InvalidVariant(f"{letter!r} in {part!r} is not one of the 20 standard amino acids "
                                     f"{STANDARD_AMINO_ACIDS}; correct the mutant")
        index = number - offset
        if not 0 <= index < len(sequence):
            raise InvalidVariant(f"position {number} of {part!r} is outside the sequence (positions {offset}.."
                                 f"{offset + len(sequence) - 1} with --offset-idx {offset}); check --offset-idx "
                                 "(the number of the sequence's first residue) and the --fasta")
        if sequence[index] != wt:
            raise InvalidVariant(f"wild-type letter {wt} of {part!r} does not match the sequence, which has "
                                 f"{sequence[index]} at position {number} (--offset-idx {offset}); check "
                                 "--offset-idx and that --fasta is this assay's wild type")
        subs.append(Substitution(wt, index, mt))
    if len({s.index for s in subs}) < len(subs):
        raise InvalidVariant(f"{text!r} changes one position twice; give each position once")
    return tuple(subs)


@dataclass
class VariantTable:
    """The rows of a variants CSV, verbatim, with their parsed mutants."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    mutants: list[tuple[Substitution, ...] | None]
    """None for a row skipped as invalid (``--skip-invalid``)."""
    problems: list[str] = field(default_factory=list)
    """One message per invalid row."""


def read_variants(path: Path, sequence: str, *, mutation_col: str = "mutant", offset: int = 1,
                  skip_invalid: bool = False) -> VariantTable:
    """Read and check every row of ``path``; the first invalid row raises unless ``skip_invalid``."""
    with open(path, newline="", encoding="utf-8-sig") as fh:  # DMS files often start with a BOM
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file; give a CSV with a header and a {mutation_col!r} column")
        rows = [row for row in reader if row]
    if mutation_col not in header:
        raise ValueError(f"{path}: no column {mutation_col!r} (columns: {', '.join(header[:12])}"
                         f"{', ...' if len(header) > 12 else ''}); name the mutant column with --mutation-col")
    col = header.index(mutation_col)
    table = VariantTable(path=path, header=header, rows=rows, mutants=[])
    for number, row in enumerate(rows, start=1):
        text = row[col] if col < len(row) else ""
        try:
            if len(row) > len(header):
                raise InvalidVariant(f"{len(row)} fields for {len(header)} columns (an unquoted comma? write "
                                     "multi-mutants as H24C:P25A, or quote the field)")
            table.mutants.append(parse_mutant(text, sequence, offset))
        except InvalidVariant as err:
            message = f"{path}: row {number} (line {number + 1}, mutant {text!r}): {err}"
            if not skip_invalid:
                raise InvalidVariant(f"{message}; or pass --skip-invalid to skip such rows") from None
            table.mutants.append(None)
            table.problems.append(message)
    if skip_invalid and table.problems:
        log.warning("%s: skipped %d invalid rows of %d (their scores are left empty); first: %s", path,
                    len(table.problems), len(rows), table.problems[0])
    if all(m is None for m in table.mutants):
        raise ValueError(f"{path}: no valid mutants to score")
    return table


def apply_mutant(sequence: str, subs: tuple[Substitution, ...]) -> str:
    """The mutant sequence: ``sequence`` with every substitution of ``subs`` made."""
    chars = list(sequence)
    for s in subs:
        chars[s.index] = s.mt
    return "".join(chars)

