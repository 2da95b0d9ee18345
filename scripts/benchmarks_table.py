"""docs/benchmarks.md from the JSON files the benchmarks wrote.

The work is :mod:`protein_performer.experiments.report.benchmarks`;
``python scripts/benchmarks_table.py --help`` lists the options.
"""

import sys

from protein_performer.experiments.report.benchmarks import main

if __name__ == "__main__":
    sys.exit(main())
