"""docs/architecture.md as a pure function of the package's own module docstrings and imports.

Each level of the package is made of *rooms*: its direct modules and its direct subpackages. A room
stands on a *floor*: floor 0 imports no other room of its level, and a room on floor k imports at
least one room on floor k - 1 and none on floor k or above (every import counts, those inside
functions included). The document lists the top-level rooms floor by floor and, inside each
subpackage, its own rooms in the same order, each with the first paragraph of its docstring; so
the map cannot drift from the code, and an import that runs back up a floor shows as a cycle
(whose rooms share a floor).

``python -m protein_performer.experiments.report.architecture`` rewrites the file;
``tests/test_architecture_doc.py`` fails when the file differs from what this writes now.
"""

from __future__ import annotations

import argparse
import ast
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import protein_performer
from protein_performer.outputs import written_atomically

log = logging.getLogger("protein_performer")

PACKAGE = Path(protein_performer.__file__).resolve().parent
"""The ``protein_performer`` package folder this module belongs to."""
DOCUMENT = Path("docs") / "architecture.md"
"""Where the document lives, relative to a checkout's root."""
COMMAND = "python -m protein_performer.experiments.report.architecture"

_ROLE = re.compile(r":[a-z]+:`(~?)([^`<]+?)(?:\s*<[^>]+>)?`")


@dataclass(frozen=True)
class Module:
    """One module of the package: its dotted name, its docstring's first paragraph, and the
    package modules it imports (dotted names; a subpackage is named by its ``__init__``)."""

    name: str
    summary: str
    imports: frozenset[str]
    is_package: bool


def first_paragraph(docstring: str | None) -> str:
    """The docstring's first paragraph on one line, its reST roles and double backticks as markdown."""
    paragraph = (docstring or "").strip().split("\n\n")[0]
    text = " ".join(line.strip() for line in paragraph.splitlines())
    return _ROLE.sub(_role_as_code, text).replace("``", "`")


def _role_as_code(match: re.Match) -> str:
    """``:class:`~a.b.C``` -> `C` (Sphinx's short form), ``:mod:`.x``` -> `x`, else the target as written."""
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target.lstrip('.')}`"


def _resolve(target: str, known: set[str]) -> str | None:
    """The longest known module that ``target`` names or lies inside (None outside the package)."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def _imports(tree: ast.Module, name: str, is_package: bool, known: set[str]) -> frozenset[str]:
    """Package modules imported anywhere in ``tree``, the module ``name``'s source."""
    own_package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(filter(None, (_resolve(alias.name, known) for alias in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = own_package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            source = ".".join(filter(None, (base if node.level else "", node.module or "")))
            for alias in node.names:
                found.add(_resolve(f"{source}.{alias.name}", known) or "")
    found.discard("")
    found.discard(name)
    return frozenset(found)


def read_modules(package: Path = PACKAGE) -> dict[str, Module]:
    """Every module under ``package`` by dotted name, from its source alone (nothing is imported)."""
    if not (package / "__init__.py").is_file():
        raise ValueError(f"{package}: not a package (no __init__.py)")
    paths = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        is_package = parts[-1] == "__init__"
        paths[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    known = set(paths)
    modules = {}
    for name, (path, is_package) in paths.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        modules[name] = Module(name, first_paragraph(ast.get_docstring(tree)),
                               _imports(tree, name, is_package, known), is_package)
    return modules


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` (Tarjan), each sorted, every component after
    those it points to; a node in no cycle is a component of its own. Every node of a larger
    component reaches every other: their imports run in a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def floors(graph: Mapping[str, set[str]]) -> dict[str, int]:
    """Each node's floor: 0 without edges, else one above the highest node it points to. Nodes
    whose imports run in a cycle (see :func:`cycles`) share one floor."""
    components = cycles(graph)  # in reverse topological order: a component follows all it points to
    result: dict[str, int] = {}
    for component in components:
        members = set(component)
        below = [result[t] for node in component for t in graph[node] if t not in members]
        for node in component:
            result[node] = 1 + max(below, default=-1)
    return result


