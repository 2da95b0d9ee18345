"""Experiments: end-to-end workflows built from the project's own commands and configs, with reports
that are pure functions of saved results.

Imports flow one way, from the configs up to the workflows:

* :mod:`.places` — where the workflows read and write: the working directory (a checkout's root) and
  the shared data (``$PROTEIN_PERFORMER_SHARED_DATA``, else ``../shared/data``), never the package's
  own location;
* :mod:`.registry` — named variants: a config of ``configs/`` plus overrides (:func:`.registry.config_path`
  is the one place that says where configs live);
* :mod:`.runs` — :func:`.runs.train_run`: a variant trained through :class:`~protein_performer.cli.ProteinCLI`
  (configs/base.yaml, the config, the overrides), with the wall-clock callbacks of
  :mod:`protein_performer.callbacks`; :func:`.runs.cli_command`, the one way a workflow runs a
  ``protein-performer`` command (in this process, logged and timed); scoring helpers;
* :mod:`.results` — the typed schema of ``results_all.json``; :mod:`.report` renders RESULTS.md from it,
  docs/benchmarks.md's table of figures from the benchmarks' JSON files, and every generated table
  (:func:`.report.tables.md_table`);
* :mod:`.machine` — the machine description and process memory;
* :mod:`.bench` — the benchmarks (``scripts/bench_*.py``);
* :mod:`.reproduce` (``make reproduce``) with :mod:`.long_windows` and :mod:`.analyses` — the paper's
  protein experiments, written to docs/RESULTS.md;
* :mod:`.study` and :mod:`.study_report` — the learning study (docs/benchmarks/learning.md);
* :mod:`.demo` — ``make demo``; :mod:`.families` — ``make variants``: a family's homologs to
  variant-effect scores (TEM-1 by default); :mod:`.assays` — the multi-assay benchmark's inputs.

``scripts/`` holds entry points only: each calls one ``main(argv)`` of these modules.
"""
