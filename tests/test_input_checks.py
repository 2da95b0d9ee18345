"""Issue 36, its input and loader items: each test failed before its fix.

6 fair-esm files are read with ``weights_only``; 9 shards with damaged bytes of the right size are
refused (sha256 on open, cached); 14 one-line errors for ESM-1 files and unsafe ``.pt``
embeddings; 15 a full disk under ``convert``; 17 FASTA with a byte-order mark, query ids that
end like jackhmmer's round suffix, homologs that share the query's id, ``--exclude``'s name;
18 no loading bars from ``transformers``; 19 what ``--max-length`` means in each command;
20 FAVOR+ with fewer or more keys than queries, with and without gradients.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from model_utils import random_sequences, write_fasta
from protein_performer import cli
from protein_performer.attention import linear
from protein_performer.attention.features import gaussian_orthogonal_matrix


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def _one_line(err: str) -> str:
    """The error line of a failed command; fails unless it is one line and no traceback."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------ 6, 14, 15. convert's inputs and outputs

DIM, HEADS, LAYERS = 16, 2, 2


class Payload:
    """Unpickling this creates ``marker``: proof that loading ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _fair_esm_file(folder: Path, name: str = "esm2_t2_random", extra: dict | None = None,
                   regression: bool = True) -> Path:
    """A random fair-esm ESM-2 model saved in fair-esm's own layout (weights, Namespace config and
    the contact-regression file beside it)."""
    esm = pytest.importorskip("esm")
    from esm.model.esm2 import ESM2

    torch.manual_seed(0)
    model = ESM2(num_layers=LAYERS, embed_dim=DIM, attention_heads=HEADS,
                 alphabet=esm.data.Alphabet.from_architecture("ESM-1b"), token_dropout=True)
    state = model.state_dict()
    contact = {k: v for k, v in state.items() if k.startswith("contact_head.")}
    cfg = argparse.Namespace(encoder_layers=LAYERS, encoder_embed_dim=DIM, encoder_attention_heads=HEADS,
                             token_dropout=True)
    pt = folder / f"{name}.pt"
    torch.save({"model": {f"encoder.{k}": v for k, v in state.items() if k not in contact},
                "cfg": {"model": cfg}, **(extra or {})}, pt)
    if regression:
        torch.save({"model": contact}, folder / f"{name}-contact-regression.pt")
    return pt


def test_fair_esm_file_with_a_payload_is_refused_without_running_it(tmp_path, capsys, monkeypatch):
    """fair-esm's loader calls ``torch.load`` without ``weights_only``: on torch < 2.6 (which
    pyproject admits) that unpickles anything. Simulated here by making that torch's default."""
    marker = tmp_path / "ran"
    pt = _fair_esm_file(tmp_path, extra={"note": Payload(marker)})
    real_load = torch.load

    def old_default(*args, **kwargs):  # torch < 2.6: weights_only defaults to False
        kwargs.setdefault("weights_only", False)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", old_default)
    code, err = _cli(capsys, "convert", "--esm", str(pt), "--out", str(tmp_path / "o.ckpt"))
    line = _one_line(err)
    assert code == 1 and str(pt) in line and "not loaded" in line and "weights_only=False" not in line
    assert not marker.exists() and not (tmp_path / "o.ckpt").exists()


def test_fair_esm_name_with_a_payload_in_the_cache_is_refused_without_running_it(tmp_path, capsys, monkeypatch):
    """For a fair-esm name, fair-esm loads torch hub's cached file with ``load_state_dict_from_url``,
    whose ``weights_only`` defaults to False on every torch."""
    marker = tmp_path / "ran"
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    _fair_esm_file(cache, name="esm2_t2_1M_UR50D", extra={"note": Payload(marker)})
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    code, err = _cli(capsys, "convert", "--esm", "esm2_t2_1M_UR50D", "--out", str(tmp_path / "o.ckpt"))
    line = _one_line(err)
    assert code == 1 and "esm2_t2_1M_UR50D.pt" in line and "not loaded" in line and not marker.exists()
    (cache / "esm2_t2_1M_UR50D.pt").unlink()
    _fair_esm_file(cache, name="esm2_t2_1M_UR50D")
    assert cli.main(["convert", "--esm", "esm2_t2_1M_UR50D", "--out", str(tmp_path / "o.ckpt")]) == 0


