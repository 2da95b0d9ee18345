"""`prepare` throughput and peak memory against a plain Bio.SeqIO parse.

The work is :mod:`protein_performer.experiments.bench.data`;
``python scripts/bench_data.py --help`` lists the options.
"""

import sys

from protein_performer.experiments.bench.data import main

if __name__ == "__main__":
    sys.exit(main())
