"""The multi-assay benchmark (docs/benchmarks/families.md, "Many assays"): the shared assays and two
derived from them (:mod:`protein_performer.experiments.assays`), run by `protein-performer benchmark`,
and its table put into docs/benchmarks/families.md.

    python scripts/bench_assays.py [--work outputs/benchmark] [--shared ../shared/data] [--also-last]

Resumable as the benchmark command is: a finished assay is not redone. Run it alone on the machine
(the minutes per stage are measured).
"""

import argparse
import logging
import sys
from pathlib import Path

from protein_performer.cli import main as cli
from protein_performer.experiments.assays import build_reference, update_doc
from protein_performer.experiments.benchmark import summary_markdown

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "benchmark")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--also-last", action="store_true", help="also score each run's last checkpoint")
    parser.add_argument("--assays", nargs="+", default=None)
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks" / "families.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    reference = build_reference(REPO / "data" / "benchmarks" / "shared_assays.csv", args.shared, args.work)
    code = cli(["benchmark", "--reference", str(reference), "--dms-dir", str(args.shared / "variants"),
                "--msa-dir", str(args.work / "msa"), "--out", str(args.work / "run"),
                *(["--also-last"] if args.also_last else []), *(["--assays", *args.assays] if args.assays else [])])
    import json

    summary = json.loads((args.work / "run" / "summary.json").read_text())
    meta = {k: v for k, v in summary.items() if k != "assays"}
    meta["command"] = "python scripts/bench_assays.py" + (" --also-last" if args.also_last else "")
    update_doc(args.doc, summary_markdown(summary["assays"], meta))
    logging.getLogger("bench_assays").info("table written into %s", args.doc)
    return code


if __name__ == "__main__":
    sys.exit(main())
