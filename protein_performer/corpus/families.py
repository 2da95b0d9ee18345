"""Protein families: a query and its homologs, read from an alignment or a plain FASTA (numpy only).

Formats (``sniff_family_format`` picks one from the name and the content; ``--family-format``
overrides):

* ``a3m`` (HHblits / ColabFold / jackhmmer ``homologs``): upper case and ``-`` are the query's
  columns, lower case are insertions, ``.`` is ignored. Every record has the same number of
  upper-case-plus-``-`` characters.
* ``a2m``: as A3M, with ``.`` marking gaps in insert columns.
* ``stockholm``: ``# STOCKHOLM 1.0``, one or more blocks of ``name sequence``, ``//``. The query's
  non-gap columns are the match columns; the other columns are insertions.
* ``aligned-fasta``: every record the same length with ``-`` gaps; columns as Stockholm.
* ``fasta``: unaligned homologs (no gaps). No columns: weights are 1 and splits are by id hash
  (a warning says so; ``protein-performer homologs`` aligns them).

The query is the first record or ``query`` (an id). Members are kept as ungapped upper-case
residues (what the model trains on) and, for alignments, as codes of the query's columns
(0..19 for ``STANDARD_AMINO_ACIDS``, 20 for a gap or a non-standard residue): what the sequence
weights, the similarity splits and the profile are computed from.

Sequence weights (EVcouplings / DeepSequence): ``w_i = 1 / |{j : id(i, j) >= identity}|``, where
``id(i, j)`` is the share of i's non-gap columns at which j has the same residue (so ``w_i <= 1``,
and a member counts itself). ``Neff = sum(w)``.

Similarity splits: members are joined when ``max(id(i, j), id(j, i)) >= split_identity``; each
connected group goes, whole, to one split by the hash of its first member's id
(:mod:`.split_rule`; the query's group is always in train). So every held-out member is below
``split_identity`` to every training member, and held-out perplexity is not inflated by near copies.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from protein_performer.alphabet import STANDARD_AMINO_ACIDS
from protein_performer.corpus.fasta import open_binary
from protein_performer.corpus.split_rule import check_split_fractions, hash_unit, split_below

log = logging.getLogger(__name__)

FamilyFormat = Literal["a3m", "a2m", "stockholm", "aligned-fasta", "fasta"]
FAMILY_FORMATS: tuple[str, ...] = ("a3m", "a2m", "stockholm", "aligned-fasta", "fasta")
GAP = 20
"""Column code of a gap (or of a residue outside the 20 standard amino acids)."""
_CODE = np.full(256, GAP, dtype=np.uint8)
for _i, _a in enumerate(STANDARD_AMINO_ACIDS):
    _CODE[ord(_a)] = _i
_RESIDUE = re.compile(r"^[A-Za-z]*$")
_MAX_PAIRWISE = 60_000
"""Members above this need more than ~25 GiB for the identity matrix in blocks; refused with advice."""


@dataclass
class Family:
    """A query and its homologs."""

    path: Path
    format: str
    ids: list[str]
    sequences: list[str]
    """Ungapped upper-case residues of every member (the query included)."""
    query: int
    """Index of the query among the members."""
    columns: np.ndarray | None = None
    """(N, C) uint8 codes of the query's C columns (see the module docstring); None if unaligned."""
    weights: np.ndarray = field(default=None)  # type: ignore[assignment]
    """(N,) sequence weights (1 for unaligned sets)."""
    rows: list[str] | None = None
    """Aligned records as A3M rows (upper case and '-': the query's columns; lower case: insertions)."""

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def query_sequence(self) -> str:
        return self.sequences[self.query]

    @property
    def aligned(self) -> bool:
        return self.columns is not None

    @property
    def neff(self) -> float:
        return float(self.weights.sum())

    def residue_columns(self, k: int) -> np.ndarray:
        """(n_k,) the query column of each residue of member ``k``'s ungapped sequence (-1: insertion)."""
        if self.rows is None:
            raise ValueError(f"{self.path}: unaligned homologs have no columns")
        out, column = [], 0
        for c in self.rows[k]:
            if c == "-":
                column += 1
            elif c.isupper():
                out.append(column)
                column += 1
            elif c.islower():
                out.append(-1)
        return np.asarray(out, dtype=np.int64)

    def residue_positions(self, k: int) -> np.ndarray:
        """(n_k,) the position of each residue of member ``k`` in the query's frame: its column, an
        insertion the column before it (0 before the first): residues aligned to one column share
        a position, so with rotary positions they sit at distance 0 from each other."""
        return fill_insertions(self.residue_columns(k))


