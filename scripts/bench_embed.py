"""Embedding throughput: Performer (FAVOR+ softmax) vs exact attention of the same shape.

The work is :mod:`protein_performer.experiments.bench.embed`;
``python scripts/bench_embed.py --help`` lists the options.
"""

import sys

from protein_performer.experiments.bench.embed import main

if __name__ == "__main__":
    sys.exit(main())
