"""protein_performer.experiments' foundations: the variant registry read as the CLI reads it, the
wall-clock callback, and the results schema."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from pytorch_lightning.callbacks import Timer

from protein_performer import callbacks
from protein_performer.callbacks import Deadline, EpochReseed, NonFiniteGuard, WallClock
from protein_performer.experiments.registry import (
    VARIANTS,
    Variant,
    config_path,
    nest,
    paper_model,
    recipe,
)
from protein_performer.experiments.results import Results
from protein_performer.experiments.runs import prepare_run

REPO = Path(__file__).resolve().parents[1]


def test_config_path_names_the_configs_and_refuses_unknown_ones():
    assert config_path("demo").resolve() == (REPO / "configs" / "demo.yaml").resolve()  # the shipped file
    with pytest.raises(FileNotFoundError, match=r"no config named 'nope'.*'demo'"):
        config_path("nope")


def test_recipe_reads_base_then_config_then_overrides():
    demo = recipe(Variant("demo"))
    assert demo["data"]["window_tokens"] == 512 and demo["model"]["config"]["local_heads"] == 3  # demo.yaml
    assert demo["model"]["config"]["ff_mult"] == 4 and demo["model"]["weight_decay"] == 0.01  # base.yaml
    exact = recipe(VARIANTS["exact"])
    assert exact["model"]["config"]["attention"] == "exact" and exact["model"]["config"]["local_heads"] == 0
    assert exact["model"]["config"]["dim"] == 128  # the rest stays demo.yaml's
    assert nest({"a.b": 1, "a.c": 2, "d": 3}) == {"a": {"b": 1, "c": 2}, "d": 3}
    with pytest.raises(ValueError, match="goes below 'a'"):
        nest({"a": 1, "a.b": 2})


def test_paper_models_change_only_the_attention():
    shape = dict(dim=16, depth=1, heads=2, nb_features=8)
    assert paper_model("hybrid", shape, 16) == dict(shape, attention="softmax", local_heads=1, local_window=16)
    assert paper_model("relu", shape, 16) == dict(shape, attention="relu", local_heads=0)
    with pytest.raises(ValueError, match="unknown Table 2 model"):
        paper_model("linear", shape, 16)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_instantiates_through_the_cli_as_the_registry_reads_it(name, prepared_ecoli, tmp_path):
    variant = VARIANTS[name].with_overrides(data__data_dir=str(prepared_ecoli))
    run = prepare_run(name, variant, tmp_path / name, seed=3, max_steps=7, val_batches=2)
    expected = recipe(variant)
    config = run.model.config.to_dict()
    assert {k: config[k] for k in expected["model"]["config"]} == expected["model"]["config"]
    assert run.model.hparams.lr == expected["model"]["lr"]
    assert run.model.hparams.redraw_interval == expected["model"]["redraw_interval"]
    assert run.datamodule.window_tokens == expected["data"]["window_tokens"] and run.datamodule.seed == 3
    assert run.trainer.max_steps == 7 and run.trainer.precision == "32-true" and run.trainer.logger is None
    kinds = {type(cb) for cb in run.trainer.callbacks}
    assert {NonFiniteGuard, EpochReseed, WallClock} <= kinds and Deadline not in kinds  # the base's, replaced
    from pytorch_lightning.callbacks import ModelCheckpoint

    assert not any(isinstance(cb, ModelCheckpoint) for cb in run.trainer.callbacks)
    assert (tmp_path / name / "overrides.yaml").is_file()  # `fit --config demo.yaml --config` it repeats the run


def test_a_wall_clock_budget_adds_the_deadline_and_a_time_cap(prepared_ecoli, tmp_path):
    variant = VARIANTS["favor-softmax"].with_overrides(data__data_dir=str(prepared_ecoli))
    run = prepare_run("budget", variant, tmp_path / "budget", seconds=60.0, probe_steps=5, csv=True)
    assert run.deadline is not None and (run.deadline.seconds, run.deadline.probe_steps) == (60.0, 5)
    assert run.trainer.max_steps == 10**6  # the deadline sets the steps once it has measured the rate
    timer = next(cb for cb in run.trainer.callbacks if isinstance(cb, Timer))
    assert timer.time_remaining() == 66  # 1.1 x the budget, before training starts
    with pytest.raises(ValueError, match="give max_steps or seconds"):
        prepare_run("neither", variant, tmp_path / "neither")


def test_wall_clock_excludes_validation_time(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: now[0])
    logged = []
    trainer = SimpleNamespace(sanity_checking=False, global_step=0, callback_metrics={})
    module = SimpleNamespace(log=lambda name, value: logged.append((name, value)))
    clock = WallClock()
    clock.on_validation_start(trainer, module)  # a sanity check before training: not counted
    clock.on_validation_end(trainer, module)
    clock.on_train_start(trainer, module)
    for step, (train_until, validation_s, loss) in enumerate(((10.0, 4.0, 2.9), (25.0, 6.0, 2.8)), start=1):
        now[0] += train_until - clock.train_seconds  # train until train_until seconds of training
        trainer.global_step, trainer.callback_metrics = step * 100, {"val/loss": loss}
        clock.on_validation_start(trainer, module)
        now[0] += validation_s
        clock.on_validation_epoch_end(trainer, module)
        clock.on_validation_end(trainer, module)
    assert logged == [("train_s", 10.0), ("train_s", 25.0)]
    assert clock.curve == [(100, 10.0, 2.9), (200, 25.0, 2.8)]
    assert clock.train_seconds == 25.0 and now[0] == 35.0


def test_results_round_trip_and_read_older_files():
    saved = json.loads((REPO / "docs" / "figures" / "results_all.json").read_text())
    res = Results.from_json(saved)
    assert res.to_json() == saved  # the schema holds every field RESULTS.md was drawn from
    assert res.plan.window == saved["plan"]["window"] and res.environment.cpus == saved["environment"]["cpus"]
    older = json.loads(json.dumps(saved))
    for key in ("redraw_interval", "probe_steps", "gradient_clip", "local_window"):
        del older["plan"][key]
    plan = Results.from_json(older).plan
    assert (plan.redraw_interval, plan.probe_steps, plan.gradient_clip, plan.local_window) == (None,) * 4
    older["plan"]["hybrid_window"] = 16  # the field's former name
    assert Results.from_json(older).plan.local_window == 16
    with pytest.raises(ValueError, match=r"unknown sections \['tables'\]"):
        Results.from_json({**saved, "tables": []})
