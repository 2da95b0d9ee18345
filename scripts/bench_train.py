"""Training-step benchmark: tokens/s and peak memory of the full protein LM, Performer vs exact.

The work is :mod:`protein_performer.experiments.bench.train`;
``python scripts/bench_train.py --help`` lists the options.
"""

import sys

from protein_performer.experiments.bench.train import main

if __name__ == "__main__":
    sys.exit(main())
