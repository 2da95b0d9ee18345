"""Attention benchmark: FAVOR+ vs exact SDPA vs performer-pytorch, forward + backward (paper Fig. 3).

The work is :mod:`protein_performer.experiments.bench.attention`;
``python scripts/bench_attention.py --help`` lists the options.
"""

import sys

from protein_performer.experiments.bench.attention import main

if __name__ == "__main__":
    sys.exit(main())