# --------------------------------------------------------------------------- reading


def add_family_arguments(group, *, query_help: str) -> None:
    """``--query`` and ``--family-format``, the same in every command that reads a homolog set."""
    group.add_argument("--query", default=None, help=query_help)
    group.add_argument("--family-format", default="auto", choices=("auto", *FAMILY_FORMATS))


def fill_insertions(columns: np.ndarray) -> np.ndarray:
    """(n,) columns with -1 for residues outside every column -> the last column before each (0
    before the first)."""
    columns = np.asarray(columns, dtype=np.int64)
    index = np.where(columns >= 0, np.arange(len(columns)), -1)
    last = np.maximum.accumulate(index) if len(index) else index
    return np.where(last >= 0, columns[np.maximum(last, 0)], 0)


def _text_lines(path: Path) -> list[str]:
    with open_binary(path) as fh:
        raw = fh.read()
    try:
        return raw.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a text file ({err}); give an A3M, A2M, Stockholm or FASTA file") from None


def sniff_family_format(path: Path, lines: list[str] | None = None) -> FamilyFormat:
    """The format of ``path`` from its suffix (``.a3m``, ``.a2m``, ``.sto``) or its content."""
    name = path.name.lower()
    for suffix in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(suffix)
    if name.endswith(".a3m"):
        return "a3m"
    if name.endswith(".a2m"):
        return "a2m"
    if name.endswith((".sto", ".stk", ".stockholm")):
        return "stockholm"
    lines = _text_lines(path) if lines is None else lines
    first = next((line for line in lines if line.strip()), "")
    if first.startswith("# STOCKHOLM"):
        return "stockholm"
    records = _fasta_records(path, lines)
    body = "".join(seq for _, seq in records)
    if body and not any(c.isupper() or c in "-." for c in body):
        return "fasta"  # residues in lower case only: a plain FASTA, not an alignment with no columns
    if any(c.islower() or c == "." for c in body):
        return "a3m"
    if "-" in body or (len(records) > 1 and len({len(seq) for _, seq in records}) == 1):
        return "aligned-fasta"
    return "fasta"


def _fasta_records(path: Path, lines: list[str]) -> list[tuple[str, str]]:
    records: list[tuple[str, list[str]]] = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(">"):
            records.append((line[1:].strip(), []))
        elif not records:
            raise ValueError(f"{path}: line {number} comes before the first '>' header; "
                             "give a FASTA / A3M file whose records start with '>'")
        else:
            records[-1][1].append(line.replace(" ", ""))
    return [(header, "".join(parts)) for header, parts in records]


def _stockholm_records(path: Path, lines: list[str]) -> list[tuple[str, str]]:
    order: list[str] = []
    parts: dict[str, list[str]] = {}
    block: set[str] = set()
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            block = set()  # blocks of an interleaved file are separated by blank lines
            continue
        if line.startswith("#"):
            continue
        if line == "//":
            break
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{path}: Stockholm line {line[:60]!r} is not 'name sequence'; check the file")
        name, seq = fields
        if name in block:
            raise ValueError(f"{path}: line {number}: the name {name!r} is used twice in one block; give every "
                             "sequence a unique name")
        block.add(name)
        if name not in parts:
            order.append(name)
            parts[name] = []
        parts[name].append(seq)
    return [(name, "".join(parts[name])) for name in order]


