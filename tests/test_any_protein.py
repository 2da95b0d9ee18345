"""Any protein (issue 33): ProteinGym's metrics, formats and labels, the column map through an
alignment, the family recipe, and the benchmark command."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from protein_performer.cli import main
from protein_performer.corpus.families import read_family
from protein_performer.model import PerformerConfig, PerformerLM
from protein_performer.variants.metrics import (
    assay_metrics,
    mcc_at_median,
    mean_over_assays,
    ndcg_top,
    roc_auc,
    spearman_rho,
    top_recall,
)
from shared_data import data_path

P53_A2M = data_path("families") / "P53_HUMAN_b0.1.a2m"
P53_CLINVAR = data_path("variants") / "P53_HUMAN_ClinVar.csv"
AA = "ACDEFGHIKLMNPQRSTVWY"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- metrics


def test_metrics_equal_scipy_and_scikit_learn_and_the_definitions():
    from scipy.stats import spearmanr
    from sklearn.metrics import matthews_corrcoef, ndcg_score, roc_auc_score

    rng = np.random.default_rng(3)
    x = rng.normal(size=300)
    y = x + rng.normal(size=300)
    label = (y > 0.2).astype(int)
    assert spearman_rho(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    x_tied = np.round(x, 1)  # ties count half in the AUC, as scikit-learn's
    assert roc_auc(x_tied, label) == pytest.approx(roc_auc_score(label, x_tied), abs=1e-12)
    assert mcc_at_median(x, label) == pytest.approx(matthews_corrcoef(label, x > np.median(x)), abs=1e-12)
    gains = (y - y.min()) / (y.max() - y.min())
    assert ndcg_top(x, y) == pytest.approx(ndcg_score(gains[None], x[None], k=30), abs=1e-12)
    top_true = set(np.argsort(-y)[:30])
    top_model = set(np.argsort(-x)[:30])
    assert top_recall(x, y) == pytest.approx(len(top_true & top_model) / 30)
    # a perfect scorer
    assert ndcg_top(y, y) == pytest.approx(1.0) and top_recall(y, y) == 1.0 and roc_auc(y, label) == 1.0


def test_assay_metrics_give_intervals_and_say_when_a_metric_is_undefined():
    rng = np.random.default_rng(0)
    x = rng.normal(size=120)
    y = x + rng.normal(size=120)
    m = assay_metrics(x, y, (y > 0).astype(float), bootstrap=200)
    assert set(m) == {"spearman", "ndcg", "top10_recall", "auc", "mcc"}
    for metric in m.values():
        assert metric.n == 120 and metric.ci95[0] <= metric.value <= metric.ci95[1]
    x[:10] = np.nan  # unscored rows are left out and counted
    one_class = assay_metrics(x, None, np.ones(120), bootstrap=50)
    assert one_class["auc"].value is None and one_class["auc"].n == 110
    assert mean_over_assays([{k: v.as_dict() for k, v in m.items()},
                             {"auc": {"value": 0.5}}])["auc"]["n_assays"] == 2


# --------------------------------------------------------------------------- the column map

# The query has lower-case residues (A2M insert columns, as EVE writes them) and a gap.
A2M = """>Q/1-14
mkTAY-IAkkQRLEvw
>H1/3-14
..TAYSIAq.QRLE..
>H2/1-12
..TSYSVA..QKLE..
>H3/2-11
..SAFSIA..QKIE..
"""


def test_a_query_with_insert_residues_maps_each_residue_through_the_alignment(tmp_path):
    from protein_performer.variants.profile import column_map, profile_log_probs, profile_scores
    from protein_performer.variants.mutants import parse_mutant

    fam = read_family(_write(tmp_path / "f.a2m", A2M))
    wt = fam.query_sequence
    assert wt == "MKTAYIAKKQRLEVW"
    cmap = column_map(fam, wt)
    # residues m,k insert; T A Y -> columns 0-2; column 3 is the query's gap; I A -> 4, 5; k k insert;
    # Q R L E -> 6-9; v w insert
    assert cmap.columns.tolist() == [-1, -1, 0, 1, 2, 4, 5, -1, -1, 6, 7, 8, 9, -1, -1]
    logp = profile_log_probs(fam)
    subs = parse_mutant("R11K", wt, 1)  # residue 11 (R) sits in column 7, not column 10
    score = profile_scores(logp, cmap.columns, [subs])[0]
    expected = logp[7, AA.index("K")] - logp[7, AA.index("R")]
    assert score == pytest.approx(expected) and score > 0  # K is seen at that column, R in only the query
    # a residue outside every column has no profile score (NaN), never a neighbour's
    assert math.isnan(profile_scores(logp, cmap.columns, [parse_mutant("K8R", wt, 1)])[0])


def test_a_gapped_member_named_as_query_is_read_through_its_own_gaps(tmp_path):
    from protein_performer.variants.profile import column_map

    path = _write(tmp_path / "f.a3m", ">q\nMKTAYIAKQR\n>h1\nM-TAY-AKQR\n>h2\nMKSAYIAKHR\n")
    fam = read_family(path, query="h1")
    cmap = column_map(fam, "MTAYAKQR")
    assert cmap.columns.tolist() == [0, 2, 3, 4, 6, 7, 8, 9]


def test_a_gapped_homolog_first_in_the_file_is_not_silently_the_query(tmp_path):
    from protein_performer.variants.profile import column_map

    path = _write(tmp_path / "f.a3m", ">h1\nM--AY-AKQR\n>q\nMKTAYIAKQR\n>h2\nMKSAYIAKHR\n")
    fam = read_family(path)
    with pytest.raises(ValueError, match=r"record 2 \('q'\).*--query q"):
        column_map(fam, "MKTAYIAKQR")
    assert column_map(read_family(path, query="q"), "MKTAYIAKQR").columns.tolist() == list(range(10))


def test_a_wild_type_unrelated_to_the_family_is_refused(tmp_path):
    from protein_performer.variants.profile import column_map

    fam = read_family(_write(tmp_path / "f.a3m", ">q\n" + AA * 2 + "\n>h\n" + AA[::-1] * 2 + "\n"))
    with pytest.raises(ValueError, match="does not match the family's query"):
        column_map(fam, "W" * 15 + "P" * 15 + "G" * 10)


def test_a_region_only_alignment_is_placed_at_msa_start_and_checked(tmp_path):
    from protein_performer.variants.profile import column_map

    fam = read_family(_write(tmp_path / "f.a3m", ">q/5-14\nTAYSIAKQRL\n>h\nTAFSIAKHRL\n"))
    target = "MKWV" + "TAYSIAKQRL" + "EEGG"
    cmap = column_map(fam, target, region_start=5)
    assert cmap.columns.tolist() == [-1] * 4 + list(range(10)) + [-1] * 4
    with pytest.raises(ValueError, match="MSA_start 3"):
        column_map(fam, target, region_start=3)


# --------------------------------------------------------------------------- score-variants, ProteinGym files


def _family_and_model(tmp_path: Path) -> tuple[Path, Path, Path, str]:
    """A 40-member family of a 30-residue query (A2M with two query insert residues), its wild
    type as FASTA, and a tiny masked checkpoint."""
    from test_generate import save_checkpoint

    rng = np.random.default_rng(1)
    core = "".join(rng.choice(list(AA), 30))
    lines = [f">Q/1-32\nmk{core}"]
    for k in range(40):
        s = list(core)
        for i in rng.choice(30, 12, replace=False):
            s[i] = AA[rng.integers(20)]
        lines.append(f">H{k}/1-30\n..{''.join(s)}")
    a2m = _write(tmp_path / "fam.a2m", "\n".join(lines) + "\n")
    wt = "MK" + core
    fasta = _write(tmp_path / "wt.fasta", f">wt\n{wt}\n")
    torch.manual_seed(0)
    cfg = PerformerConfig(dim=16, depth=1, heads=2, nb_features=8, restart_positions=True, local_heads=1)
    ckpt = save_checkpoint(PerformerLM(cfg), tmp_path / "m.ckpt", "mlm")
    return a2m, fasta, ckpt, wt


def _proteingym_csv(path: Path, wt: str, n: int = 40, seed: int = 0) -> Path:
    from protein_performer.variants.mutants import apply_mutant, parse_mutant

    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        sites = rng.choice(len(wt), 1 + (k % 3 == 0), replace=False)
        mutant = ":".join(f"{wt[i]}{i + 1}{AA[(AA.index(wt[i]) + 1 + rng.integers(19)) % 20]}" for i in sorted(sites))
        score = float(rng.normal())
        rows.append([mutant, apply_mutant(wt, parse_mutant(mutant, wt, 1)), f"{score:.4f}", int(score > 0)])
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["mutant", "mutated_sequence", "DMS_score", "DMS_score_bin"])
        w.writerows(rows)
    return path


def test_score_variants_reads_proteingym_files_and_reports_its_metrics(tmp_path):
    a2m, fasta, ckpt, wt = _family_and_model(tmp_path)
    variants = _proteingym_csv(tmp_path / "dms.csv", wt)
    out = tmp_path / "scored.csv"
    assert main(["score-variants", "--checkpoint", str(ckpt), "--fasta", str(fasta), "--variants", str(variants),
                 "--homologs", str(a2m), "--contexts", "1", "--context-tokens", "400", "--bootstrap", "20",
                 "--out", str(out), "--quiet"]) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["score_col"] == "DMS_score" and summary["label_col"] == "DMS_score_bin"
    model = summary["models"][0]
    assert set(model["metrics"]) == {"spearman", "ndcg", "top10_recall", "auc", "mcc"}
    assert model["scored"] == 40  # multi-mutants included
    # mutants at the query's insert residues (positions 1-2) have no profile score; the mix takes the model's
    rows = list(csv.DictReader(open(out)))
    outside = [r for r in rows if any(int(m[1:-1]) <= 2 for m in r["mutant"].split(":"))]
    assert summary["profile"]["mutants_outside_columns"] == len(outside)
    assert summary["profile"]["scored"] == 40 - len(outside)
    for r in outside:
        assert r["profile"] == "" and r["m+homologs+profile"] == r["m+homologs"]


def test_a_mutated_sequence_that_disagrees_with_the_mutant_is_refused_naming_the_row(tmp_path):
    a2m, fasta, ckpt, wt = _family_and_model(tmp_path)
    variants = _proteingym_csv(tmp_path / "dms.csv", wt)
    lines = variants.read_text().splitlines()
    mutant, seq, *rest = lines[3].split(",")
    lines[3] = ",".join([mutant, "A" + seq[1:] if seq[0] != "A" else "C" + seq[1:], *rest])
    variants.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"row 3 \(line 4\): mutated_sequence"):
        from protein_performer.variants.command import add_arguments, run
        import argparse

        parser = argparse.ArgumentParser()
        add_arguments(parser)
        run(parser.parse_args(["--checkpoint", str(ckpt), "--fasta", str(fasta), "--variants", str(variants),
                               "--out", str(tmp_path / "o.csv")]))


def test_clinical_labels_are_detected_and_a_single_class_is_refused_before_any_work(tmp_path, capsys):
    a2m, fasta, ckpt, wt = _family_and_model(tmp_path)
    rows = ["protein_name,mutations,ClinVar_labels_category,ClinVar_labels"]
    for k in range(12):
        i = 3 + k
        rows.append(f"P,{wt[i]}{i + 1}{'A' if wt[i] != 'A' else 'C'},{'benign' if k % 3 else 'pathogenic'},"
                    f"{0.0 if k % 3 else 1.0}")
    clinvar = _write(tmp_path / "clinvar.csv", "\n".join(rows) + "\n")
    out = tmp_path / "s.csv"
    assert main(["score-variants", "--homologs", str(a2m), "--fasta", str(fasta), "--variants", str(clinvar),
                 "--bootstrap", "0", "--out", str(out), "--quiet"]) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["label_col"] == "ClinVar_labels_category" and summary["score_col"] is None
    assert summary["profile"]["metrics"]["auc"]["n"] == 12
    # the numeric column, 1 = pathogenic, read with --label-fit 0 gives the same AUC
    out2 = tmp_path / "s2.csv"
    assert main(["score-variants", "--homologs", str(a2m), "--fasta", str(fasta), "--variants", str(clinvar),
                 "--label-col", "ClinVar_labels", "--label-fit", "0", "--bootstrap", "0", "--out", str(out2),
                 "--quiet"]) == 0
    assert (json.loads(out2.with_suffix(".json").read_text())["profile"]["metrics"]["auc"]["value"]
            == summary["profile"]["metrics"]["auc"]["value"])
    # item 21: one class only -> refused before --out is written
    one = _write(tmp_path / "one.csv", "\n".join(r.replace("pathogenic", "benign") for r in rows) + "\n")
    out3 = tmp_path / "s3.csv"
    assert main(["score-variants", "--homologs", str(a2m), "--fasta", str(fasta), "--variants", str(one),
                 "--out", str(out3), "--quiet"]) == 1
    assert "both classes" in capsys.readouterr().err and not out3.exists()
    same = _write(tmp_path / "same.csv", "mutant,fit\n" + "".join(f"{wt[i]}{i + 1}A,1.0\n" for i in range(3, 9)
                                                                   if wt[i] != "A"))
    assert main(["score-variants", "--homologs", str(a2m), "--fasta", str(fasta), "--variants", str(same),
                 "--score-col", "fit", "--out", str(out3), "--quiet"]) == 1
    assert "at least two" in capsys.readouterr().err and not out3.exists()


@pytest.mark.parametrize("flags,message", [
    (["--plot", "heat"], "ending in .png"), (["--plot", "heat.txt"], "ending in .png"),
    (["--seed", "-1"], "--seed must be >= 0"), (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--pseudocount", "nan"], "--pseudocount must be a positive number"),
    (["--split-identity", "1.5"], "--split-identity must be in"),
])
def test_score_variants_checks_its_flags_before_any_work(tmp_path, capsys, flags, message):
    a2m, fasta, ckpt, wt = _family_and_model(tmp_path)
    variants = _proteingym_csv(tmp_path / "dms.csv", wt)
    (tmp_path / "heat.png").write_text("a user's figure")
    out = tmp_path / "o.csv"
    assert main(["score-variants", "--checkpoint", str(ckpt), "--fasta", str(fasta), "--variants", str(variants),
                 "--homologs", str(a2m), "--out", str(out), "--quiet", *flags]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists() and (tmp_path / "heat.png").read_text() == "a user's figure"


def test_p53_clinvar_scores_through_the_a2m_insert_columns(tmp_path, families_dir, variants_dir):
    """The shared P53 A2M has 64 lower-case query residues: the profile of every ClinVar label is
    read from its own column (the old residue-i-is-column-i map crashed past the last column)."""
    wt = read_family(P53_A2M).query_sequence
    fasta = _write(tmp_path / "p53.fasta", f">P53_HUMAN\n{wt}\n")
    out = tmp_path / "p53.csv"
    assert main(["score-variants", "--homologs", str(P53_A2M), "--fasta", str(fasta), "--variants",
                 str(P53_CLINVAR), "--bootstrap", "200", "--out", str(out), "--quiet"]) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    profile = summary["profile"]
    assert profile["mutants_outside_columns"] > 0
    assert profile["scored"] == 163 - profile["mutants_outside_columns"]
    assert profile["metrics"]["auc"]["value"] > 0.9  # conservation separates pathogenic from benign


# --------------------------------------------------------------------------- the recipe


def test_the_recipe_follows_the_family(tmp_path):
    from protein_performer.experiments.recipe import MAX_STEPS, MIN_STEPS, family_recipe

    rng = np.random.default_rng(0)
    core = "".join(rng.choice(list(AA), 60))

    def family(n: int, changes: int, name: str) -> Path:
        lines = [f">q\n{core}"]
        for k in range(n):
            s = list(core)
            for i in rng.choice(60, changes, replace=False):
                s[i] = AA[rng.integers(20)]
            lines.append(f">m{k}\n{''.join(s)}")
        return _write(tmp_path / name, "\n".join(lines) + "\n")

    diverse = family_recipe(family(300, 30, "diverse.a3m"))
    assert diverse.split_identity == 0.8 and diverse.valid_fraction == pytest.approx(1 / 3, abs=0.09)
    assert diverse.held_out >= 0.5 * diverse.valid_fraction * 301
    assert MIN_STEPS <= diverse.steps <= MAX_STEPS and diverse.val_every >= 50
    # near copies (5% changed) join into the query's group at 0.8: the rule raises the split identity
    copies = family_recipe(family(300, 3, "copies.a3m"))
    assert copies.split_identity > 0.8 and copies.held_out >= 0.5 * min(0.25, 100 / 301) * 301
    assert copies.identity > 0.8  # Neff at 0.8 is ~1 for near copies: weights at a finer identity
    assert any("held out" in note for note in copies.notes)


# --------------------------------------------------------------------------- the benchmark command


def test_the_reference_file_is_checked_row_by_row(tmp_path):
    from protein_performer.experiments.benchmark import read_reference

    (tmp_path / "a.csv").write_text("mutant,DMS_score\nA1C,1\n")
    (tmp_path / "a.a3m").write_text(">q\nACDE\n")
    header = "DMS_id,DMS_filename,target_seq,MSA_filename,MSA_start,MSA_end\n"
    cases = [("X,missing.csv,ACDE,a.a3m,1,4\n", r"row 1 \(X\): .*missing.csv does not exist.*--dms-dir"),
             ("X,a.csv,ACDE,none.a3m,1,4\n", r"none.a3m does not exist.*--msa-dir"),
             ("X,a.csv,AC1E,a.a3m,1,4\n", "target_seq has 1"),
             ("X,a.csv,ACDE,a.a3m,3,9\n", "MSA_start 3 / MSA_end 9 do not fit"),
             ("X,a.csv,ACDE,a.a3m,1,4\nX,a.csv,ACDE,a.a3m,1,4\n", "unique")]
    for row, message in cases:
        with pytest.raises(ValueError, match=message):
            read_reference(_write(tmp_path / "ref.csv", header + row), tmp_path, tmp_path)
    with pytest.raises(ValueError, match="no column DMS_filename"):
        read_reference(_write(tmp_path / "ref.csv", "DMS_id,target_seq\nX,ACDE\n"), tmp_path, tmp_path)


TINY_CONFIG = """trainer:
  val_check_interval: 2
  limit_val_batches: 2
  logger: false
