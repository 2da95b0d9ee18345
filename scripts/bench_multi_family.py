"""Many families, one model: does a Performer read a family it never saw from its window?

The work is :mod:`protein_performer.experiments.bench.multi_family`;
``python scripts/bench_multi_family.py --help`` lists the options.
"""

import sys

from protein_performer.experiments.bench.multi_family import main

if __name__ == "__main__":
    sys.exit(main())
