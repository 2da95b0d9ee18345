"""The package's shape stays readable: no module over 450 lines, no function over 80 (issue 35)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FILES = sorted([*(REPO / "protein_performer").rglob("*.py"), *(REPO / "scripts").glob("*.py")])


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_over_450_lines_and_no_function_over_80(path):
    text = path.read_text()
    assert text.count("\n") <= 450, f"{path}: {text.count(chr(10))} lines"
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80]
    assert not long, f"{path}: functions over 80 lines: {long}"
