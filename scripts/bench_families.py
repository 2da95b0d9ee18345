"""Families benchmark: TEM-1 variant effects from a family-trained Performer, Performer vs exact.

The work is :mod:`protein_performer.experiments.bench.families`;
``python scripts/bench_families.py --help`` lists the options.
"""

import sys

from protein_performer.experiments.bench.families import main

if __name__ == "__main__":
    sys.exit(main())
