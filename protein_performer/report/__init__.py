"""RESULTS.md as a pure function of ``results_all.json`` (written by ``scripts/reproduce.py``).

- :mod:`~protein_performer.report.rules`: the verdict rules, defined once under named
  :class:`~protein_performer.report.rules.Tolerances`;
- :mod:`~protein_performer.report.markdown`: the tables and notes of each section;
- :mod:`~protein_performer.report.document`: the whole document (:func:`render`, pure) and
  :func:`write_report` (also draws the figures);
- :mod:`~protein_performer.report.figures`: the figures and CSVs.

``results_all.json`` holds ``plan`` (the experiment's settings), ``table`` (one scored run per
attention × objective × seed), ``curves``, ``long``, ``transfer``, ``similarity``, ``benchmark`` and
``environment`` (versions, machine, data sizes, command, date).
"""

from protein_performer.report.document import render, write_report
from protein_performer.report.rules import TOLERANCES, Tolerances, Verdict

__all__ = ["TOLERANCES", "Tolerances", "Verdict", "render", "write_report"]
