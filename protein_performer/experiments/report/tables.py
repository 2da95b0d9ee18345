"""Markdown tables: the one function every generated document builds its tables with."""

from __future__ import annotations

RULES = {"l": "---", "r": "---:", "c": ":---:"}
"""A column's alignment letter in :func:`md_table` -> its markdown rule."""


def md_table(header: list[str], body: list[list], align: str = "") -> str:
    """A markdown table: ``header``, then one row per item of ``body`` (cells through ``str``).
    ``align`` gives one letter per column, ``l`` (the default), ``r`` or ``c``: ``"lrr"``."""
    if len(align) > len(header) or set(align) - set(RULES):
        raise ValueError(f"align {align!r}: one of {''.join(RULES)} per column of {header}")
    rules = [RULES[a] for a in align.ljust(len(header), "l")]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rules) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in body])
