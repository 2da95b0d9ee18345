"""Where the tests find the real data (never copied into the repository), and what they do without it.

Three locations, each overridable by an environment variable:

- ``ecoli``: the E. coli K-12 proteome, ``$PROTEIN_PERFORMER_ECOLI`` (a file), else
  ``../shared/data/UP000000625_83333.fasta.gz``;
- ``families``: the TEM-1 family alignment, ``$PROTEIN_PERFORMER_FAMILIES`` (a folder), else
  ``../shared/data/families/``;
- ``variants``: the TEM-1 deep mutational scan, ``$PROTEIN_PERFORMER_VARIANTS`` (a folder), else
  ``../shared/data/variants/``.

A test that reads one is marked ``shared_data`` (tests/conftest.py adds the mark to every test
whose fixtures reach the data) and is skipped, with how to get the data, when it is absent; with
``PROTEIN_PERFORMER_REQUIRE_DATA=1`` (CI, which has the data) it fails instead of skipping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REQUIRE_ENV = "PROTEIN_PERFORMER_REQUIRE_DATA"
MARK = "shared_data"


@dataclass(frozen=True)
class DataLocation:
    """One data location of the tests: the environment variable that overrides it, its default,
    the file inside it that must exist, and how to get it."""

    env: str
    default: Path
    needed: str  # a file name inside a folder location ("" when the location is the file itself)
    how: str

    @property
    def path(self) -> Path:
        value = os.environ.get(self.env)
        return Path(value) if value else self.default


LOCATIONS: dict[str, DataLocation] = {
    "ecoli": DataLocation(
        "PROTEIN_PERFORMER_ECOLI", SHARED / "UP000000625_83333.fasta.gz", "",
        "`protein-performer fetch --proteome UP000000625 --out ../shared/data/UP000000625_83333.fasta.gz` "
        "(from the repository root), or set PROTEIN_PERFORMER_ECOLI to a copy"),
    "families": DataLocation(
        "PROTEIN_PERFORMER_FAMILIES", SHARED / "families", "BLAT_ECOLX_ColabFold_2202.a3m",
        "put BLAT_ECOLX_ColabFold_2202.a3m (OpenProteinAI/PoET, data/) in ../shared/data/families/, or set "
        "PROTEIN_PERFORMER_FAMILIES to the folder holding it"),
    "variants": DataLocation(
        "PROTEIN_PERFORMER_VARIANTS", SHARED / "variants", "BLAT_ECOLX_Ranganathan2015.csv",
        "put BLAT_ECOLX_Ranganathan2015.csv (facebookresearch/esm, examples/variant-prediction/data/) and "
        "BLAT_ECOLX_Ranganathan2015.fasta (its wild type from residue 24) in ../shared/data/variants/, or set "
        "PROTEIN_PERFORMER_VARIANTS to the folder holding them"),
}


def data_path(name: str) -> Path:
    """The location ``name`` (a key of :data:`LOCATIONS`) as configured now; it may not exist."""
    return LOCATIONS[name].path


def require(name: str) -> Path:
    """The location ``name``; when its file is absent the calling test is skipped with how to get
    it (or fails, under ``PROTEIN_PERFORMER_REQUIRE_DATA=1``)."""
    location = LOCATIONS[name]
    path = location.path
    if not (path / location.needed if location.needed else path).is_file():
        message = f"{path / location.needed if location.needed else path} not found ({name} data): {location.how}"
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            pytest.fail(f"{message} ({REQUIRE_ENV} is set)")
        pytest.skip(message)
    return path
