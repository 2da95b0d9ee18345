"""Mutants: ESM ``predict.py`` syntax (``H24C``, multi-mutants ``H24C:A30G``) and variant CSVs.

Column names follow ProteinGym where the file does (:func:`detect_columns`): ``mutant`` (or
EVE's ``mutations``), ``DMS_score`` (higher = fitter), ``DMS_score_bin`` (1 = fit), and
``mutated_sequence``, checked against the wild type with the mutant applied. Clinical labels
(ClinVar's ``benign`` / ``pathogenic``, ``likely ...`` included) are binary labels with benign = 1.
"""

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


MUTATION_COLUMNS = ("mutant", "mutations")
"""Mutant columns tried in order when none is named (ProteinGym's, then EVE's label files')."""
_FIT_TEXT = {"benign", "likely benign", "likely_benign", "benign/likely benign", "benign/likely_benign"}
_UNFIT_TEXT = {"pathogenic", "likely pathogenic", "likely_pathogenic", "pathogenic/likely pathogenic",
               "pathogenic/likely_pathogenic"}


def detect_columns(path: Path, header: list[str], rows: list[list[str]]) -> dict[str, str | None]:
    """The mutant, score and label columns a file names the ProteinGym way (None where absent):
    ``mutant`` or ``mutations``; ``DMS_score``; ``DMS_score_bin``, else the first column whose every
    value is a clinical category (benign / pathogenic)."""
    mutation = next((c for c in MUTATION_COLUMNS if c in header), None)
    score = "DMS_score" if "DMS_score" in header else None
    label = "DMS_score_bin" if "DMS_score_bin" in header else None
    if label is None:
        for k, name in enumerate(header):
            values = {row[k].strip().lower() for row in rows if k < len(row) and row[k].strip()}
            if values and values <= _FIT_TEXT | _UNFIT_TEXT:
                label = name
                break
    return {"mutation": mutation, "score": score, "label": label}


def read_labels(table: "VariantTable", column: str, fit: str = "auto") -> "np.ndarray":
    """(rows,) 1.0 = fit / benign, 0.0 = unfit / pathogenic, NaN = missing, from ``column``.

    ``fit``: the value that means fit. ``auto``: ``1`` for numbers (ProteinGym's ``DMS_score_bin``)
    and benign for clinical categories. Raises ``ValueError`` naming the row for any other value."""
    import numpy as np

    if column not in table.header:
        raise ValueError(f"{table.path}: no column {column!r} for --label-col; columns: {', '.join(table.header[:12])}")
    col = table.header.index(column)
    out = np.full(len(table.rows), np.nan)
    for number, row in enumerate(table.rows, start=1):
        text = row[col].strip() if col < len(row) else ""
        key = text.lower()
        if not text:
            continue
        if fit != "auto":
            out[number - 1] = 1.0 if key == fit.lower() or _same_number(key, fit) else 0.0
        elif key in _FIT_TEXT:
            out[number - 1] = 1.0
        elif key in _UNFIT_TEXT:
            out[number - 1] = 0.0
        elif _same_number(key, "1"):
            out[number - 1] = 1.0
        elif _same_number(key, "0"):
            out[number - 1] = 0.0
        else:
            raise ValueError(f"{table.path}: row {number} (line {number + 1}): label {text!r} in {column!r} is not "
                             "0/1 or benign/pathogenic; fix the row, or say which value means fit with --label-fit")
    return out


def read_measurements(table: "VariantTable", column: str) -> "np.ndarray":
    """(rows,) the measured scores of ``column`` (higher = fitter), NaN where empty or not a number
    (counted in a warning). Raises ``ValueError`` for a missing column or one with no number at all."""
    import math

    import numpy as np

    if column not in table.header:
        raise ValueError(f"{table.path}: no column {column!r} for --score-col; columns: {', '.join(table.header[:12])}")
    col = table.header.index(column)
    values, bad = [], []
    for number, row in enumerate(table.rows, start=1):
        text = row[col].strip() if col < len(row) else ""
        try:
            values.append(float(text) if text else math.nan)
        except ValueError:
            values.append(math.nan)
            bad.append((number, text))
    if bad and not np.isfinite(values).any():
        raise ValueError(f"{table.path}: --score-col {column!r} is not numeric (row {bad[0][0]}: {bad[0][1]!r}); "
                         "name the column of measured scores")
    if bad:
        log.warning("%s: %d rows of --score-col %r are not numbers (first: row %d, %r); they are left out of the "
                    "correlations", table.path, len(bad), column, bad[0][0], bad[0][1])
    return np.asarray(values)


def _same_number(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def check_mutated_sequences(table: "VariantTable", sequence: str, column: str = "mutated_sequence") -> int:
    """Check ProteinGym's ``mutated_sequence`` against the wild type with each row's mutant applied;
    raises ``ValueError`` naming the first row that disagrees. Returns the rows checked."""
    if column not in table.header:
        return 0
    col = table.header.index(column)
    checked = 0
    for number, (row, subs) in enumerate(zip(table.rows, table.mutants), start=1):
        if subs is None or col >= len(row) or not row[col].strip():
            continue
        if row[col].strip().upper() != apply_mutant(sequence, subs):
            raise ValueError(f"{table.path}: row {number} (line {number + 1}): {column} is not the wild type with "
                             "the row's mutant applied; check that --fasta (target_seq) is this assay's wild type "
                             "and --offset-idx")
        checked += 1
    return checked


def read_variants(path: Path, sequence: str, *, mutation_col: str | None = "mutant", offset: int = 1,
                  skip_invalid: bool = False) -> VariantTable:
    """Read and check every row of ``path``; the first invalid row raises unless ``skip_invalid``."""
    with open(path, newline="", encoding="utf-8-sig") as fh:  # DMS files often start with a BOM
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file; give a CSV with a header and a {mutation_col!r} column")
        rows = [row for row in reader if row]
    if mutation_col is None:
        mutation_col = detect_columns(path, header, rows)["mutation"]
        if mutation_col is None:
            raise ValueError(f"{path}: no mutant column ({' or '.join(MUTATION_COLUMNS)}; columns: "
                             f"{', '.join(header[:12])}); name it with --mutation-col")
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

