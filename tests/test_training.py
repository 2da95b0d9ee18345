"""Lightning training end to end: every shipped config, resume after SIGKILL, DDP, init-from, score."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from protein_performer.callbacks import EpochReseed, FeatureRedraw, NonFiniteGuard, Throughput, redraw_generator
from protein_performer.checkpoint import load_checkpoint
from protein_performer.cli import BASE_CONFIG, CONFIG_DIR, cpu_has_bf16, resolve_precision, run_lightning_cli
from protein_performer.cli import main as cli_main
from protein_performer.lit import ProteinLM, lr_factor, resolve_objective
from protein_performer.model import PerformerConfig, PerformerLM

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(c for c in CONFIG_DIR.glob("*.yaml") if c != BASE_CONFIG)
TINY = ["--model.config.dim", "16", "--model.config.depth", "1", "--model.config.heads", "2",
        "--model.config.nb_features", "8", "--data.window_tokens", "64", "--data.batch_size", "2",
        "--data.num_workers", "0"]


def _tiny(config: Path) -> list[str]:
    """TINY, keeping a hybrid config hybrid: 1 of its 2 tiny heads local (and a column head if it has them)."""
    model = (yaml.safe_load(Path(config).read_text()).get("model") or {}).get("config", {})
    hybrid = [*TINY, "--model.config.local_heads", "1"] if model.get("local_heads", 0) else list(TINY)
    return [*hybrid, "--model.config.column_heads", "1"] if model.get("column_heads", 0) else hybrid


def _fit_args(config: Path, data_dir: Path, root: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(config), "--data.data_dir", str(data_dir), *_tiny(config),
            "--trainer.default_root_dir", str(root), "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", *extra]


def test_mission_configs_are_shipped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = {c.stem for c in CONFIGS}
    assert {"performer_relu_mlm", "performer_softmax_mlm", "performer_relu_clm", "performer_softmax_clm",
            "transformer_mlm", "transformer_clm", "demo"} <= names
    for c in CONFIGS:  # as the CLI reads them: configs/base.yaml, then the config; full size, validated
        cli = run_lightning_cli(["--config", str(c), "--trainer.logger", "false"], run=False)
        if c.stem != "demo":
            assert cli.datamodule.window_tokens >= 8192, c
        assert cli.model.config.causal == (cli.model.objective == "clm") == (c.stem.endswith("clm")), c
        assert cli.datamodule.objective == cli.model.objective, c
        assert cli.trainer.default_root_dir.endswith(f"runs/{c.stem}"), c
        assert {NonFiniteGuard, EpochReseed, Throughput} <= {type(cb) for cb in cli.trainer.callbacks}, c


def test_configs_set_only_what_differs_from_the_base():
    for c in CONFIGS:
        cfg = yaml.safe_load(c.read_text())
        assert "callbacks" not in cfg.get("trainer", {}) and "logger" not in cfg.get("trainer", {}), c
        assert "objective" not in cfg.get("model", {}), c  # it follows model.config.causal


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_config_instantiates_and_runs_fast_dev_run(config, prepared_ecoli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # configs write under runs/ relative to the working directory
    args = _fit_args(config, prepared_ecoli, tmp_path, "--trainer.fast_dev_run", "2")[1:]
    cli = run_lightning_cli(args, run=False)  # the real ProteinCLI, without running a subcommand
    cli.trainer.fit(cli.model, cli.datamodule)
    assert cli.trainer.global_step == 2
    assert any(isinstance(cb, FeatureRedraw) for cb in cli.trainer.callbacks)  # the model brings it
    assert cli.model.config.attention in ("softmax", "relu", "exact")
    assert cli.datamodule.objective == cli.model.objective
    assert int(cli.model.train_token_counts.sum()) > 1_000_000  # E. coli train split residues


def _ckpt_args(every: str) -> list[str]:
    return ["--trainer.callbacks+=ModelCheckpoint", f"--trainer.callbacks.dirpath={every}",
            "--trainer.callbacks.save_top_k=-1", "--trainer.callbacks.every_n_epochs=1",
            "--trainer.callbacks.save_last=true", "--trainer.callbacks.filename={epoch}-{step}"]


def _run_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONHASHSEED": "0"}
    return subprocess.Popen([sys.executable, "-m", "protein_performer.cli", *args], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_resume_after_sigkill_continues_exactly(prepared_ecoli, tmp_path):
    demo = REPO / "configs" / "demo.yaml"
    common = ["--data.limit_windows", "8", "--model.schedule", "constant", "--model.redraw_interval", "3",
              "--model.warmup_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.val_check_interval", "null",
              "--trainer.check_val_every_n_epoch", "1", "--trainer.max_time", "null"]
    # Uninterrupted reference: 3 epochs of 4 steps.
    ref_dir = tmp_path / "ref"
    ref = _run_cli(_fit_args(demo, prepared_ecoli, ref_dir, *common, "--trainer.max_steps", "12",
                             *_ckpt_args(str(ref_dir / "ckpt"))), cwd=tmp_path)
    out, _ = ref.communicate(timeout=300)
    assert ref.returncode == 0, out[-3000:]
    # Interrupted run: SIGKILL as soon as the epoch-1 checkpoint exists, then resume from epoch 0's.
    run_dir = tmp_path / "run"
    proc = _run_cli(_fit_args(demo, prepared_ecoli, run_dir, *common, "--trainer.max_steps", "12",
                              *_ckpt_args(str(run_dir / "ckpt"))), cwd=tmp_path)
    deadline = time.time() + 300
    while not (run_dir / "ckpt" / "epoch=1-step=8.ckpt").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "ckpt" / "epoch=2-step=12.ckpt").exists()
    resumed = _run_cli(_fit_args(demo, prepared_ecoli, run_dir, *common, "--trainer.max_steps", "12",
                                 *_ckpt_args(str(run_dir / "ckpt2")),
                                 "--ckpt_path", str(run_dir / "ckpt" / "epoch=0-step=4.ckpt")), cwd=tmp_path)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out[-3000:]
    a = torch.load(ref_dir / "ckpt" / "epoch=2-step=12.ckpt", weights_only=True)
    b = torch.load(run_dir / "ckpt2" / "epoch=2-step=12.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 12
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), f"{key} differs after resume"
    # The projection in force at step 12 is the one redrawn at step 12 (interval 3).
    config = PerformerConfig(**a["performer_config"])
    fresh = PerformerLM(config)
    fresh.redraw_features(redraw_generator(config.feature_seed, 12))
    assert torch.equal(fresh.blocks[0].attn.projection, b["state_dict"]["model.blocks.0.attn.projection"])
    # Optimizer state came back too (AdamW step counts continue).
    assert b["optimizer_states"][0]["state"][0]["step"].item() == 12


def test_ddp_two_cpu_processes(prepared_ecoli, tmp_path):
    proc = _run_cli(_fit_args(REPO / "configs" / "demo.yaml", prepared_ecoli, tmp_path, "--trainer.max_steps", "3",
                              "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
                              "--trainer.limit_val_batches", "1", "--trainer.val_check_interval", "null",
                              "--trainer.max_time", "null", "--data.limit_windows", "12"), cwd=tmp_path)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-4000:]
    assert "max_steps=3" in out and "gloo" in out.lower()


def _tiny_checkpoint(tmp_path: Path, prepared: Path, attention: str, name: str, *extra: str) -> Path:
    ckpt_dir = tmp_path / name
    code = cli_main(_fit_args(REPO / "configs" / "demo.yaml", prepared, tmp_path / f"root_{name}",
                              "--trainer.max_steps", "4", "--trainer.limit_val_batches", "1",
                              "--trainer.val_check_interval", "null", "--trainer.max_time", "null",
                              "--data.limit_windows", "8", "--model.config.attention", attention,
                              *_ckpt_args(str(ckpt_dir)), *extra))
    assert code == 0
    return ckpt_dir / "last.ckpt"


def test_init_from_exact_checkpoint_and_score(prepared_ecoli, ecoli_fasta, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exact = _tiny_checkpoint(tmp_path, prepared_ecoli, "exact", "exact")
    loaded = load_checkpoint(exact)
    assert loaded.config.attention == "exact" and loaded.objective == "mlm"
    perf = ProteinLM(config={**loaded.config.to_dict(), "attention": "softmax"}, init_from=str(exact))
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(perf.model.state_dict()[key], value), key
    with pytest.raises(ValueError, match="same"):
        ProteinLM(config={**loaded.config.to_dict(), "dim": 32}, init_from=str(exact))

    # score: JSON with accuracy, perplexity, tokens and the unigram baseline; deterministic.
    fasta = tmp_path / "new.fasta"
    fasta.write_text(">seq1 unseen\nMKVLAAGIVGLLLAAPAHAETKLRELLE\n>seq2\nmsdefyrrwlkkqhppgsw*\n")
    capsys.readouterr()  # drop the training output
    runs = []
    for _ in range(2):
        assert cli_main(["score", "--checkpoint", str(exact), "--fasta", str(fasta), "--window-tokens", "32"]) == 0
        runs.append(json.loads(capsys.readouterr().out))
    assert runs[0] == runs[1]
    r = runs[0]
    assert r["objective"] == "mlm" and r["proteins"] == 2 and r["tokens"] >= 2
    assert 0 <= r["accuracy"] <= 1 and r["perplexity"] > 1 and 0 < r["unigram_accuracy"] < 1


def test_bf16_mixed_fit_on_cpu_keeps_float32_weights_and_its_checkpoint_resumes(prepared_ecoli, tmp_path,
                                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = _tiny_checkpoint(tmp_path, prepared_ecoli, "softmax", "bf16", "--trainer.precision", "bf16-mixed")
    loaded = load_checkpoint(ckpt)  # weights_only
    for name, p in loaded.model.named_parameters():  # autocast computes in bf16; the weights stay float32
        assert p.dtype == torch.float32 and torch.isfinite(p).all(), name
    code = cli_main(_fit_args(REPO / "configs" / "demo.yaml", prepared_ecoli, tmp_path / "resumed",
                              "--trainer.max_steps", "6", "--trainer.limit_val_batches", "1",
                              "--trainer.val_check_interval", "null", "--trainer.max_time", "null",
                              "--data.limit_windows", "8", "--trainer.precision", "bf16-mixed",
                              *_ckpt_args(str(tmp_path / "resumed_ckpt")), "--ckpt_path", str(ckpt)))
    assert code == 0
    assert torch.load(tmp_path / "resumed_ckpt" / "last.ckpt", weights_only=True)["global_step"] == 6


def test_causal_score_counts_every_residue(prepared_ecoli, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = _tiny_checkpoint(tmp_path, prepared_ecoli, "relu", "clm", "--model.objective", "clm",
                            "--model.config.causal", "true")
    fasta = tmp_path / "x.fasta"
    fasta.write_text(">a\nACDEFGHIK\n>b\nLMNPQ\n")
    capsys.readouterr()  # drop the training output
    assert cli_main(["score", "--checkpoint", str(ckpt), "--fasta", str(fasta), "--window-tokens", "64"]) == 0
    r = json.loads(capsys.readouterr().out)
    # Stream "ACDEFGHIK<eos>LMNPQ<eos>": 14 residues, the first has no prefix -> 13 targets.
    assert r["objective"] == "clm" and r["tokens"] == 13


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    assert cli_main(["score", "--checkpoint", str(tmp_path / "nope.ckpt"), "--fasta", "x"]) == 1
    assert "nope.ckpt" in capsys.readouterr().err
    with pytest.raises(ValueError, match="causal"):
        ProteinLM(config=PerformerConfig(dim=16, depth=1, heads=2), objective="clm")


def test_fit_with_the_shipped_loggers_writes_wandb_offline_and_csv(prepared_ecoli, tmp_path):
    args = ["fit", "--config", str(REPO / "configs" / "demo.yaml"), "--data.data_dir", str(prepared_ecoli),
            *_tiny(REPO / "configs" / "demo.yaml"),
            "--trainer.max_steps", "3", "--trainer.limit_val_batches", "1", "--trainer.val_check_interval", "null",
            "--trainer.max_time", "null", "--data.limit_windows", "6", "--trainer.log_every_n_steps", "1"]
    proc = _run_cli(args, cwd=tmp_path)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    metrics = next((tmp_path / "runs" / "demo" / "csv").glob("version_*/metrics.csv")).read_text()
    header = metrics.splitlines()[0].split(",")
    assert {"train/loss", "train/acc", "train/tokens_per_s", "val/acc", "val/ppl"} <= set(header)
    assert list((tmp_path / "runs" / "demo" / "wandb").glob("offline-run-*"))
    assert (tmp_path / "runs" / "demo" / "checkpoints" / "last.ckpt").is_file()


def test_predict_is_not_a_command(capsys):
    with pytest.raises(SystemExit):
        cli_main(["predict", "--config", str(REPO / "configs" / "demo.yaml")])
    assert "unknown command 'predict'" in capsys.readouterr().err


def test_lr_factor_warms_up_then_follows_a_cosine_to_its_floor():
    warmup, total, floor = 10, 110, 0.1
    ramp = [lr_factor(s, warmup, total, floor) for s in range(warmup)]
    assert ramp == [(s + 1) / (warmup + 1) for s in range(warmup)]  # linear, below the peak
    assert lr_factor(warmup, warmup, total, floor) == 1.0  # the peak right after warm-up
    assert lr_factor(warmup + 50, warmup, total, floor) == pytest.approx((1 + floor) / 2)  # half way
    assert lr_factor(total, warmup, total, floor) == pytest.approx(floor)
    assert lr_factor(10 * total, warmup, total, floor) == pytest.approx(floor)  # stays at the floor
    cosine = [lr_factor(s, warmup, total, floor) for s in range(warmup, total + 1)]
    assert all(a >= b for a, b in zip(cosine, cosine[1:]))  # never rises again
    assert [lr_factor(s, warmup, None, floor) for s in (warmup, 10 * total)] == [1.0, 1.0]  # constant
    assert lr_factor(0, 0, total, floor) == 1.0  # no warm-up


def test_unset_precision_is_bf16_mixed_only_for_training_on_a_cpu_with_bf16():
    assert resolve_precision(None, "cpu", training=True, cpu_bf16=True)[0] == "bf16-mixed"
    assert resolve_precision(None, "cpu", training=True, cpu_bf16=False)[0] == "32-true"
    assert resolve_precision(None, "cpu", training=False, cpu_bf16=True)[0] == "32-true"  # validate / test
    assert resolve_precision(None, "gpu", training=True, cpu_bf16=True)[0] == "32-true"  # GPUs: as configured
    for given in ("32-true", "bf16-mixed", 64):
        for bf16 in (True, False):  # a precision that is set wins
            assert resolve_precision(given, "cpu", training=True, cpu_bf16=bf16)[0] == given


def test_cpu_bf16_is_read_from_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert not cpu_has_bf16(info)
    assert not cpu_has_bf16(tmp_path / "missing")  # no /proc/cpuinfo: not Linux
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert cpu_has_bf16(info) == torch.ops.mkldnn._is_mkldnn_bf16_supported()


@pytest.mark.parametrize("detected", [True, False])
def test_the_cli_resolves_an_unset_precision_says_why_and_an_explicit_one_wins(detected, tmp_path, monkeypatch,
                                                                               caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("protein_performer.cli.cpu_has_bf16", lambda: detected)
    args = ["--config", str(REPO / "configs" / "demo.yaml"), "--trainer.logger", "false",
            "--trainer.accelerator", "cpu"]
    with caplog.at_level(logging.INFO, logger="protein_performer.cli"):
        cli = run_lightning_cli(args, run=False)
    assert cli.trainer.precision == ("bf16-mixed" if detected else "32-true")
    why = "training on a CPU with native bf16" if detected else "training on a CPU without native bf16"
    assert f"precision {cli.trainer.precision}: {why}" in caplog.text
    other = "32-true" if detected else "bf16-mixed"
    assert run_lightning_cli([*args, "--trainer.precision", other], run=False).trainer.precision == other
    config = tmp_path / "precision.yaml"
    config.write_text(f"trainer:\n  precision: {other}\n")
    assert run_lightning_cli([*args, "--config", str(config)], run=False).trainer.precision == other


def test_the_former_data_max_length_still_works_from_a_config_and_the_command_line(tmp_path, monkeypatch, caplog):
    """Configs and command lines of older runs set ``data.max_length``: it is ``data.window_tokens``."""
    monkeypatch.chdir(tmp_path)
    old = tmp_path / "old.yaml"
    old.write_text("data:\n  max_length: 256\n")
    args = ["--config", str(REPO / "configs" / "demo.yaml"), "--trainer.logger", "false"]
    for extra in (["--config", str(old)], ["--data.max_length", "256"]):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="protein_performer.datamodule"):
            cli = run_lightning_cli([*args, *extra], run=False)
        assert cli.datamodule.window_tokens == 256 and cli.datamodule.hparams["window_tokens"] == 256, extra
        assert "data.max_length is deprecated" in caplog.text and "use data.window_tokens 256" in caplog.text, extra
    assert run_lightning_cli(args, run=False).datamodule.window_tokens == 512  # demo.yaml's window_tokens


def test_objective_and_causal_follow_one_another():
    tiny = dict(dim=16, depth=1, heads=2, nb_features=8)
    assert resolve_objective(PerformerConfig(**tiny, causal=True), None)[1] == "clm"
    assert resolve_objective(PerformerConfig(**tiny), None)[1] == "mlm"
    assert resolve_objective(tiny, "clm")[0].causal is True  # a dict without causal follows the objective
    assert resolve_objective(None, "clm")[0].causal is True
    assert resolve_objective({**tiny, "causal": True}, "clm")[1] == "clm"  # old configs give both
    with pytest.raises(ValueError, match=r"objective 'mlm' and config.causal=True disagree"):
        resolve_objective({**tiny, "causal": True}, "mlm")
    with pytest.raises(ValueError, match="objective must be one of"):
        resolve_objective(tiny, "mask")
    module = ProteinLM(config={**tiny, "causal": True})
    assert module.objective == "clm" and module.hparams.objective == "clm"


def test_feature_redraw_follows_the_step_once_per_step():
    import types

    model = PerformerLM(PerformerConfig(dim=16, depth=1, heads=2, nb_features=8))
    module = types.SimpleNamespace(model=model)
    start = model.blocks[0].attn.projection.clone()
    redraw = FeatureRedraw(interval=3)
    for step in (0, 1, 2, 4, 5):
        redraw.on_train_batch_end(types.SimpleNamespace(global_step=step), module, None, None, 0)
        assert torch.equal(model.blocks[0].attn.projection, start), step
    redraw.on_train_batch_end(types.SimpleNamespace(global_step=6), module, None, None, 0)
    expected = PerformerLM(model.config)
    expected.redraw_features(redraw_generator(model.config.feature_seed, 6))
    assert torch.equal(model.blocks[0].attn.projection, expected.blocks[0].attn.projection)
    drawn = model.blocks[0].attn.projection.clone()
    model.redraw_features(redraw_generator(0, 99))  # gradient accumulation: step 6 again draws nothing
    moved = model.blocks[0].attn.projection.clone()
    redraw.on_train_batch_end(types.SimpleNamespace(global_step=6), module, None, None, 0)
    assert torch.equal(model.blocks[0].attn.projection, moved) and not torch.equal(moved, drawn)
    with pytest.raises(ValueError, match="interval"):
        FeatureRedraw(interval=-1)


def test_epoch_reseed_keeps_the_checkpoint_key_and_seeds_by_epoch():
    import types

    reseed = EpochReseed()
    reseed.on_load_checkpoint(None, None, {"base_seed": 1234})  # written by earlier versions too
    assert reseed.base_seed == 1234
    saved: dict = {}
    reseed.on_save_checkpoint(None, None, saved)
    assert saved["base_seed"] == 1234 and set(saved) == {"base_seed", "rng_states"}  # (states: for mid-epoch resumes)

    class Sampler:
        epoch = None

        def set_epoch(self, epoch):
            self.epoch = epoch

    def draws(epoch):
        sampler = Sampler()
        trainer = types.SimpleNamespace(current_epoch=epoch, train_dataloader=types.SimpleNamespace(sampler=sampler))
        torch.rand(5)  # whatever ran before does not matter
        reseed.on_train_epoch_start(trainer, None)
        assert sampler.epoch == epoch
        return torch.rand(3)

    assert torch.equal(draws(2), draws(2)) and not torch.equal(draws(2), draws(3))


@pytest.mark.parametrize("max_steps", [6, 7])
def test_last_checkpoint_is_the_last_step_when_validation_stops_improving(tmp_path, max_steps):
    """The validation loss rises after the first validation, so the best checkpoint stays at step 2;
    ``last.ckpt`` still follows every validation and ends at the final step (6: a validation step;
    7: after the last validation). Lightning's own class leaves it at step 2."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint as LightningCheckpoint
    from pytorch_lightning.demos.boring_classes import BoringModel

    from protein_performer.callbacks import LastStepCheckpoint

    class Worsening(BoringModel):
        def validation_step(self, batch, batch_idx):
            self.log("val/loss", float(self.global_step))  # rises: only the first validation is the best

    def last_step(callback_class, root: Path) -> tuple[int, list[str]]:
        callback = callback_class(dirpath=root, monitor="val/loss", mode="min", save_top_k=1, save_last=True,
                                  filename="best-{step}")
        trainer = pl.Trainer(default_root_dir=root, max_steps=max_steps, val_check_interval=2, limit_val_batches=1,
                             check_val_every_n_epoch=None, callbacks=[callback], logger=False,
                             enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(Worsening())
        return (torch.load(root / "last.ckpt", weights_only=False)["global_step"],
                sorted(p.name for p in root.glob("best-*.ckpt")))

    assert last_step(LastStepCheckpoint, tmp_path / "ours") == (max_steps, ["best-step=2.ckpt"])
    assert last_step(LightningCheckpoint, tmp_path / "lightning")[0] == 2  # the fault this class fixes
