"""The assays of ``protein-performer benchmark``: a reference CSV in ProteinGym's layout, read and
checked row by row (:func:`read_reference`), and each assay checked before any work
(:func:`check_assay`: the wild type is the alignment's protein, and the variants have a target that
``score-variants``' metrics can use). The columns are those of :mod:`.benchmark`'s docstring."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

REQUIRED = ("DMS_id", "DMS_filename", "target_seq", "MSA_filename")


@dataclass(frozen=True)
class Assay:
    """One row of the reference file, its files resolved."""

    dms_id: str
    variants: Path
    target_seq: str
    msa: Path
    msa_start: int | None = None
    msa_end: int | None = None
    offset_idx: int = 1
    score_col: str | None = None
    label_col: str | None = None
    label_fit: str = "auto"
    mutant_col: str | None = None
    query: str | None = None


def _int_or_none(text: str | None, where: str) -> int | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return int(float(text))
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a residue number; fix the row") from None


def read_reference(path: Path, dms_dir: Path, msa_dir: Path, only: list[str] | None = None) -> list[Assay]:
    """The assays of a ProteinGym-layout reference CSV; raises ``ValueError`` naming the file, the row
    and the fix for a missing column, a missing file, a bad wild type or a region outside it."""
    from protein_performer.alphabet import STANDARD_AMINO_ACIDS

    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: no assays; give a CSV with a header ({', '.join(REQUIRED)}) and one row per assay")
    missing = [c for c in REQUIRED if c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)}; a reference file in ProteinGym's layout has "
                         f"{', '.join(REQUIRED)}, MSA_start, MSA_end")
    assays, seen = [], set()
    for number, row in enumerate(rows, start=1):
        where = f"{path}: row {number} ({row['DMS_id'] or 'no DMS_id'})"
        dms_id = row["DMS_id"].strip()
        if not dms_id or dms_id in seen or "/" in dms_id or dms_id.startswith("."):
            raise ValueError(f"{where}: DMS_id must be a unique, non-empty name without '/' or a leading '.'")
        seen.add(dms_id)
        if only and dms_id not in only:
            continue
        variants, msa = dms_dir / row["DMS_filename"].strip(), msa_dir / row["MSA_filename"].strip()
        for flag, file in (("--dms-dir", variants), ("--msa-dir", msa)):
            if not file.is_file():
                raise ValueError(f"{where}: {file} does not exist; check the file name in the row and {flag}")
        target = row["target_seq"].strip().upper()
        bad = sorted(set(target) - set(STANDARD_AMINO_ACIDS))
        if not target or bad:
            raise ValueError(f"{where}: target_seq {'is empty' if not target else 'has ' + ', '.join(bad)}; give the "
                             "assay's wild type in the 20 standard one-letter codes")
        start = _int_or_none(row.get("MSA_start"), f"{where}: MSA_start")
        end = _int_or_none(row.get("MSA_end"), f"{where}: MSA_end")
        if (start is not None and not 1 <= start <= len(target)) or (
                end is not None and not (start or 1) <= end <= len(target)):
            raise ValueError(f"{where}: MSA_start {start} / MSA_end {end} do not fit target_seq ({len(target)} "
                             "residues); give 1-based residues of target_seq with start <= end")
        assays.append(Assay(dms_id=dms_id, variants=variants, target_seq=target, msa=msa, msa_start=start, msa_end=end,
                            offset_idx=_int_or_none(row.get("offset_idx"), f"{where}: offset_idx") or 1,
                            score_col=(row.get("DMS_score_column") or "").strip() or None,
                            label_col=(row.get("DMS_binary_column") or "").strip() or None,
                            label_fit=(row.get("DMS_binary_fit") or "").strip() or "auto",
                            mutant_col=(row.get("mutant_column") or "").strip() or None,
                            query=(row.get("MSA_query") or "").strip() or None))
    if only:
        unknown = sorted(set(only) - {a.dms_id for a in assays})
        if unknown:
            raise ValueError(f"{path}: no assay {', '.join(unknown)} for --assays; the file has "
                             f"{', '.join(sorted(seen)[:10])}")
    return assays


def check_assay(assay: Assay):
    """Before any work: the wild type is the alignment's protein (and sits at ``MSA_start``), and the
    assay has scorable rows with a usable measurement or label. Raises ``ValueError`` naming the
    files and the fix; returns the family it read (for the recipe, so it is read once)."""
    from protein_performer.corpus.families import read_family
    from protein_performer.variants.metrics import read_targets
    from protein_performer.variants.mutants import detect_columns, read_variants
    from protein_performer.variants.profile import column_map

    family = read_family(assay.msa, query=assay.query)
    column_map(family, assay.target_seq, region_start=assay.msa_start, source=f"target_seq of {assay.dms_id}")
    try:
        table = read_variants(assay.variants, assay.target_seq, mutation_col=assay.mutant_col,
                              offset=assay.offset_idx, skip_invalid=True)
    except ValueError as err:
        raise ValueError(f"{assay.dms_id}: {err} (against target_seq with offset_idx {assay.offset_idx})") from None
    found = detect_columns(assay.variants, table.header, table.rows)
    score_col, label_col = assay.score_col or found["score"], assay.label_col or found["label"]
    if not score_col and not label_col:
        raise ValueError(f"{assay.variants}: no DMS_score, DMS_score_bin or clinical label column; name one with "
                         "DMS_score_column or DMS_binary_column in the reference row")
    read_targets(table, score_col, label_col, assay.label_fit, flags=None)  # score-variants' own check
    return family


__all__ = ["REQUIRED", "Assay", "check_assay", "read_reference"]
