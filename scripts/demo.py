"""`make demo`: the main job end to end on the E. coli proteome (or a FASTA you name).

The work is :mod:`protein_performer.experiments.demo`;
``python scripts/demo.py --help`` lists the options.
"""

import sys

from protein_performer.experiments.demo import main

if __name__ == "__main__":
    sys.exit(main())
