"""Analyses of trained models: amino-acid similarity vs BLOSUM62 (:mod:`.similarity`), attention
maps (:mod:`.attention_map`), embedding views (:mod:`.embedding_views`); figures in :mod:`.plots`.

Command-line entry points: :mod:`.commands` (``similarity``), :mod:`.attention_map`
(``attention``) and :mod:`.embedding_views` (``plot-embeddings``).
"""
