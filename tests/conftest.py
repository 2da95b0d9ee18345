"""Shared fixtures: the real data from ../shared/data (never copied into the repo; locations,
environment variables and the skip rule in tests/shared_data.py) and a tiny trained checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared_data import MARK, require

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_FIXTURES = {"ecoli_fasta": "ecoli", "families_dir": "families", "variants_dir": "variants"}
"""Fixture -> the data location it reads: a test that uses one, directly or through other fixtures,
is marked ``shared_data`` with that location."""


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        needs = sorted({DATA_FIXTURES[f] for f in getattr(item, "fixturenames", ()) if f in DATA_FIXTURES})
        if needs:
            item.add_marker(getattr(pytest.mark, MARK)(*needs))


def pytest_runtest_setup(item) -> None:
    """Skip a ``shared_data`` test whose data is absent before any of its fixtures is built."""
    for mark in item.iter_markers(MARK):
        for name in mark.args:
            require(name)


@pytest.fixture(scope="session")
def ecoli_fasta() -> Path:
    """The E. coli K-12 proteome (``$PROTEIN_PERFORMER_ECOLI``, else ../shared/data/)."""
    return require("ecoli")


@pytest.fixture(scope="session")
def families_dir() -> Path:
    """The folder of the TEM-1 family alignment (``$PROTEIN_PERFORMER_FAMILIES``, else ../shared/data/families)."""
    return require("families")


@pytest.fixture(scope="session")
def variants_dir() -> Path:
    """The folder of the TEM-1 scan (``$PROTEIN_PERFORMER_VARIANTS``, else ../shared/data/variants)."""
    return require("variants")


@pytest.fixture(scope="session")
def prepared_ecoli(ecoli_fasta, tmp_path_factory) -> Path:
    """The E. coli proteome prepared into shards (train/valid/test) once per test session."""
    from protein_performer.corpus.prepare import prepare

    out = tmp_path_factory.mktemp("prepared") / "ecoli"
    prepare([ecoli_fasta], out)
    return out


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory) -> Path:
    """A tiny trained ProteinLM checkpoint (a few real Lightning steps), shared by the
    embedding and similarity tests; they only read it."""
    from model_utils import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.ckpt")


@pytest.fixture(scope="session")
def model(ckpt):
    """The tiny checkpoint's PerformerLM in eval mode (read-only in the tests that use it)."""
    from protein_performer.checkpoint import load_checkpoint

    return load_checkpoint(ckpt).model


@pytest.fixture(scope="session", autouse=True)
def _checksum_stamps_in_a_temporary_cache(tmp_path_factory):
    """Opening a dataset stamps each verified file in ``$PROTEIN_PERFORMER_CACHE``: keep a test run's
    stamps out of the user's ``~/.cache``."""
    import os

    old = os.environ.get("PROTEIN_PERFORMER_CACHE")
    os.environ["PROTEIN_PERFORMER_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("PROTEIN_PERFORMER_CACHE", None)
    else:
        os.environ["PROTEIN_PERFORMER_CACHE"] = old
