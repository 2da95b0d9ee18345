"""scripts/ holds entry points only: each file calls one ``main`` of :mod:`protein_performer.experiments`,
and the package finds nothing through the checkout's layout (no path tricks, no tests/ on the path)."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import protein_performer
from protein_performer.experiments import places

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "scripts").glob("*.py"))
PACKAGE = Path(protein_performer.__file__).parent


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_script_only_calls_the_main_of_an_experiments_module(script):
    tree = ast.parse(script.read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    workflow = [node for node in imports if isinstance(node, ast.ImportFrom) and node.module != "sys"]
    assert len(workflow) == 1 and [a.name for a in workflow[0].names] == ["main"], ast.dump(tree)[:300]
    module = workflow[0].module
    assert module.startswith("protein_performer.experiments.")
    assert callable(importlib.import_module(module).main)
    assert not [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    assert len(script.read_text().splitlines()) <= 15


def test_no_module_of_the_package_puts_a_folder_on_the_import_path_or_reads_the_checkout():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "sys.path.insert" not in text and "sys.path.append" not in text, path
        assert "CHECKOUT" not in text, path
        if path.is_relative_to(PACKAGE / "experiments"):
            assert "parents[2]" not in text, path  # the package's own location is not the checkout


def test_every_experiments_module_imports_without_the_checkout():
    import protein_performer.experiments as experiments

    for info in pkgutil.walk_packages(experiments.__path__, "protein_performer.experiments."):
        importlib.import_module(info.name)


def test_places_follow_the_working_directory_and_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(places.SHARED_DATA_ENV, raising=False)
    assert places.workdir() == tmp_path.resolve()
    assert places.ecoli() == tmp_path.resolve().parent / "shared" / "data" / places.ECOLI_FILE
    monkeypatch.setenv(places.SHARED_DATA_ENV, str(tmp_path / "elsewhere"))
    assert places.shared_data() == (tmp_path / "elsewhere").resolve()
