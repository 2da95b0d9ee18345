"""`make variants`: a protein's family to variant-effect scores, end to end (TEM-1 by default).

The workflow lives in :mod:`protein_performer.experiments.families`; see its docstring.
"""

import sys

from protein_performer.experiments.families import main

if __name__ == "__main__":
    sys.exit(main())
