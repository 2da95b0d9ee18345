"""Shared fixtures: the real E. coli proteome from ../shared/data (never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ECOLI_NAME = "UP000000625_83333.fasta.gz"


def ecoli_path() -> Path:
    """The shared E. coli K-12 proteome: $PROTEIN_PERFORMER_ECOLI, else ../shared/data/."""
    env = os.environ.get("PROTEIN_PERFORMER_ECOLI")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / ECOLI_NAME


@pytest.fixture(scope="session")
def ecoli_fasta() -> Path:
    path = ecoli_path()
    if not path.is_file():
        pytest.fail(f"{path} not found: tests read the shared E. coli proteome from ../shared/data "
                    "(or set PROTEIN_PERFORMER_ECOLI to its path)")
    return path


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
