"""Peak memory of embedding one long protein in one window with a converted ESM-2 Performer.

The work is :mod:`protein_performer.experiments.bench.embed_memory`;
``python scripts/bench_embed_memory.py --help`` lists the options.
"""

import sys

from protein_performer.experiments.bench.embed_memory import main

if __name__ == "__main__":
    sys.exit(main())
