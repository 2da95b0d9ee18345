"""Many families in one dataset: ``protein-performer paralogs`` splits a real proteome (a slice of
E. coli K-12 with the OmpR response regulators) into families, ``prepare --family A B ...`` keeps
each member's family, and every training window holds members of one family only."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from protein_performer.alphabet import ALPHABET
from protein_performer.cli import main
from protein_performer.corpus.fasta import read_records
from protein_performer.corpus.shards import open_split

OMPR_FAMILY = {"P0AA16", "P0AFJ5", "P0AE88", "P69228", "P0ACZ8", "P0A9Q1", "P21866", "P23836", "P30843",
               "P52076", "P38684"}  # OmpR and its PhoB-like paralogs (tests/test_homologs.py)
IS3_FAMILY = {"P0CF53", "P0CF54", "P0CF55", "P0CF56", "P0CF57", "P0CF58",  # InsD1-6: one sequence, six copies
              "P0CF79", "P0CF80", "P0CF81", "P0CF82", "P0CF83", "P0CF60", "P19769"}  # InsF1-5, InsD8, InsK


@pytest.fixture(scope="module")
def proteome_slice(ecoli_fasta, tmp_path_factory) -> Path:
    """The first 300 proteins of the proteome plus the OmpR family and IS3 transposases (exact
    copies among them), as FASTA."""
    records = list(read_records(ecoli_fasta))
    keep = records[:300] + [r for r in records[300:] if r.id in OMPR_FAMILY | IS3_FAMILY]
    path = tmp_path_factory.mktemp("slice") / "slice.fasta"
    path.write_text("".join(f">{r.header}\n{r.sequence}\n" for r in keep))
    return path


def _index(out: Path) -> list[dict]:
    with open(out / "families.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _members(a3m: Path) -> list[str]:
    return [line.split("|")[1] for line in a3m.read_text().splitlines() if line.startswith(">")]


@pytest.fixture(scope="module")
def paralog_dir(proteome_slice, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("paralogs") / "families"
    assert main(["paralogs", "--db", str(proteome_slice), "--out-dir", str(out), "--min-members", "4",
                 "--min-neff", "2", "--cpus", "2", "--quiet"]) == 0
    return out


def test_paralogs_writes_disjoint_families_with_the_ompr_regulators(paralog_dir, proteome_slice):
    rows = _index(paralog_dir)
    sequence = {r.id: r.sequence for r in read_records(proteome_slice)}
    queries = [sequence[row["query"]] for row in rows]
    assert len(set(queries)) == len(queries)  # an exact copy of a query is covered by its family
    assert sum(bool(set(_members(paralog_dir / row["file"])) & IS3_FAMILY) for row in rows) == 1
    assert rows, "no family written"
    queries = [row["query"] for row in rows]
    seen: dict[str, str] = {}
    for row in rows:
        members = _members(paralog_dir / row["file"])
        assert members[0] == row["query"] and len(members) == int(row["members"]) >= 4
        assert float(row["neff"]) >= 2
        for m in members:  # a family's query is never a member found by an earlier family
            if m in queries and m != row["query"]:
                assert queries.index(m) > queries.index(row["query"])
            seen.setdefault(m, row["query"])
    ompr = [row for row in rows if set(_members(paralog_dir / row["file"])) & OMPR_FAMILY]
    assert len(ompr) == 1  # the regulators form one family, searched once
    assert len(set(_members(paralog_dir / ompr[0]["file"])) & OMPR_FAMILY) >= 8


def test_paralogs_exclude_removes_a_held_out_family(proteome_slice, ecoli_fasta, tmp_path):
    query = next(r for r in read_records(ecoli_fasta) if r.id == "P0AA16")
    held_out = tmp_path / "ompr.fasta"
    held_out.write_text(f">{query.header}\n{query.sequence}\n")
    out = tmp_path / "families"
    assert main(["paralogs", "--db", str(proteome_slice), "--out-dir", str(out), "--min-members", "4",
                 "--min-neff", "2", "--exclude", str(held_out), "--cpus", "2", "--quiet"]) == 0
    for row in _index(out):
        assert not set(_members(out / row["file"])) & OMPR_FAMILY
    # an existing, non-empty --out-dir needs --overwrite
    assert main(["paralogs", "--db", str(proteome_slice), "--out-dir", str(out), "--quiet"]) == 1


def test_prepare_several_families_keeps_each_members_family(paralog_dir, tmp_path):
    files = [paralog_dir / row["file"] for row in _index(paralog_dir)]
    out = tmp_path / "prepared"
    assert main(["prepare", *map(str, files), "--family", "--out", str(out), "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    sets = manifest["families"]["sets"]
    assert manifest["families"]["count"] == len(files) == len(sets) and "family" not in manifest
    by_family: dict[int, list[str]] = {}
    for split in ("train", "valid", "test"):
        shard = open_split(out, split)
        assert len(shard.families) == len(shard) and shard.positions is not None
        for i, f in enumerate(shard.families):
            by_family.setdefault(int(f), []).append(shard.ids[i])
    for f, path in enumerate(files):
        assert sorted(by_family[f]) == sorted(h.split()[0] for h in
                                              (line[1:] for line in path.read_text().splitlines()
                                               if line.startswith(">")))
        assert sets[f]["path"] == str(path)
    # --query names one query: refused with several sets
    assert main(["prepare", *map(str, files[:2]), "--family", "--query", "x", "--out", str(tmp_path / "q"),
                 "--quiet"]) == 1


def test_windows_of_a_multi_family_dataset_hold_one_family_each(tmp_path):
    from protein_performer.corpus.prepare import FamilyOptions, prepare
    from protein_performer.datasets import FamilyWindowDataset

    rng = np.random.default_rng(0)
    alphabet = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    paths, members = [], []
    for f, (n, width) in enumerate([(30, 40), (6, 25), (12, 60)]):
        base = rng.integers(0, 20, width)
        rows = []
        for _ in range(n):
            row = base.copy()
            flip = rng.random(width) < 0.2
            row[flip] = rng.integers(0, 20, flip.sum())
            rows.append("".join(alphabet[row]))
        members.append(set(rows))
        paths.append(tmp_path / f"f{f}.a3m")
        paths[-1].write_text("".join(f">f{f}_{k}\n{row}\n" for k, row in enumerate(rows)))
    prepare(paths, tmp_path / "p", family=FamilyOptions(), valid_fraction=0.0, test_fraction=0.0)
    shard = open_split(tmp_path / "p", "train")
    ds = FamilyWindowDataset(shard, 200, seed=1)
    # windows per family: ceil(framed tokens / 200) = ceil(30*42/200), ceil(6*27/200), ceil(12*62/200)
    assert len(ds) == 7 + 1 + 4
    assert sorted(np.bincount(ds.window_family).tolist()) == [1, 4, 7]
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            text = ALPHABET.decode(ds[i].tokens)
            parts = [p.removeprefix("<cls>") for p in text.split("<eos>") if p]
            family = int(ds.window_family[i])
            whole = parts if len(ds[i].tokens) < 200 else parts[:-1]  # the last member may be cut
            assert whole and all(p in members[family] for p in whole)
            if family == 1:  # a family smaller than the window fills a shorter one, each member once
                assert len(ds[i].tokens) == 6 * 27 and len(parts) == 6
    # the same seed gives the same windows; evaluation windows ignore the epoch
    again = FamilyWindowDataset(shard, 200, seed=1)
    assert np.array_equal(again.window_family, ds.window_family)
    ev = FamilyWindowDataset(shard, 200, seed=1, random=False, limit=3)
    first = [ev[i].tokens for i in range(3)]
    ev.set_epoch(4)
    assert all(np.array_equal(a, ev[i].tokens) for i, a in enumerate(first))


def _family_file(tmp_path: Path, n: int = 10, width: int = 40, seed: int = 0) -> Path:
    """An aligned family of ``n`` members, each ~35% different from a common ancestor (so pairs are
    below 80% identity), with a gap and an insertion here and there."""
    rng = np.random.default_rng(seed)
    alphabet = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    base = rng.integers(0, 20, width)
    lines = []
    for k in range(n):
        row = base.copy()
        flip = rng.random(width) < (0.0 if k == 0 else 0.35)
        row[flip] = rng.integers(0, 20, flip.sum())
        text = list("".join(alphabet[row]))
        if k % 3 == 1:
            text[5] = "-"
        if k % 4 == 2:
            text[10] = text[10] + "kp"
        lines.append(f">m{k}\n{''.join(text)}\n")
    path = tmp_path / "fam.a3m"
    path.write_text("".join(lines))
    return path


def _tiny_lm(**overrides):
    import torch

    from protein_performer.model import PerformerConfig, PerformerLM

    torch.manual_seed(0)
    cfg = PerformerConfig(**{"dim": 16, "depth": 2, "heads": 2, "nb_features": 8, "restart_positions": True,
                             "local_heads": 1, "dropout": 0.0, "aligned_positions": True, **overrides})
    return PerformerLM(cfg).double().eval()


@pytest.mark.parametrize("causal", [False, True])
def test_context_gain_is_zero_for_a_model_that_cannot_look_across_members(tmp_path, causal):
    """Attention within each member only: homologs in the window change nothing, so the two
    log-likelihoods agree to float64 rounding; with attention across members they differ."""
    from protein_performer.corpus.families import read_family
    from protein_performer.variants.heldout import context_gain

    family = read_family(_family_file(tmp_path))
    within = context_gain(_tiny_lm(segment_attention=True, causal=causal), family, context_length=300)
    assert within.members == len(family) and within.residues >= len(family) * 4
    assert within.with_homologs == pytest.approx(within.alone, abs=1e-9)
    across = context_gain(_tiny_lm(causal=causal), family, context_length=300)
    assert across.residues == within.residues and across.alone == pytest.approx(within.alone, abs=1e-9)
    assert abs(across.gain) > 1e-7  # an untrained model: small, but far above rounding


def test_context_gain_leaves_near_copies_out_of_the_context(tmp_path):
    from protein_performer.corpus.families import read_family
    from protein_performer.variants.heldout import context_gain

    path = tmp_path / "copies.a3m"
    path.write_text(">a\nACDEFGHIKL\n>b\nACDEFGHIKL\n>c\nACDEFGHIKM\n")  # 100% and 90% identical
    with pytest.raises(ValueError, match="no member has another below 80% identity"):
        context_gain(_tiny_lm(), read_family(path))
    unaligned = tmp_path / "plain.fasta"
    unaligned.write_text(">a\nACDEFGHIKL\n>b\nMNPQRSTVWYA\n")  # lengths differ: unaligned
    with pytest.raises(ValueError, match="needs aligned homologs"):
        context_gain(_tiny_lm(), read_family(unaligned))