def test_fair_esm_file_converts_by_content_not_name(tmp_path, capsys):
    """A plain ESM-2 file converts under any name, with or without its contact-regression file."""
    from protein_performer.checkpoint import load_checkpoint

    pt = _fair_esm_file(tmp_path, name="my_model", regression=False)
    out = tmp_path / "o.ckpt"
    assert cli.main(["convert", "--esm", str(pt), "--out", str(out), "--attention", "exact"]) == 0
    assert load_checkpoint(out).config.depth == LAYERS


def test_esm1v_named_file_is_one_line(tmp_path, capsys):
    """fair-esm picks its reader by the file name: ``*esm1v*.pt`` went to the ESM-1 reader (KeyError 'args')."""
    pt = _fair_esm_file(tmp_path, name="esm1v_t33_650M_UR90S_1")
    code, err = _cli(capsys, "convert", "--esm", str(pt), "--out", str(tmp_path / "o.ckpt"))
    assert code == 0, err  # an ESM-2 file under an ESM-1v name: its content decides
    esm1 = tmp_path / "esm1v_t33_650M_UR90S_2.pt"
    torch.save({"model": {"x": torch.zeros(2)}, "args": argparse.Namespace(arch="roberta_large")}, esm1)
    code, err = _cli(capsys, "convert", "--esm", str(esm1), "--out", str(tmp_path / "p.ckpt"))
    line = _one_line(err)
    assert code == 1 and str(esm1) in line and "not ESM-2" in line and "KeyError" not in line


