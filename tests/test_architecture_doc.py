"""docs/architecture.md is what its generator writes from the package's docstrings and imports now,
and the generator's floors follow the imports (checked on a tiny synthetic package)."""

from __future__ import annotations

from pathlib import Path

import pytest

from protein_performer.experiments.report.architecture import (
    COMMAND, DOCUMENT, cycles, first_paragraph, floors, main, read_modules, render)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def package():
    """The package as the generator reads it (parsed once for this file's tests)."""
    return read_modules()


def test_the_architecture_document_is_what_the_generator_writes_now(package):
    written = (REPO / DOCUMENT).read_text()
    assert written == render(package), (
        f"{DOCUMENT} is out of date with the module docstrings or imports: run `{COMMAND}`")


def test_every_module_of_the_package_has_a_docstring_the_document_can_show(package):
    missing = [name for name, module in package.items() if not module.summary
               and name != "protein_performer"]  # the top-level __init__ is empty on purpose
    assert not missing, f"modules without a docstring: {missing}"


def test_first_paragraph_joins_lines_and_turns_rest_roles_into_code():
    doc = ("Loading :class:`~protein_performer.lit.ProteinLM` with ``torch.load``\n"
           "    from :mod:`.shards` and :func:`protein_performer.stats.spearman`.\n\nSecond paragraph.")
    assert first_paragraph(doc) == ("Loading `ProteinLM` with `torch.load` from `shards` and "
                                    "`protein_performer.stats.spearman`.")
    assert first_paragraph(None) == ""


def test_floors_are_one_above_the_highest_import_and_a_cycle_shares_one_floor():
    graph = {"a": set(), "b": {"a"}, "c": {"a", "b"}, "d": {"a"}}
    assert floors(graph) == {"a": 0, "b": 1, "c": 2, "d": 1}
    looped = {"a": set(), "b": {"a", "c"}, "c": {"b"}, "e": {"c"}}
    assert floors(looped) == {"a": 0, "b": 1, "c": 1, "e": 2}
    assert [c for c in cycles(looped) if len(c) > 1] == [["b", "c"]]


def _package(root: Path) -> Path:
    """A tiny package: base <- sub.low <- sub.high (relative import) <- top (lazy import)."""
    files = {
        "__init__.py": "",
        "base.py": '"""The base.\n\nMore detail."""\n',
        "sub/__init__.py": '"""A subpackage, ``sub``."""\n',
        "sub/low.py": '"""Low in sub."""\nfrom tiny import base\n',
        "sub/high.py": '"""High in sub."""\nfrom .low import something\n',
        "top.py": '"""On top."""\n\ndef f():\n    from tiny.sub.high import g\n',
    }
    for name, text in files.items():
        path = root / "tiny" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "tiny"


def test_render_lists_rooms_floor_by_floor_with_each_subpackage_beneath_it(tmp_path):
    modules = read_modules(_package(tmp_path))
    assert modules["tiny.sub.high"].imports == {"tiny.sub.low"}
    assert modules["tiny.top"].imports == {"tiny.sub.high"}  # an import inside a function counts
    text = render(modules, "tiny")
    order = ["## Floor 0", "### `base.py`", "The base.", "## Floor 1", "### `sub/`", "A subpackage, `sub`.",
             "- `low.py` (floor 0): Low in sub.", "- `high.py` (floor 1): High in sub.", "## Floor 2",
             "### `top.py`", "No imports run in a cycle."]
    assert all(line in text for line in order)
    body = text[text.index("## Floor 0"):]
    positions = [body.index(line) for line in order[:-1]]
    assert positions == sorted(positions) and "More detail" not in text


def test_main_writes_the_document(tmp_path, package):
    out = tmp_path / "architecture.md"
    assert main(["--out", str(out)]) == 0
    assert out.read_text() == render(package)
