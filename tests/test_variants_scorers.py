"""score-variants' scorers: one interface, built once from typed options, run one way (each reads
the context and the results before it, never writes them), and the command as their composition."""

from __future__ import annotations

import argparse
import csv
import inspect
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from protein_performer.cli import main
from protein_performer.corpus.families import read_family
from protein_performer.variants import scorers as scorers_module
from protein_performer.variants.checkpoints import CheckpointModels
from protein_performer.variants.command import add_arguments, read_wild_type, score_variants
from protein_performer.variants.mutants import read_variants
from protein_performer.variants.options import HomologOptions, ModelOptions, ScoreVariantsOptions
from protein_performer.variants.scorers import Scored, Scorer, ScoringContext, build_scorers, run_scorers
from test_any_protein import _family_and_model, _proteingym_csv

SCORER_CLASSES = [getattr(scorers_module, name) for name in scorers_module.__all__
                  if name.endswith("Scorer") and name != "Scorer"]


@pytest.fixture
def run_inputs(tmp_path):
    a2m, fasta, ckpt, wt = _family_and_model(tmp_path)
    variants = _proteingym_csv(tmp_path / "dms.csv", wt)
    options = ScoreVariantsOptions(fasta=fasta, variants=variants, out=tmp_path / "scored.csv", checkpoints=(ckpt,),
                                   family=HomologOptions(path=a2m, contexts=1, context_tokens=0,
                                                         profile_weight="0.4"),
                                   model=ModelOptions(device="cpu"), bootstrap=0, progress=False)
    return options, wt


def _context(options: ScoreVariantsOptions, wt: str) -> ScoringContext:
    family = read_family(options.family.path)
    table = read_variants(options.variants, wt, mutation_col=None)
    return ScoringContext(options, wt, table, family, CheckpointModels("cpu", family, wt))


def test_every_scorer_satisfies_one_interface(run_inputs):
    options, wt = run_inputs
    options = replace(options, family=replace(options.family, context_tokens=400))  # with homologs in the window
    context = _context(options, wt)
    built = build_scorers(options, context.family)
    assert sorted(type(s).__name__ for s in built) == sorted(c.__name__ for c in SCORER_CLASSES)  # every one
    for scorer in built:
        assert isinstance(scorer, Scorer) and isinstance(scorer.name, str) and scorer.name
        assert list(inspect.signature(scorer.score).parameters) == ["context"]
    results = run_scorers(built, context)
    assert [r.column for r in results] == ["profile", "m", "m+homologs", "m+homologs+profile", "blosum62", "unigram"]
    assert [r.section for r in results] == ["profile", "models", "models", "models", "baselines", "baselines"]
    for r in results:
        assert isinstance(r, Scored) and r.scores.shape == (len(context.table.rows),) and r.scores.dtype == float
    mix = results[3]
    np.testing.assert_allclose(mix.scores, np.where(np.isfinite(results[0].scores),
                                                    0.6 * results[2].scores + 0.4 * results[0].scores,
                                                    results[2].scores))


def test_scorers_read_the_context_and_the_results_before_them_and_never_write_them(run_inputs):
    options, wt = run_inputs
    context = _context(options, wt)
    built = build_scorers(options, context.family)
    first = run_scorers(built, context)
    assert context.earlier == ()  # the caller's context is not edited
    scores_before = [r.scores.copy() for r in first]
    again = run_scorers(built, context)  # the same scorers, built once, run again: the same results
    for a, b, before in zip(first, again, scores_before):
        assert a.column == b.column and dict(a.info) == dict(b.info)
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.scores, before)  # no later scorer changed an earlier one's scores
    # a scorer sees only the results before it: the mix alone has no model to mix
    with pytest.raises(LookupError, match="no earlier homologs or model result of .*m.ckpt"):
        scorers_module.MixScorer(options.checkpoints[0]).score(context)


def test_a_model_with_per_protein_attention_has_no_homolog_column(run_inputs, tmp_path, caplog):
    from test_generate import save_checkpoint

    from protein_performer.model import PerformerConfig, PerformerLM

    options, wt = run_inputs
    cfg = PerformerConfig(dim=16, depth=1, heads=2, nb_features=8, restart_positions=True, local_heads=1,
                          segment_attention=True)
    seg = save_checkpoint(PerformerLM(cfg), tmp_path / "seg.ckpt", "mlm")
    options = replace(options, checkpoints=(seg,), family=replace(options.family, context_tokens=400))
    context = _context(options, wt)
    with caplog.at_level("INFO"):
        results = run_scorers(build_scorers(context.options, context.family), context)
    assert [r.column for r in results] == ["profile", "seg", "seg+profile", "blosum62", "unigram"]
    assert "seg: per-protein attention (segment_attention)" in caplog.text
    assert results[2].info["strategy"] == "(1 - w) seg + w profile"


def test_the_flags_become_typed_options_whose_defaults_are_the_flags():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--fasta", "wt.fasta", "--variants", "v.csv", "--out", "o.csv"])
    assert ScoreVariantsOptions.from_args(args) == ScoreVariantsOptions(Path("wt.fasta"), Path("v.csv"), Path("o.csv"))
    args = parser.parse_args(["--fasta", "wt.fasta", "--variants", "v.csv", "--out", "o.csv", "--max-length", "64",
                              "--context-length", "0", "--homologs", "f.a3m", "--quiet"])
    options = ScoreVariantsOptions.from_args(args)
    assert options.model.window_tokens == 64 and options.family.context_tokens == 0 and options.progress is False
    assert options.family.path == Path("f.a3m") and options.family.fixed_weight is None


@pytest.mark.parametrize("change, message", [
    ({"checkpoints": ()}, "nothing to score"),
    ({"model": ModelOptions(batch_size=0)}, "--batch-size must be >= 1"),
    ({"family": HomologOptions(profile_weight="heavy")}, "--profile-weight must be a number"),
    ({"family": HomologOptions(valid_fraction=0.7, test_fraction=0.4)}, "--valid-fraction 0.7 and --test-fraction"),
])
def test_typed_options_are_checked_before_any_work(tmp_path, change, message):
    options = ScoreVariantsOptions(tmp_path / "wt.fasta", tmp_path / "v.csv", tmp_path / "o.csv",
                                   **{"checkpoints": (tmp_path / "m.ckpt",), **change})
    with pytest.raises(ValueError, match=message):
        score_variants(options)
    assert not (tmp_path / "o.csv").exists()


def test_typed_options_score_as_the_command_line_does_and_the_heatmap_names_its_model(run_inputs, tmp_path):
    options, wt = run_inputs
    plot = tmp_path / "heat.png"
    typed = replace(options, plot=plot)
    assert score_variants(typed) == 0
    argv = ["score-variants", "--checkpoint", str(options.checkpoints[0]), "--fasta", str(options.fasta),
            "--variants", str(options.variants), "--homologs", str(options.family.path), "--contexts", "1",
            "--context-tokens", "0", "--profile-weight", "0.4", "--bootstrap", "0", "--device", "cpu",
            "--out", str(tmp_path / "cli.csv"), "--quiet"]
    assert main(argv) == 0
    assert (tmp_path / "cli.csv").read_text() == options.out.read_text()
    header = next(csv.reader(open(options.out)))
    assert header[-3:] == ["profile", "m", "m+profile"]
    summary = json.loads(options.out.with_suffix(".json").read_text())
    drawn = [m["column"] for m in summary["models"] if "plot" in m]
    assert drawn == ["m"] and summary["models"][0]["plot_matrix"] == str(plot.with_suffix(".matrix.csv"))
    assert plot.is_file() and read_wild_type(options.fasta) == wt
