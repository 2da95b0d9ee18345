"""Analyses of trained models: amino-acid similarity vs BLOSUM62 (:mod:`.similarity`; the matrix
itself in :mod:`.blosum`, which ``score-variants`` shares), attention maps (:mod:`.attention_map`),
embedding views (:mod:`.embedding_views`); figures in :mod:`.plots`.

The commands ``similarity`` (:mod:`.commands`), ``attention`` (:mod:`.attention_map`) and
``plot-embeddings`` (:mod:`.embedding_views`) each expose ``add_arguments`` / ``run``, which
``protein-performer`` (:mod:`protein_performer.cli`) dispatches to.
"""
