"""Test helper: write the prepared-dataset layout of ``corpus/shards.py`` directly.

This stands in for ``protein-performer prepare`` in tests (and the data-serving benchmark):
``write_prepared_dataset`` writes ``tokens.u8`` / ``offsets.i64`` / ``ids.txt`` per split and a
``manifest.json`` with the alphabet version and per-split counts. It does no FASTA validation.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from protein_performer.alphabet import ALPHABET, ALPHABET_VERSION
from protein_performer.corpus.shards import IDS_FILE, MANIFEST, OFFSETS_FILE, TOKENS_FILE


def random_proteins(rng: np.random.Generator, n: int, min_len: int = 5, max_len: int = 400) -> list[np.ndarray]:
    """``n`` random proteins of residue ids (standard and extended codes), lengths in [min_len, max_len]."""
    low, high = ALPHABET.amino_acid_indices[0], ALPHABET.amino_acid_indices[-1] + 1
    return [rng.integers(low, high, size=int(k), dtype=np.uint8) for k in rng.integers(min_len, max_len + 1, size=n)]


def write_prepared_dataset(out_dir: str | Path, splits: dict[str, list[np.ndarray]]) -> Path:
    """Write ``splits`` (split name -> proteins as ``uint8`` residue ids) in the prepared layout."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"alphabet_version": ALPHABET_VERSION, "source": "tests/shard_utils.py", "splits": {}}
    for split, proteins in splits.items():
        path = out_dir / split
        path.mkdir(exist_ok=True)
        tokens = np.concatenate(proteins).astype(np.uint8) if proteins else np.zeros(0, dtype=np.uint8)
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in proteins])]).astype("<i8")
        tokens.tofile(path / TOKENS_FILE)
        offsets.tofile(path / OFFSETS_FILE)
        (path / IDS_FILE).write_text("".join(f"{split}_{i}\n" for i in range(len(proteins))))
        manifest["splits"][split] = {
            "proteins": len(proteins),
            "residues": int(len(tokens)),
            "token_counts": np.bincount(tokens, minlength=len(ALPHABET)).tolist(),
        }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return out_dir


def read_fasta_tokens(fasta: str | Path) -> list[np.ndarray]:
    """Every record of a (gzip) FASTA file as residue ids (Bio.SeqIO + ALPHABET.encode)."""
    from Bio import SeqIO

    opener = gzip.open if str(fasta).endswith(".gz") else open
    with opener(fasta, "rt") as handle:
        return [ALPHABET.encode(str(record.seq)) for record in SeqIO.parse(handle, "fasta")]


def split_proteins(
    proteins: list[np.ndarray], valid: float = 0.05, test: float = 0.05, seed: int = 0
) -> dict[str, list[np.ndarray]]:
    """A random train/valid/test split of ``proteins`` by the given fractions."""
    order = np.random.default_rng(seed).permutation(len(proteins))
    n_valid, n_test = int(len(proteins) * valid), int(len(proteins) * test)
    pick = lambda idx: [proteins[i] for i in idx]  # noqa: E731
    return {
        "valid": pick(order[:n_valid]),
        "test": pick(order[n_valid : n_valid + n_test]),
        "train": pick(order[n_valid + n_test :]),
    }
