"""The project's own multi-assay benchmark: the shared assays, plus two derived from them that stand
for the cases the hidden set holds (:func:`main`, ``scripts/bench_assays.py``).

* ``data/benchmarks/shared_assays.csv``: TEM-1 (a DMS, a prokaryote, A3M) and P53 (ClinVar labels,
  human, EVE's A2M with query insert columns).
* ``P53_HUMAN_ClinVar_1k``: the same labels with 1,000 records of P53's A2M (the query and 999
  others drawn at random, seed 0): a small family (the size of the issue's human example, whose
  1,197 homologs had Neff 135), for the rule that a small family must not overfit.
* ``P53_HUMAN_ClinVar_region``: the same labels with the A2M cut to the query's residues 94-312
  (the DNA-binding domain; every record cut at the same alignment positions), given as
  ``MSA_start`` 94 / ``MSA_end`` 312 of the full target: a region-only alignment, whose labels
  outside the region are scored by the model alone and counted.

The derived alignments are written into the work folder from the shared files; nothing is copied
into the repository. Which records and which region were fixed before any result.

    python scripts/bench_assays.py [--work outputs/benchmark] [--shared ../shared/data] [--also-last]

The benchmark's ``summary.json`` (its ``command`` the one above) is kept as docs/benchmarks/assays.json,
in git, and the table of docs/benchmarks/families.md is :func:`doc_block` of it: a function of that file.

Resumable as the benchmark command is: a finished assay is not redone. Run it alone on the machine
(the minutes per stage are measured).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
from pathlib import Path

from protein_performer.experiments import places

log = logging.getLogger(__name__)

SMALL_FAMILY = 1000
REGION = (94, 312)


def _records(path: Path) -> list[tuple[str, str]]:
    records: list[tuple[str, list[str]]] = []
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            records.append((line[1:].strip(), []))
        elif line.strip():
            records[-1][1].append(line.strip())
    return [(h, "".join(p)) for h, p in records]


def _write(path: Path, records: list[tuple[str, str]]) -> None:
    from protein_performer.outputs import written_atomically

    with written_atomically(path) as tmp:
        tmp.write_text("".join(f">{h}\n{s}\n" for h, s in records))


def subsample(src: Path, dst: Path, n: int, seed: int = 0) -> Path:
    """The query and ``n - 1`` other records of an alignment drawn at random (``seed``), in file order."""
    import numpy as np

    records = _records(src)
    keep = np.sort(np.random.default_rng(seed).choice(np.arange(1, len(records)), n - 1, replace=False))
    _write(dst, [records[0], *(records[k] for k in keep)])
    return dst


def a2m_region(src: Path, dst: Path, start: int, end: int) -> Path:
    """An A2M (every row the same length, ``.`` in insert columns) cut to the query's residues
    ``start``..``end`` (1-based): every row keeps the same alignment positions, from the query's
    residue ``start`` to its residue ``end``; the query's id gets ``/start-end``."""
    records = _records(src)
    query = records[0][1]
    if len({len(s) for _, s in records}) != 1:
        raise ValueError(f"{src}: rows of different lengths: not an A2M with '.' in insert columns")
    residue_at = [k for k, c in enumerate(query) if c.isalpha()]
    if end > len(residue_at):
        raise ValueError(f"{src}: the query has {len(residue_at)} residues, fewer than {end}")
    lo, hi = residue_at[start - 1], residue_at[end - 1] + 1
    name = re.sub(r"/\d+-\d+$", "", records[0][0].split()[0])
    out = [(f"{name}/{start}-{end}", query[lo:hi])]
    out += [(h, s[lo:hi]) for h, s in records[1:] if any(c.isalpha() for c in s[lo:hi])]
    _write(dst, out)
    return dst