def room_graph(modules: Mapping[str, Module], package: str) -> dict[str, set[str]]:
    """The rooms of ``package`` (its direct modules and subpackages, by dotted name), each with the
    rooms of the same level that it imports."""
    prefix = package + "."

    def room(name: str) -> str | None:
        return prefix + name[len(prefix):].split(".")[0] if name.startswith(prefix) else None

    graph: dict[str, set[str]] = {name: set() for name in modules if room(name) == name}
    for name, module in modules.items():
        source = room(name)
        if source in graph:  # (a folder without __init__.py is no room)
            graph[source].update(t for t in map(room, module.imports) if t in graph and t != source)
    return graph


def _label(name: str, package: str, modules: Mapping[str, Module]) -> str:
    relative = name[len(package) + 1:].replace(".", "/")
    return f"`{relative}/`" if modules[name].is_package else f"`{relative}.py`"


def _rooms(modules: Mapping[str, Module], package: str) -> tuple[dict[str, int], list[list[str]]]:
    """The floor of each room of ``package``, rooms in floor order, and the rooms whose imports
    run in a cycle."""
    graph = room_graph(modules, package)
    floor_of = floors(graph)
    ordered = dict(sorted(floor_of.items(), key=lambda item: (item[1], item[0])))
    return ordered, [c for c in cycles(graph) if len(c) > 1]


def _cycle_lines(found: list[list[str]], package: str, modules: Mapping[str, Module], indent: str) -> list[str]:
    return [f"{indent}- imports run in a cycle, so these share a floor: "
            + " ↔ ".join(_label(n, package, modules) for n in c) for c in found]


def _subpackage(modules: Mapping[str, Module], package: str, indent: str) -> tuple[list[str], int]:
    """A subpackage's rooms in floor order as nested list items, and how many cycles it holds."""
    floor_of, found = _rooms(modules, package)
    lines, count = [], len(found)
    for name, floor in floor_of.items():
        lines.append(f"{indent}- {_label(name, package, modules)} (floor {floor}): {modules[name].summary}")
        if modules[name].is_package:
            inner, inner_count = _subpackage(modules, name, indent + "  ")
            lines, count = lines + inner, count + inner_count
    return lines + _cycle_lines(found, package, modules, indent), count


def render(modules: Mapping[str, Module], package: str = PACKAGE.name) -> str:
    """The whole document: the top-level rooms floor by floor, each subpackage's rooms beneath it."""
    floor_of, found = _rooms(modules, package)
    body, count = [], len(found)
    for floor in sorted(set(floor_of.values())):
        body += [f"## Floor {floor}", ""]
        for name in (n for n, f in floor_of.items() if f == floor):
            body += [f"### {_label(name, package, modules)}", "", modules[name].summary, ""]
            if modules[name].is_package:
                inner, inner_count = _subpackage(modules, name, "")
                body, count = body + inner + [""], count + inner_count
    body += _cycle_lines(found, package, modules, "")
    cycle_note = ("No imports run in a cycle." if count == 0 else
                  f"Imports run in a cycle in {count} place{'s' * (count > 1)}, listed where they are; "
                  "the rooms of a cycle share a floor.")
    head = [f"# Architecture of `{package}`", "",
            f"Generated by `{COMMAND}` from the first paragraph of each module's docstring and from "
            "the imports in the source; do not edit it by hand (`tests/test_architecture_doc.py` "
            "fails when it differs from what the generator writes).", "",
            f"Each level of the package is made of rooms: its modules and its subpackages "
            f"({len(floor_of)} rooms on {len(set(floor_of.values()))} floors at the top). A room on "
            "floor 0 imports no other room of its level; a room on floor k imports rooms on lower "
            "floors only, at least one of them on floor k - 1 (imports inside functions count too). "
            f"Inside each subpackage its own rooms are numbered the same way. {cycle_note}", ""]
    return "\n".join(head + body).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write docs/architecture.md (or ``--out``) from the package's source."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PACKAGE.parent / DOCUMENT,
                        help="the file to write (default: docs/architecture.md of this checkout)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with written_atomically(args.out) as tmp:
        tmp.write_text(render(read_modules()))
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
