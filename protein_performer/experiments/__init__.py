"""Experiments: end-to-end workflows built only from the project's own commands, with summaries that
are pure functions of saved results.

* :mod:`.families` — ``make variants``: a family's homologs to variant-effect scores (TEM-1 by default).
"""
