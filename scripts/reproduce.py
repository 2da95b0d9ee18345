"""`make reproduce`: the Performer paper's protein experiments on E. coli, written to docs/RESULTS.md.

The work is :mod:`protein_performer.experiments.reproduce`;
``python scripts/reproduce.py --help`` lists the options.
"""

import sys

from protein_performer.experiments.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
