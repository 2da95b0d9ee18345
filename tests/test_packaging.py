"""The package outside the checkout: the shipped configs are package data, a built wheel holds
every one of them, and ``protein-performer fit --config demo`` trains from an installed wheel in a
folder that is not the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from model_utils import random_sequences, write_fasta
from protein_performer.cli import BASE_CONFIG, CONFIG_DIR, packaged_config, resolve_config_names

REPO = Path(__file__).resolve().parents[1]
TINY_FIT = ["--model.config.dim", "16", "--model.config.depth", "1", "--model.config.heads", "2",
            "--model.config.local_heads", "1", "--model.config.nb_features", "8", "--data.window_tokens", "64",
            "--data.batch_size", "2", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
            "--trainer.limit_val_batches", "1"]


def test_configs_live_in_the_package_and_the_checkout_links_to_them():
    assert CONFIG_DIR.resolve() == REPO / "protein_performer" / "configs" and BASE_CONFIG.is_file()
    shipped = sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))
    assert "demo.yaml" in shipped and "base.yaml" in shipped
    link = REPO / "configs"  # what the README, the docs and users type: --config configs/demo.yaml
    assert link.is_symlink() and os.readlink(link) == os.path.join("protein_performer", "configs")
    assert sorted(p.name for p in link.glob("*.yaml")) == shipped


def test_a_bare_config_name_is_the_shipped_config_and_paths_stay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    demo = str(CONFIG_DIR / "demo.yaml")
    assert resolve_config_names(["fit", "--config", "demo", "-c", "family_mlm", "--config=transformer_mlm"]) == [
        "fit", "--config", demo, "-c", str(CONFIG_DIR / "family_mlm.yaml"),
        "--config=" + str(CONFIG_DIR / "transformer_mlm.yaml")]
    assert packaged_config("configs/demo.yaml") == "configs/demo.yaml"  # a path, resolved by the CLI as given
    assert packaged_config("no_such_config") == "no_such_config"  # jsonargparse reports it
    (tmp_path / "demo").write_text("trainer: {}\n")
    assert packaged_config("demo") == "demo"  # an existing file of that name wins
    assert resolve_config_names(["fit", "--data.data_dir", "demo"]) == ["fit", "--data.data_dir", "demo"]


def _copy_project(dst: Path) -> Path:
    """The files a wheel is built from (what an sdist holds), so the build writes nothing in the checkout."""
    dst.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dst / name)
    shutil.copytree(REPO / "protein_performer", dst / "protein_performer",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst


def _fresh_venv(path: Path) -> Path:
    """A venv without pip that reuses this interpreter's installed packages (torch, Lightning, ...)
    through a .pth line, so nothing is downloaded. The .pth adds the folder only: its own .pth
    files (e.g. an editable install of protein_performer) are not run."""
    venv.EnvBuilder(with_pip=False).create(path)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    parent = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    Path(purelib, "reuse_parent_packages.pth").write_text("".join(f"{p}\n" for p in parent))
    return python


@pytest.mark.slow
def test_wheel_ships_the_configs_and_fit_runs_from_it_outside_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(WANDB_MODE="offline", OMP_NUM_THREADS="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(wheels), str(_copy_project(tmp_path / "project"))], env=env, check=True, timeout=300)
    (wheel,) = wheels.glob("protein_performer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"protein_performer/configs/{p.name}" for p in CONFIG_DIR.glob("*.yaml")} <= names

    python = _fresh_venv(tmp_path / "venv")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "--quiet", str(wheel)], env=env, check=True, timeout=300)
    work = tmp_path / "elsewhere"  # not the checkout: nothing relative to the repository can be found
    work.mkdir()
    show = "import protein_performer.cli as c; print(c.__file__); print(c.BASE_CONFIG)"
    where = subprocess.run([str(python), "-c", show], cwd=work, env=env, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert all(Path(p).is_relative_to(tmp_path / "venv") for p in where) and Path(where[1]).is_file(), where

    cli = str(python.parent / "protein-performer")
    proteins = [(f"p{i}", s) for i, s in enumerate(random_sequences(40, 20, 60, seed=1))]
    fasta = write_fasta(work / "small.fasta", proteins)
    subprocess.run([cli, "prepare", str(fasta), "--out", "ds", "--valid-fraction", "0.3", "--test-fraction", "0.3"],
                   cwd=work, env=env, check=True, timeout=300, capture_output=True)
    proc = subprocess.run([cli, "fit", "--config", "demo", *TINY_FIT, "--data.data_dir", "ds",
                           "--trainer.max_steps", "2", "--trainer.default_root_dir", "run"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "run" / "checkpoints" / "last.ckpt").is_file()