model:
  config: {dim: 16, depth: 1, heads: 2, nb_features: 8, local_heads: 1, local_window: 4}
data:
  window_tokens: 256
"""


def test_benchmark_runs_assays_resumes_and_reports_a_failure_in_the_table(tmp_path, caplog):
    from protein_performer.experiments.registry import config_path

    a2m, fasta, ckpt, wt = _family_and_model(tmp_path)
    _proteingym_csv(tmp_path / "dms.csv", wt)
    config = _write(tmp_path / "tiny.yaml", (config_path("family_mlm").read_text() + "\n").replace(
        "max_steps: 3500", "max_steps: 4") + "")
    tiny = _write(tmp_path / "tiny_overrides.yaml", TINY_CONFIG)
    merged = tmp_path / "cfg.yaml"
    import yaml

    base = yaml.safe_load(config.read_text())
    over = yaml.safe_load(tiny.read_text())
    for key, value in over.items():
        for k, v in value.items():
            if isinstance(v, dict):
                base[key][k].update(v)
            else:
                base[key][k] = v
    merged.write_text(yaml.safe_dump(base))
    ref = _write(tmp_path / "ref.csv", "DMS_id,DMS_filename,target_seq,MSA_filename,MSA_start,MSA_end\n"
                 f"good,dms.csv,{wt},fam.a2m,1,{len(wt)}\n"
                 f"unrelated,dms.csv,{'W' * 20 + 'G' * 12},fam.a2m,,\n")
    out = tmp_path / "bench"
    argv = ["benchmark", "--reference", str(ref), "--dms-dir", str(tmp_path), "--msa-dir", str(tmp_path),
            "--out", str(out), "--config", str(merged), "--steps", "3", "--contexts", "1", "--bootstrap", "10"]
    assert main(argv) == 1  # one assay failed
    summary = json.loads((out / "summary.json").read_text())
    status = {a["DMS_id"]: a["status"] for a in summary["assays"]}
    assert status == {"good": "done", "unrelated": "failed"}
    failed = summary["assays"][1]
    assert "does not match" in failed["error"] or "wild type" in failed["error"]
    text = (out / "summary.md").read_text()
    assert "### spearman" in text and "| good |" in text and "### Failed assays" in text
    table = list(csv.reader(open(out / "spearman_DMS_level.csv")))
    assert table[0][0] == "DMS_id" and table[1][0] == "good" and table[-1][0] == "Average"
    good = summary["assays"][0]
    assert good["last_step"] == 3 and set(good["stage_minutes"]) == {"recipe", "prepare", "fit", "score-variants"}
    # a finished assay is not redone
    caplog.clear()
    with caplog.at_level("INFO"):
        assert main(argv + ["--assays", "good"]) == 0
    assert "good: already done" in caplog.text and "$ protein-performer fit" not in caplog.text


def test_an_assay_is_checked_before_any_work(tmp_path):
    from protein_performer.experiments.benchmark import Assay, check_assay

    a2m, fasta, ckpt, wt = _family_and_model(tmp_path)
    good = _proteingym_csv(tmp_path / "dms.csv", wt)
    check_assay(Assay("ok", good, wt, a2m))
    # no row matches the target: nothing to score
    other = wt[1:] + "A"
    bad = _proteingym_csv(tmp_path / "other.csv", other, seed=5)
    with pytest.raises(ValueError, match=r"other.csv: no valid mutants"):
        check_assay(Assay("shifted", bad, wt, a2m))
    # a constant measurement: no metric
    flat = _write(tmp_path / "flat.csv", "mutant,DMS_score\n" + "".join(f"{wt[i]}{i + 1}A,0.5\n" for i in range(3, 9)
                                                                       if wt[i] != "A"))
    with pytest.raises(ValueError, match="at least two"):
        check_assay(Assay("flat", flat, wt, a2m))
    with pytest.raises(ValueError, match="MSA_start 5"):
        check_assay(Assay("region", good, wt, a2m, msa_start=5))


def test_a_benchmark_stopped_after_its_fit_resumes_at_scoring(tmp_path, monkeypatch, caplog):
    import protein_performer.experiments.benchmark as bench

    a2m, fasta, ckpt, wt = _family_and_model(tmp_path)
    variants = _proteingym_csv(tmp_path / "dms.csv", wt)
    from test_family_inputs import TINY

    config = _write(tmp_path / "cfg.yaml", TINY.replace("max_steps: 4", "max_steps: 2"))
    assay = bench.Assay("a", variants, wt, a2m)
    options = bench.Options(config=config, steps=2, contexts=1, bootstrap=0)
    real = bench._cli

    def stop_at_scoring(*args):
        if args[0] == "score-variants":
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(bench, "_cli", stop_at_scoring)
    with pytest.raises(KeyboardInterrupt):
        bench.run_assay(assay, tmp_path / "out", options)
    stages = json.loads((tmp_path / "out" / "stages.json").read_text())
    assert set(stages) == {"recipe", "prepare", "fit"} and not (tmp_path / "out" / "result.json").exists()
    monkeypatch.setattr(bench, "_cli", real)
    caplog.clear()
    with caplog.at_level("INFO"):
        result = bench.run_assay(assay, tmp_path / "out", options)
    assert "$ protein-performer fit" not in caplog.text and "$ protein-performer score-variants" in caplog.text
    assert result["status"] == "done" and result["last_step"] == 2