def build_reference(shared_reference: Path, shared: Path, work: Path) -> Path:
    """The rows of ``shared_reference`` (alignments in ``shared/families``) plus the derived assays,
    every alignment reachable from ``work/msa``; returns the reference CSV written in ``work``."""
    msa = work / "msa"
    msa.mkdir(parents=True, exist_ok=True)
    with open(shared_reference, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        target = msa / row["MSA_filename"]
        if not target.exists():
            target.symlink_to((shared / "families" / row["MSA_filename"]).resolve())
    p53 = next(r for r in rows if r["DMS_id"] == "P53_HUMAN_ClinVar")
    src = shared / "families" / p53["MSA_filename"]
    subsample(src, msa / "P53_HUMAN_random1000.a2m", SMALL_FAMILY)
    a2m_region(src, msa / "P53_HUMAN_94-312.a2m", *REGION)
    rows.append({**p53, "DMS_id": "P53_HUMAN_ClinVar_1k", "MSA_filename": "P53_HUMAN_random1000.a2m",
                 "selection_type": p53["selection_type"] + "; 1,000 records of the A2M (seed 0)"})
    rows.append({**p53, "DMS_id": "P53_HUMAN_ClinVar_region", "MSA_filename": "P53_HUMAN_94-312.a2m",
                 "MSA_start": REGION[0], "MSA_end": REGION[1],
                 "selection_type": p53["selection_type"] + f"; A2M cut to residues {REGION[0]}-{REGION[1]}"})
    reference = work / "reference.csv"
    with open(reference, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return reference


DOC_START = "<!-- benchmark table: generated by scripts/bench_assays.py; do not edit by hand -->"
"""The table's first marker in docs/benchmarks/families.md (the block is :func:`doc_block`)."""
DOC_END = "<!-- end of the benchmark table -->"


def update_doc(doc: Path, table: str) -> None:
    """Put ``table`` between the markers of ``doc`` (appended with them if absent)."""
    text = doc.read_text() if doc.exists() else ""
    block = f"{DOC_START}\n{table.rstrip()}\n{DOC_END}"
    if DOC_START in text and DOC_END in text:
        head, rest = text.split(DOC_START, 1)
        text = head + block + rest.split(DOC_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


def create_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("outputs/benchmark"))
    parser.add_argument("--shared", type=Path, default=places.shared_data())
    parser.add_argument("--table", type=Path, default=Path("data/benchmarks/shared_assays.csv"),
                        help="the shared assays' reference file")
    parser.add_argument("--also-last", action="store_true", help="also score each run's last checkpoint")
    parser.add_argument("--assays", nargs="+", default=None)
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks/families.md"))
    parser.add_argument("--json", type=Path, default=Path("docs/benchmarks/assays.json"),
                        help="where the summary behind --doc's table is kept")
    return parser


def doc_block(summary: dict) -> str:
    """The table of docs/benchmarks/families.md from the benchmark's summary (docs/benchmarks/assays.json)."""
    from protein_performer.experiments.benchmark import summary_markdown

    return summary_markdown(summary["assays"], {k: v for k, v in summary.items() if k != "assays"})


def main(argv: list[str] | None = None) -> int:
    """Run ``protein-performer benchmark`` on the shared and derived assays and put its table into
    ``--doc``; the benchmark's exit status."""
    from protein_performer.cli import main as cli

    args = create_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    reference = build_reference(args.table, args.shared, args.work)
    code = cli(["benchmark", "--reference", str(reference), "--dms-dir", str(args.shared / "variants"),
                "--msa-dir", str(args.work / "msa"), "--out", str(args.work / "run"),
                *(["--also-last"] if args.also_last else []), *(["--assays", *args.assays] if args.assays else [])])
    summary = json.loads((args.work / "run" / "summary.json").read_text())
    summary["command"] = "python scripts/bench_assays.py" + (" --also-last" if args.also_last else "")
    args.json.write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")
    update_doc(args.doc, doc_block(summary))
    log.info("table written into %s (from %s)", args.doc, args.json)
    return code
