"""The learning study's transfer (``scripts/study_learning.py transfer``,
:mod:`protein_performer.experiments.study`): a trained exact model's weights in other variants."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from protein_performer.experiments import study
from protein_performer.experiments import study_report as report
from protein_performer.experiments.registry import VARIANTS, recipe


def _save(model, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"performer_config": model.config.to_dict(), "state_dict": model.state_dict()}, path)
    return path


def test_transfer_scores_zero_shot_and_fine_tunes_the_chosen_variants(prepared_ecoli, tmp_path):
    from protein_performer.model import PerformerConfig, PerformerLM

    config = recipe(VARIANTS["exact"])["model"]["config"]
    torch.manual_seed(0)
    weights = _save(PerformerLM(PerformerConfig(**config)), tmp_path / "l512" / "exact.pt")
    common = ["--data-dir", str(prepared_ecoli), "--max-proteins", "6", "--steps", "2"]
    assert study.main(["transfer", "--weights", str(weights), "--variants", "favor-softmax", "hybrid-3local",
                       "--fine-tune", "hybrid-3local", *common]) == 0
    saved = json.loads((tmp_path / "transfer.json").read_text())
    assert [r["variant"] for r in saved["rows"]] == ["exact (source)", "favor-softmax", "hybrid-3local"]
    assert all(math.isfinite(r["zero_shot"]["perplexity"]) for r in saved["rows"])
    assert ["fine_tuned" in r for r in saved["rows"]] == [False, False, True]
    # the swap changes the attention only: a FAVOR+ estimate of the same weights, not the same model
    assert saved["rows"][1]["zero_shot"]["perplexity"] != saved["rows"][0]["zero_shot"]["perplexity"]
    table = report.transfer_table(tmp_path / "transfer.json")
    assert "| hybrid-3local |" in table and "(2 steps)" in table and "recovered" in table

    favor = PerformerLM(PerformerConfig(**dict(config, attention="softmax")))
    with pytest.raises(SystemExit, match="pass an exact one"):
        study.main(["transfer", "--weights", str(_save(favor, tmp_path / "f" / "favor.pt")), *common])
