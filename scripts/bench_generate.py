"""Cost of one generated token at positions 512, 4,096 and 16,384 (ratios, not absolutes).

The work is :mod:`protein_performer.experiments.bench.generate`;
``python scripts/bench_generate.py --help`` lists the options.
"""

import sys

from protein_performer.experiments.bench.generate import main

if __name__ == "__main__":
    sys.exit(main())
