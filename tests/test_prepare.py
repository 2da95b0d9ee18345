"""``prepare``: shards, manifest, deterministic and stable splits, atomic writes, CLI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from protein_performer import cli
from protein_performer.alphabet import ALPHABET, ALPHABET_VERSION
from protein_performer.corpus import prepare as prep
from protein_performer.corpus.fasta import CleaningPolicy
from protein_performer.corpus.shards import SPLITS, open_split, read_manifest

MALFORMED = Path(__file__).parent / "data" / "malformed"


@pytest.fixture(scope="module")
def ecoli_dataset(tmp_path_factory, ecoli_fasta):
    out = tmp_path_factory.mktemp("prep") / "ecoli"
    return out, prep.prepare([ecoli_fasta], out)


def shards(out: Path) -> dict:
    return {s: open_split(out, s) for s in SPLITS}


def test_manifest(ecoli_dataset, ecoli_fasta):
    out, manifest = ecoli_dataset
    assert read_manifest(out) == manifest
    assert manifest["alphabet_version"] == ALPHABET_VERSION
    assert manifest["inputs"][0]["sha256"] == prep.sha256_of(ecoli_fasta)
    assert manifest["inputs"][0]["bytes"] == ecoli_fasta.stat().st_size
    counts = manifest["counts"]
    assert (counts["records_read"], counts["kept"], counts["duplicate_ids"]) == (4352, 4352, 0)
    assert counts["skipped"] == {} and counts["oddities"] == {}
    assert manifest["residues"] == 1_353_365
    splits = manifest["splits"]
    assert sum(splits[s]["proteins"] for s in SPLITS) == 4352
    assert sum(splits[s]["residues"] for s in SPLITS) == 1_353_365
    assert 0.03 < splits["valid"]["proteins"] / 4352 < 0.07 and 0.03 < splits["test"]["proteins"] / 4352 < 0.07
    total = np.sum([splits[s]["token_counts"] for s in SPLITS], axis=0)
    assert total[ALPHABET.index("X")] == 8 and total[ALPHABET.index("U")] == 3 and total.sum() == 1_353_365


def test_shards_match_manifest_and_input(ecoli_dataset, ecoli_fasta):
    out, manifest = ecoli_dataset
    from protein_performer.corpus.fasta import read_fasta

    by_id = {r.id: r.tokens for r in read_fasta(ecoli_fasta)}
    seen = []
    for split, shard in shards(out).items():
        info = manifest["splits"][split]
        assert len(shard) == len(shard.ids) == info["proteins"] and shard.offsets[-1] == info["residues"]
        assert shard.offsets.dtype == np.dtype("<i8") and shard.offsets[0] == 0
        assert np.bincount(shard.tokens, minlength=len(ALPHABET)).tolist() == info["token_counts"]
        for i in range(0, len(shard), 37):
            assert shard.protein(i).tobytes() == by_id[shard.ids[i]]
        assert all(prep.SplitFractions().split_of(pid) == split for pid in shard.ids)
        seen += shard.ids
    assert sorted(seen) == sorted(by_id)


def test_rerun_is_idempotent_and_different_options_need_overwrite(ecoli_dataset, ecoli_fasta, caplog):
    out, manifest = ecoli_dataset
    with caplog.at_level("INFO"):
        assert prep.prepare([ecoli_fasta], out) == manifest
    assert "up to date" in caplog.text
    with pytest.raises(ValueError, match="--overwrite"):
        prep.prepare([ecoli_fasta], out, valid_fraction=0.1)


def test_split_is_deterministic_and_stable_when_corpus_grows(tmp_path, ecoli_fasta):
    small = tmp_path / "first_half.fasta"
    records = gzip.decompress(ecoli_fasta.read_bytes()).split(b"\n>")
    small.write_bytes(b"\n>".join(records[:2000]) + b"\n")
    extra = tmp_path / "extra.fasta"
    extra.write_bytes(b">" + b"\n>".join(records[2000:]))
    a = prep.prepare([small], tmp_path / "a")
    b = prep.prepare([small], tmp_path / "b")
    grown = prep.prepare([small, extra], tmp_path / "grown")
    assert a["splits"] == b["splits"]
    assert grown["counts"]["kept"] == 4352
    for split in SPLITS:
        ids_a, ids_grown = open_split(tmp_path / "a", split).ids, open_split(tmp_path / "grown", split).ids
        assert ids_grown[: len(ids_a)] == ids_a  # every old protein stays where it was
        tokens_a, tokens_b = (tmp_path / d / split / "tokens.u8" for d in ("a", "b"))
        assert tokens_a.read_bytes() == tokens_b.read_bytes()
    salted = prep.prepare([small], tmp_path / "salted", salt="other")
    assert salted["counts"] == a["counts"]
    assert set(open_split(tmp_path / "salted", "test").ids) != set(open_split(tmp_path / "a", "test").ids)


def test_interrupted_run_leaves_no_dataset(tmp_path, ecoli_fasta, monkeypatch):
    calls = {"n": 0}
    original = prep.SplitWriter.add

    def failing_add(self, protein_id, tokens):
        calls["n"] += 1
        if calls["n"] == 3000:
            raise KeyboardInterrupt("simulated interruption")
        original(self, protein_id, tokens)

    monkeypatch.setattr(prep, "FLUSH_BYTES", 1000)  # so data is already on disk when it stops
    monkeypatch.setattr(prep.SplitWriter, "add", failing_add)
    out = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        prep.prepare([ecoli_fasta], out)
    with pytest.raises(FileNotFoundError):
        read_manifest(out)
    assert list(tmp_path.iterdir()) == []  # temporary directory removed


def test_overwrite_replaces_dataset(tmp_path):
    out = tmp_path / "ds"
    first = prep.prepare([MALFORMED / "lengths.fasta"], out)
    second = prep.prepare([MALFORMED / "lengths.fasta"], out, policy=CleaningPolicy(min_residues=5), overwrite=True)
    assert first["counts"]["kept"] == 4 and second["counts"]["kept"] == 3
    assert second["counts"]["skipped"] == {"too_short": 1}
    assert read_manifest(out) == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_swiss_and_counts_of_oddities(tmp_path):
    out = tmp_path / "ds"
    inputs = [MALFORMED / n for n in ("tiny.dat", "duplicates.fasta", "gaps.fasta", "lowercase.fasta")]
    manifest = prep.prepare(inputs, out, valid_fraction=0.0, test_fraction=0.0)
    counts = manifest["counts"]
    assert [i["format"] for i in manifest["inputs"]] == ["swiss", "fasta", "fasta", "fasta"]
    assert counts["records_read"] == 2 + 4 + 3 + 2 and counts["kept"] == 2 + 4 + 2 + 2
    assert counts["duplicate_ids"] == 2 and counts["skipped"] == {"empty": 1}
    assert counts["oddities"] == {"gap_chars": 3, "lowercase": 1}
    assert manifest["splits"]["train"]["proteins"] == 10 and manifest["splits"]["valid"]["proteins"] == 0
    assert open_split(out, "valid").tokens.size == 0


def test_refuses_unrelated_directory(tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "todo.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a prepared dataset.*--overwrite"):
        prep.prepare([MALFORMED / "lengths.fasta"], out)
    with pytest.raises(ValueError, match="sum to less than 1"):
        prep.prepare([MALFORMED / "lengths.fasta"], tmp_path / "x", valid_fraction=0.6, test_fraction=0.5)


def test_cli(tmp_path, ecoli_fasta, capsys):
    out = tmp_path / "cli"
    assert cli.main(["prepare", str(ecoli_fasta), "--out", str(out), "--valid-fraction", "0.1",
                     "--test-fraction", "0.1", "--max-residues", "1000", "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["max_length"] == 1000 and manifest["split_fractions"]["valid"] == 0.1
    assert manifest["counts"]["kept"] + manifest["counts"]["skipped"]["too_long"] == 4352
    assert "records read" in capsys.readouterr().err
    bad = tmp_path / "bad"
    assert cli.main(["prepare", str(MALFORMED / "bad_char.fasta"), "--out", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad_char.fasta: record 2 ('P99998'): character 'J'" in err and "--unknown=x" in err
    assert not bad.exists()
    assert cli.main(["prepare", str(MALFORMED / "bad_char.fasta"), "--out", str(bad), "--unknown", "skip",
                     "--quiet"]) == 0
    assert read_manifest(bad)["counts"]["skipped"] == {"unknown_char": 1}


def test_out_is_a_file(tmp_path):
    out = tmp_path / "file"
    out.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        prep.prepare([MALFORMED / "lengths.fasta"], out)


def test_one_split_rule_for_proteins_and_families():
    """``split_rule`` is the one home of the hash-to-[0, 1) rule: the formula the manifest states,
    exact in integers for prepare, the same splits in floats for a family's groups (the two forms
    agree unless ``u`` is within 2**-53 of a threshold)."""
    import hashlib

    from protein_performer.corpus import families, prepare_inputs, split_rule

    assert prep.SplitFractions is split_rule.SplitFractions and prep.SPLIT_RULE == split_rule.SPLIT_RULE
    assert prepare_inputs.SplitFractions is split_rule.SplitFractions
    assert families.hash_unit is split_rule.hash_unit
    ids = [f"P{k:05d}" for k in range(3000)]
    for pid in ids[:50]:
        digest = hashlib.blake2b(("salt" + pid).encode(), digest_size=8).digest()
        assert split_rule.hash_bits(pid, "salt") == int.from_bytes(digest, "little")
        assert split_rule.hash_unit(pid, "salt") == int.from_bytes(digest, "little") / 2**64
    fractions = split_rule.SplitFractions(valid=0.1, test=0.2, salt="s")
    by_bits = [fractions.split_of(pid) for pid in ids]
    by_unit = [split_rule.split_below(split_rule.hash_unit(pid, "s"), 0.2, 0.3) for pid in ids]
    assert by_bits == by_unit
    assert {s: by_bits.count(s) / len(ids) for s in SPLITS} == pytest.approx({"train": 0.7, "valid": 0.1,
                                                                               "test": 0.2}, abs=0.03)
    # an unaligned family is split member by member with the same rule, in floats
    fam = families.Family(path=Path("f.fasta"), ids=ids[:200], sequences=["MKV"] * 200, query=0, columns=None,
                          weights=np.ones(200), format="fasta")
    got = families.similarity_splits(fam, valid_fraction=0.1, test_fraction=0.2, salt="s")
    assert got[1:] == by_unit[1:200] and got[0] == "train"  # the query's group is always in train
