"""How far a converted ESM-2 Performer (FAVOR+) is from the exact model, layer by layer.

The work is :mod:`protein_performer.experiments.bench.esm_gap`;
``python scripts/esm_favor_gap.py --help`` lists the options.
"""

import sys

from protein_performer.experiments.bench.esm_gap import main

if __name__ == "__main__":
    sys.exit(main())
