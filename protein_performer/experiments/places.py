"""Where the experiments read and write outside the package: the working directory and the shared data.

The workflows run from a checkout's root (``make demo``, ``python scripts/...``): their default inputs
(``data/``) and outputs (``outputs/``, ``runs/``, ``docs/``) are relative to the working directory, never
to where the package is installed, and each is also a flag. The data shared beside the checkout (the
E. coli proteome, the TEM-1 family and its scan) is in ``$PROTEIN_PERFORMER_SHARED_DATA`` where that is
set, else in ``../shared/data``.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA_ENV = "PROTEIN_PERFORMER_SHARED_DATA"
"""The environment variable naming the shared data folder (default: ``../shared/data``)."""
ECOLI_FILE = "UP000000625_83333.fasta.gz"
"""The E. coli K-12 reference proteome's file in the shared data folder."""


def workdir() -> Path:
    """The working directory, absolute: the root of every default input and output."""
    return Path.cwd()


def shared_data() -> Path:
    """The shared data folder: ``$PROTEIN_PERFORMER_SHARED_DATA``, else ``../shared/data`` (absolute)."""
    named = os.environ.get(SHARED_DATA_ENV)
    return Path(named).resolve() if named else workdir().parent / "shared" / "data"


def ecoli() -> Path:
    """The shared E. coli K-12 proteome (:data:`ECOLI_FILE` in :func:`shared_data`)."""
    return shared_data() / ECOLI_FILE