def read_family(path: Path, *, query: str | None = None, format: str = "auto", identity: float = 0.8) -> Family:
    """Read a homolog set (see the module docstring) and compute its sequence weights.

    Raises ``ValueError`` naming the file, the record and the fix for an empty set, an unknown
    query id, a character that is not an amino-acid code, or a ragged alignment.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such family file")
    lines = _text_lines(path)
    fmt = sniff_family_format(path, lines) if format == "auto" else format
    if fmt not in FAMILY_FORMATS:
        raise ValueError(f"family format must be one of {', '.join(FAMILY_FORMATS)} or auto, got {fmt!r}")
    records = _stockholm_records(path, lines) if fmt == "stockholm" else _fasta_records(path, lines)
    records = [(header.split()[0] if header.split() else f"record{k + 1}", seq) for k, (header, seq) in
               enumerate(records)]
    if not records:
        raise ValueError(f"{path}: no sequences; give the query and its homologs")
    ids = [name for name, _ in records]
    if query is None:
        q = 0
    elif query in ids:
        q = ids.index(query)
    else:
        raise ValueError(f"{path}: no record with id {query!r} for --query (first ids: {', '.join(ids[:5])}); "
                         "give one of the record ids, or leave --query out to use the first record")
    for k, (name, seq) in enumerate(records, start=1):
        bad = re.sub(r"[A-Za-z.\-*]", "", seq)
        if bad:
            raise ValueError(f"{path}: record {k} ({name!r}): character {bad[0]!r} is not an amino-acid code or gap; "
                             "fix or remove the record")
    rows = None
    if fmt in ("a3m", "a2m"):
        columns, sequences = _match_columns_a3m(path, records, q)
        rows = [seq.replace(".", "").replace("*", "") for _, seq in records]
    elif fmt in ("stockholm", "aligned-fasta"):
        columns, sequences = _match_columns_aligned(path, records, q)
        query_row = records[q][1]
        rows = ["".join(c.upper() if query_row[i] not in "-." else (c.lower() if c not in "-." else "")
                        for i, c in enumerate(seq)).replace(".", "").replace("*", "") for _, seq in records]
    else:
        for k, (name, seq) in enumerate(records, start=1):
            if "-" in seq or "." in seq:
                raise ValueError(f"{path}: record {k} ({name!r}) has gaps but the set was read as unaligned FASTA; "
                                 "pass --family-format aligned-fasta (or a3m)")
        columns, sequences = None, [seq.upper().replace("*", "") for _, seq in records]
    for k, seq in enumerate(sequences):
        if not seq:
            raise ValueError(f"{path}: record {k + 1} ({ids[k]!r}) has no residues; remove it")
    family = Family(path=path, format=fmt, ids=ids, sequences=sequences, query=q, columns=columns, rows=rows)
    family.weights = sequence_weights(family, identity) if columns is not None else np.ones(len(ids))
    if columns is None:
        log.warning("%s: unaligned homologs: every member weighs 1 and splits are by id hash, not by "
                    "identity (align them with `protein-performer homologs` for weights and similarity splits)", path)
    return family


def _match_columns_a3m(path: Path, records: list[tuple[str, str]], q: int) -> tuple[np.ndarray, list[str]]:
    width = None
    rows = []
    for k, (name, seq) in enumerate(records, start=1):
        match = "".join(c for c in seq if c.isupper() or c == "-")
        if width is None:
            width = len(match)
        elif len(match) != width:
            raise ValueError(f"{path}: record {k} ({name!r}) has {len(match)} aligned columns (upper case and '-'), "
                             f"the first record has {width}: a ragged A3M; realign it or remove the record")
        rows.append(np.frombuffer(match.encode("ascii"), dtype=np.uint8))
    if not width:
        raise ValueError(f"{path}: the query {records[q][0]!r} has no aligned columns (no upper-case residue or '-'): "
                         "an A3M/A2M marks the query's columns in upper case; for unaligned homologs pass "
                         "--family-format fasta")
    seqs = [re.sub(r"[.\-*]", "", seq).upper() for _, seq in records]
    return _CODE[np.stack(rows)], seqs


def _match_columns_aligned(path: Path, records: list[tuple[str, str]], q: int) -> tuple[np.ndarray, list[str]]:
    width = len(records[q][1])
    for k, (name, seq) in enumerate(records, start=1):
        if len(seq) != width:
            raise ValueError(f"{path}: record {k} ({name!r}) is {len(seq)} columns long, the query "
                             f"{records[q][0]!r} {width}: a ragged alignment; realign it or remove the record")
    raw = np.stack([np.frombuffer(seq.upper().encode("ascii"), dtype=np.uint8) for _, seq in records])  # (N, W)
    keep = (raw[q] != ord("-")) & (raw[q] != ord("."))
    seqs = [re.sub(r"[.\-*]", "", seq).upper() for _, seq in records]
    return _CODE[raw[:, keep]], seqs


# --------------------------------------------------------------------------- weights and splits


def _identity_blocks(columns: np.ndarray, block: int = 2048):
    """Yield ``(rows, same)``: for a block of members, (b, N) counts of columns where both have the
    same standard residue; computed as one-hot products in float32 (exact for counts < 2**24)."""
    n, c = columns.shape
    onehot = np.zeros((n, c * 20), dtype=np.float32)  # (N, C * 20)
    real = columns < GAP
    r, col = np.nonzero(real)
    onehot[r, col * 20 + columns[r, col]] = 1.0
    for lo in range(0, n, block):
        yield slice(lo, min(lo + block, n)), onehot[lo : lo + block] @ onehot.T  # (b, N)


def _close_blocks(family: Family, identity: float):
    """Yield ``(rows, close)``: for a block of members, (b, N) bool of the pairs within ``identity``
    either way (the larger of the two directional identities), the rule of the similarity splits."""
    _check_size(family)
    nongap = np.maximum((family.columns < GAP).sum(1), 1).astype(np.float64)
    for rows, same in _identity_blocks(family.columns):
        yield rows, (same >= identity * nongap[rows, None] - 1e-6) | (same >= identity * nongap[None, :] - 1e-6)


def near_members(family: Family, identity: float = 0.8) -> np.ndarray:
    """(N, N) bool: members within ``identity`` of each other either way (an aligned family), as
    :func:`similarity_splits` joins them; every member is near itself."""
    if family.columns is None:
        raise ValueError(f"{family.path}: identities need aligned homologs")
    near = np.zeros((len(family), len(family)), dtype=bool)
    for rows, close in _close_blocks(family, identity):
        near[rows] = close
    return near


def _check_size(family: Family) -> None:
    if len(family) > _MAX_PAIRWISE:
        raise ValueError(f"{family.path}: {len(family):,} members; weights and similarity splits compare every "
                         f"pair, so at most {_MAX_PAIRWISE:,} are supported; filter the set (e.g. hhfilter, or "
                         "--max-seqs in `protein-performer homologs`)")


def sequence_weights(family: Family, identity: float = 0.8) -> np.ndarray:
    """(N,) ``1 / |{j : id(i, j) >= identity}|`` (module docstring); 1 for every member if unaligned."""
    if not 0 < identity <= 1:
        raise ValueError(f"identity must be in (0, 1], got {identity}")
    if family.columns is None:
        return np.ones(len(family))
    _check_size(family)
    nongap = np.maximum((family.columns < GAP).sum(1), 1).astype(np.float64)  # (N,)
    neighbours = np.zeros(len(family))
    for rows, same in _identity_blocks(family.columns):
        neighbours[rows] = (same >= identity * nongap[rows, None] - 1e-6).sum(1)
    return 1.0 / np.maximum(neighbours, 1)


def similarity_splits(family: Family, *, split_identity: float = 0.8, valid_fraction: float = 0.05,
                      test_fraction: float = 0.05, salt: str = "") -> list[str]:
    """The split (``train`` / ``valid`` / ``test``) of every member: connected groups at
    ``split_identity`` (module docstring) go whole to one split, the query's to train."""
    if not 0 < split_identity <= 1:
        raise ValueError(f"split identity must be in (0, 1], got {split_identity}")
    check_split_fractions(valid_fraction, test_fraction)
    n = len(family)
    if family.columns is None:
        groups = np.arange(n)
    else:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        src, dst = [], []
        for rows, close in _close_blocks(family, split_identity):
            i, j = np.nonzero(close)
            src.append(i + rows.start)
            dst.append(j)
        src_a, dst_a = np.concatenate(src), np.concatenate(dst)
        graph = coo_matrix((np.ones(len(src_a), dtype=np.int8), (src_a, dst_a)), shape=(n, n))
        _, groups = connected_components(graph, directed=False)
    first_member: dict[int, int] = {}
    for i, g in enumerate(groups):
        first_member.setdefault(int(g), i)
    splits = []
    query_group = int(groups[family.query])
    for i, g in enumerate(groups):
        if int(g) == query_group:
            splits.append("train")
            continue
        u = hash_unit(family.ids[first_member[int(g)]], salt)
        splits.append(split_below(u, test_fraction, test_fraction + valid_fraction))
    return splits


# --------------------------------------------------------------------------- profile


def column_profile(family: Family, *, pseudocount: float = 0.5, weighted: bool = True,
                   members: np.ndarray | None = None) -> np.ndarray:
    """(C, 20) residue frequencies of the query's columns, ``(counts + pseudocount) / (total + 20 *
    pseudocount)`` with counts weighted by the sequence weights (``members``: a boolean subset)."""
    if family.columns is None:
        raise ValueError(f"{family.path}: a profile needs aligned homologs (A3M, A2M, Stockholm or aligned "
                         "FASTA); align them with `protein-performer homologs`")
    if not pseudocount > 0 or not np.isfinite(pseudocount):
        raise ValueError(f"pseudocount must be a positive number, got {pseudocount}")
    cols = family.columns if members is None else family.columns[members]
    w = (family.weights if weighted else np.ones(len(family)))
    w = w if members is None else w[members]
    counts = np.zeros((cols.shape[1], 20))
    for a in range(20):
        counts[:, a] = ((cols == a) * w[:, None]).sum(0)
    return (counts + pseudocount) / (counts.sum(1, keepdims=True) + 20 * pseudocount)
