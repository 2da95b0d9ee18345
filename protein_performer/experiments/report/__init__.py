"""RESULTS.md as a pure function of :class:`~protein_performer.experiments.results.Results`
(``results_all.json``, written by :mod:`~protein_performer.experiments.reproduce`).

- :mod:`~protein_performer.experiments.report.rules`: the verdict rules, defined once under named
  :class:`~protein_performer.experiments.report.rules.Tolerances`;
- :mod:`~protein_performer.experiments.report.markdown`: the tables and notes of each section;
- :mod:`~protein_performer.experiments.report.document`: the whole document (:func:`render`, pure) and
  :func:`write_report` (also draws the figures);
- :mod:`~protein_performer.experiments.report.figures`: the figures and CSVs;
- :mod:`~protein_performer.experiments.report.tables`: :func:`~.tables.md_table`, with which every generated
  document (RESULTS.md, the benchmarks' blocks, the workflows' summaries) builds its tables;
- :mod:`~protein_performer.experiments.report.benchmarks`: docs/benchmarks.md's table of figures, drawn
  from the JSON files the benchmarks wrote.

The schema (``plan``, the experiment's settings; ``table``, one scored run per attention × objective
× seed; ``curves``, ``long``, ``transfer``, ``similarity``, ``benchmark`` and ``environment``) is
:mod:`protein_performer.experiments.results`. The report sits above the schema and below the
experiment that fills it: ``results`` → ``report`` → ``reproduce``; nothing here imports torch.
"""

from protein_performer.experiments.report.document import render, write_report
from protein_performer.experiments.report.rules import TOLERANCES, Tolerances, Verdict

__all__ = ["TOLERANCES", "Tolerances", "Verdict", "render", "write_report"]
