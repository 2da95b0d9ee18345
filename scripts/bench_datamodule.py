"""Throughput of ProteinDataModule: windows/s and tokens/s served to the training loop.

The work is :mod:`protein_performer.experiments.bench.datamodule`;
``python scripts/bench_datamodule.py --help`` lists the options.
"""

import sys

from protein_performer.experiments.bench.datamodule import main

if __name__ == "__main__":
    sys.exit(main())