def test_convert_on_a_full_disk_says_so_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    """``torch.save`` to a path reports a full disk as ``unexpected pos``; to a file object, as ENOSPC."""
    pt = _fair_esm_file(tmp_path)
    real_save = torch.save

    def full(obj, f, *args, **kwargs):  # what torch does when the disk fills mid-write
        if isinstance(f, (str, os.PathLike)):
            with open(f, "wb") as fh:
                fh.write(b"PK\x03\x04partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
        f.write(b"PK\x03\x04partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "out" / "o.ckpt"
    code, err = _cli(capsys, "convert", "--esm", str(pt), "--out", str(out))
    line = _one_line(err)
    assert code == 1 and f"no space left on {out.parent.resolve()} while writing o.ckpt" in line
    assert "unexpected pos" not in line
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    monkeypatch.setattr(torch, "save", real_save)


def test_plot_embeddings_of_a_pickle_is_one_line(tmp_path, capsys):
    """A ``.pt`` embeddings folder holding a pickle: torch's advice to load it unsafely is never shown."""
    marker = tmp_path / "ran"
    folder = tmp_path / "emb"
    folder.mkdir()
    torch.save({"label": "p0", "mean_representations": {0: torch.zeros(4)}, "x": Payload(marker)}, folder / "p0.pt")
    code, err = _cli(capsys, "plot-embeddings", "--embeddings", str(folder), "--out", str(tmp_path / "v.png"))
    line = _one_line(err)
    assert code == 1 and "p0.pt" in line and "weights_only" not in line and not marker.exists()


# ------------------------------------------------------------------ 20. FAVOR+ with Lq != Lk


@pytest.mark.parametrize("lq, lk", [(64, 54), (54, 64)])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("block_rows", [linear.INFERENCE_BLOCK_ROWS, 40])
def test_favor_with_fewer_or_more_keys_than_queries(lq, lk, padded, block_rows, monkeypatch):
    """Both paths (no gradient: the blocked inference path; gradients: autograd) take (B, H, Lq, D)
    queries and (B, H, Lk, D) keys, agree to float64 rounding, and equal the formula
    phi(Q) (phi(K)^T [V, 1]) computed directly (small norms: no stabiliser needed)."""
    monkeypatch.setattr(linear, "INFERENCE_BLOCK_ROWS", block_rows)  # 40: blocks of one head
    g = torch.Generator().manual_seed(0)
    B, H, D, m = 2, 3, 8, 16
    q, k, v = (0.5 * torch.randn(B, H, n, D, generator=g, dtype=torch.float64) for n in (lq, lk, lk))
    projection = gaussian_orthogonal_matrix(m, D, generator=g).double()
    mask = None
    if padded:
        mask = torch.ones(B, lk, dtype=torch.bool)
        mask[1, lk - 7 :] = False
    with torch.no_grad():
        fast = linear.favor_attention(q, k, v, projection, key_padding_mask=mask)
    slow = linear.favor_attention(q.requires_grad_(), k, v, projection, key_padding_mask=mask)
    assert fast.shape == slow.shape == (B, H, lq, D)
    torch.testing.assert_close(fast, slow.detach(), rtol=0, atol=1e-13)

    def phi(x):  # (B, H, L, D) -> (B, H, L, m), positive random features of exp(q.k / sqrt(D))
        xs = x.detach() * D**-0.25
        return torch.exp(xs @ projection.T - 0.5 * (xs * xs).sum(-1, keepdim=True)) / m**0.5

    keep = torch.ones(B, lk, dtype=torch.float64) if mask is None else mask.double()
    kf = phi(k) * keep[:, None, :, None]
    num, den = phi(q) @ (kf.transpose(-2, -1) @ v), phi(q) @ kf.sum(-2, keepdim=True).transpose(-2, -1)
    torch.testing.assert_close(fast, num / den, rtol=0, atol=1e-12)


def test_causal_favor_needs_as_many_keys_as_queries():
    q, k = torch.randn(1, 1, 5, 4), torch.randn(1, 1, 3, 4)
    with pytest.raises(ValueError, match="3 keys for 5 queries"):
        linear.favor_attention(q, k, k, torch.randn(8, 4), causal=True)


# ------------------------------------------------------------------ 9. damaged bytes of the right size


@pytest.fixture
def family_dataset(tmp_path, monkeypatch) -> Path:
    """A prepared aligned family dataset of three homolog sets: every split file plus weights.f32,
    positions.u16 and family.u32 (checksum stamps under tmp_path)."""
    from protein_performer.corpus.prepare import FamilyOptions, prepare

    monkeypatch.setenv("PROTEIN_PERFORMER_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    letters = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    paths = []
    for f, (n, width) in enumerate([(12, 40), (6, 25), (8, 30)]):
        base = rng.integers(0, 20, width)
        rows = []
        for _ in range(n):
            row = base.copy()
            flip = rng.random(width) < 0.2
            row[flip] = rng.integers(0, 20, flip.sum())
            rows.append("".join(letters[row]))
        paths.append(tmp_path / f"f{f}.a3m")
        paths[-1].write_text("".join(f">f{f}_{k}\n{row}\n" for k, row in enumerate(rows)))
    prepare(paths, tmp_path / "ds", family=FamilyOptions(), valid_fraction=0.0, test_fraction=0.0)
    return tmp_path / "ds"


def _rewrite(file: Path, dtype: str, edit) -> None:
    """Change values of ``file`` in place, keeping its size."""
    values = np.fromfile(file, dtype=dtype)
    edit(values)
    values.tofile(file)


def _change_residue(t: np.ndarray) -> None:  # another residue id: still in range
    t[3] = 5 + (int(t[3]) - 5 + 1) % 20


def _shift_offset(o: np.ndarray) -> None:  # one boundary moves by one: still increasing
    o[1] += 1


def _change_position(p: np.ndarray) -> None:  # one residue's column
    p[2] += 1


def _change_family(f: np.ndarray) -> None:  # a member moved to another homolog set
    f[0] = (f[0] + 1) % 3


DAMAGE = {"tokens.u8": ("<u1", _change_residue), "offsets.i64": ("<i8", _shift_offset),
          "positions.u16": ("<u2", _change_position), "family.u32": ("<u4", _change_family)}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_damaged_bytes_of_the_right_size_are_refused_on_open(family_dataset, name, monkeypatch):
    from protein_performer.corpus.shards import DamagedDataset, open_split
    from protein_performer.datamodule import ProteinDataModule

    shard = open_split(family_dataset, "train")  # verified, and stamped
    assert shard.positions is not None and shard.families is not None
    file = family_dataset / "train" / name
    size = file.stat().st_size
    _rewrite(file, *DAMAGE[name])
    assert file.stat().st_size == size
    with pytest.raises(DamagedDataset, match=rf"train/{name}: damaged prepared dataset \(its sha256 differs"):
        open_split(family_dataset, "train")
    with pytest.raises(DamagedDataset, match=name):  # what `fit` runs before it writes anything
        ProteinDataModule(str(family_dataset), window_tokens=64, mode="family").check("fit")


def test_damaged_split_stops_score_with_one_line(family_dataset, ckpt, capsys):
    _rewrite(family_dataset / "train" / "tokens.u8", "<u1", _change_residue)
    code, err = _cli(capsys, "score", "--checkpoint", str(ckpt), "--data-dir", str(family_dataset), "--split", "train")
    assert code == 1 and "train/tokens.u8: damaged prepared dataset" in _one_line(err)


def test_verified_files_are_not_hashed_again_until_they_change(family_dataset, monkeypatch):
    from protein_performer.corpus import shards

    hashed = []
    real = shards.sha256_of
    monkeypatch.setattr(shards, "sha256_of", lambda path: hashed.append(Path(path).name) or real(path))
    shards.open_split(family_dataset, "train")
    assert sorted(hashed) == sorted(json.loads((family_dataset / "manifest.json").read_text())
                                    ["splits"]["train"]["files"])
    hashed.clear()
    shards.open_split(family_dataset, "train")
    assert hashed == []  # the stamp: size, mtime_ns and inode unchanged
    ids = family_dataset / "train" / "ids.txt"
    os.utime(ids, ns=(ids.stat().st_atime_ns, ids.stat().st_mtime_ns + 1000))
    shards.open_split(family_dataset, "train")
    assert hashed == ["ids.txt"]


# ------------------------------------------------------------------ 17. messages and names in homologs


def _family(n: int, length: int = 120, seed: int = 0, identity: float = 0.75) -> tuple[str, list[str]]:
    """A random query and ``n`` homologs, each keeping about ``identity`` of its residues."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    query = rng.integers(0, 20, length)
    homologs = []
    for _ in range(n):
        row = query.copy()
        flip = rng.random(length) > identity
        row[flip] = rng.integers(0, 20, int(flip.sum()))
        homologs.append("".join(letters[row]))
    return "".join(letters[query]), homologs


def test_fasta_with_a_byte_order_mark_is_read(tmp_path, capsys):
    """Editors on Windows start UTF-8 files with a byte-order mark; it is not the first line's text."""
    pytest.importorskip("pyhmmer")
    from protein_performer.corpus.fasta import read_records

    query, homologs = _family(3)
    qfile, db = tmp_path / "q.fasta", tmp_path / "db.fasta"
    qfile.write_bytes(b"\xef\xbb\xbf" + f">Q1 query\n{query}\n".encode())
    db.write_bytes(b"\xef\xbb\xbf" + "".join(f">H{i}\n{h}\n" for i, h in enumerate(homologs)).encode())
    assert [(r.id, r.sequence) for r in read_records(qfile)] == [("Q1", query)]
    out = tmp_path / "q.a3m"
    assert cli.main(["homologs", "--fasta", str(qfile), "--db", str(db), "--out", str(out)]) == 0
    assert out.read_text().startswith(f">Q1\n{query}\n>H")


def test_query_id_ending_like_a_round_suffix(tmp_path):
    """jackhmmer names rounds after the first ``<query>-i<n>``; a one-round search keeps the query's
    own name, which was cut when it ended in ``-i2``."""
    pytest.importorskip("pyhmmer")
    from protein_performer.corpus.homologs import SearchOptions, read_database, read_query, search_homologs

    query, homologs = _family(4)
    write_fasta(tmp_path / "q.fasta", [("P1-i2", query)])
    write_fasta(tmp_path / "db.fasta", [(f"H{i}", h) for i, h in enumerate(homologs)])
    database = read_database(tmp_path / "db.fasta")
    for rounds in (1, 3):
        found = search_homologs(read_query(tmp_path / "q.fasta"), database, SearchOptions(iterations=rounds))
        assert found.query_name == "P1-i2" and len(found.homologs) == 4


def test_a_homolog_sharing_the_querys_id_is_kept(tmp_path):
    """Copies of the query are told by sequence: another protein under the same id is a homolog."""
    pytest.importorskip("pyhmmer")
    from protein_performer.corpus.homologs import read_database, read_query, search_homologs

    query, homologs = _family(3)
    write_fasta(tmp_path / "q.fasta", [("sp|P1|Q_HUMAN", query)])
    write_fasta(tmp_path / "db.fasta", [("sp|P1|Q_HUMAN", query), ("sp|P1|Q_HUMAN isoform", homologs[0]),
                                        ("H1", homologs[1]), ("H2", homologs[2])])
    found = search_homologs(read_query(tmp_path / "q.fasta"), read_database(tmp_path / "db.fasta"))
    assert found.copies_of_query == 1
    assert sorted(h.name for h in found.homologs) == ["H1", "H2", "sp|P1|Q_HUMAN"]
    assert homologs[0].upper() in {h.row.replace("-", "").upper() for h in found.homologs}


def test_read_database_names_the_flag_that_gave_the_file(tmp_path):
    from protein_performer.corpus.homologs import read_database

    with pytest.raises(FileNotFoundError, match=r"^--exclude .*missing.fasta: no such file"):
        read_database(tmp_path / "missing.fasta", flag="--exclude")
    (tmp_path / "empty.fasta").write_text(">x\n\n")
    with pytest.raises(ValueError, match="as --exclude$"):
        read_database(tmp_path / "empty.fasta", flag="--exclude")


def test_paralogs_exclude_missing_names_exclude(tmp_path, capsys):
    pytest.importorskip("pyhmmer")
    query, homologs = _family(3)
    db = write_fasta(tmp_path / "db.fasta", [(f"H{i}", h) for i, h in enumerate([query, *homologs])])
    code, err = _cli(capsys, "paralogs", "--db", str(db), "--out-dir", str(tmp_path / "fam"), "--exclude",
                     str(tmp_path / "missing.fasta"))
    line = _one_line(err)
    assert code == 1 and "--exclude" in line and "missing.fasta" in line and "--db" not in line


def test_a_j_in_homologs_names_the_file_and_record(tmp_path, capsys):
    pytest.importorskip("pyhmmer")
    query, homologs = _family(2)
    qfile = write_fasta(tmp_path / "q.fasta", [("Q1", query)])
    db = write_fasta(tmp_path / "db.fasta", [("H0", homologs[0]), ("H1", homologs[1][:10] + "J" + homologs[1][11:])])
    code, err = _cli(capsys, "homologs", "--query", str(qfile), "--db", str(db), "--out", str(tmp_path / "o.a3m"))
    line = _one_line(err)
    assert code == 1 and f"{db}: record 2 ('H1'): character 'J' at position 11" in line and "--unknown" in line


# ------------------------------------------------------------------ 19. what --max-length means here


@pytest.mark.parametrize("command, new, unit", [("score", "--window-tokens", "tokens"),
                                                ("score-variants", "--window-tokens", "tokens"),
                                                ("embed", "--window-residues", "residues"),
                                                ("generate", "--stop-at-residues", "residues"),
                                                ("prepare", "--max-residues", "residues")])
def test_max_length_warning_says_which_flag_and_unit_it_means(command, new, unit, caplog):
    import importlib
    import logging

    required = {"prepare": ["in.fasta", "--out", "ds"], "score": ["--checkpoint", "m.ckpt", "--fasta", "in.fasta"],
                "score-variants": ["--fasta", "wt.fasta", "--variants", "v.csv", "--out", "o.csv"],
                "embed": ["--checkpoint", "m.ckpt", "--fasta", "in.fasta", "--out", "e.h5"],
                "generate": ["--checkpoint", "m.ckpt", "--out", "g.fasta"]}
    parser = argparse.ArgumentParser(prog=f"protein-performer {command}")
    importlib.import_module(cli.COMMANDS[command][0]).add_arguments(parser)
    with caplog.at_level(logging.WARNING):
        parser.parse_args([*required[command], "--max-length", "300"])
    [message] = [r.getMessage() for r in caplog.records]
    assert message == (f"--max-length is deprecated and will be removed in the next release; in protein-performer "
                       f"{command} it is {new}, counted in {unit}: use {new} 300")


# ------------------------------------------------------------------ 18. no loading bars from transformers


def test_convert_of_a_hugging_face_folder_draws_no_loading_bar(tmp_path, capsys):
    """transformers draws "Loading weights: 100%|███|" into stderr even when it is a pipe or a log."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.EsmConfig(
        vocab_size=33, hidden_size=DIM, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=4 * DIM, position_embedding_type="rotary", token_dropout=True, pad_token_id=1,
        mask_token_id=32, emb_layer_norm_before=False, max_position_embeddings=1026)
    transformers.EsmForMaskedLM(config).save_pretrained(tmp_path / "hf")
    capsys.readouterr()
    assert cli.main(["convert", "--esm", str(tmp_path / "hf"), "--out", str(tmp_path / "o.ckpt")]) == 0
    err = capsys.readouterr().err
    assert "%|" not in err and "\r" not in err and "it/s" not in err, err
    assert transformers.utils.logging.is_progress_bar_enabled()  # the user's setting is restored
