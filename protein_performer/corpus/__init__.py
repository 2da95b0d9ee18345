"""Protein corpora: reading sequence files (:mod:`.fasta`), preparing shards (:mod:`.prepare`,
layout in :mod:`.shards`) and downloading UniProt data (:mod:`.fetch`).

Submodules are imported explicitly (``from protein_performer.corpus.fasta import read_records``)
so importing the package stays cheap.
"""
