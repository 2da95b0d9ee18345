"""What FAVOR+ learns per step and per CPU-second, against exact attention (the learning study).

The work is :mod:`protein_performer.experiments.study`;
``python scripts/study_learning.py --help`` lists the options.
"""

import sys

from protein_performer.experiments.study import main

if __name__ == "__main__":
    sys.exit(main())
