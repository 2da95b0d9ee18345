"""The multi-assay benchmark: `protein-performer benchmark` on the shared assays, its table into families.md.

The work is :mod:`protein_performer.experiments.assays`;
``python scripts/bench_assays.py --help`` lists the options.
"""

import sys

from protein_performer.experiments.assays import main

if __name__ == "__main__":
    sys.exit(main())
