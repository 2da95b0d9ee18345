"""Approximation error of FAVOR+ attention vs the number of random features (paper Fig. 4).

The work is :mod:`protein_performer.experiments.bench.approximation`;
``python scripts/plot_approximation.py --help`` lists the options.
"""

import sys

from protein_performer.experiments.bench.approximation import main

if __name__ == "__main__":
    sys.exit(main())
