"""Turning pretrained Transformers into protein_performer checkpoints.

The only package that imports optional libraries (``transformers``, ``fair-esm``; the ``esm``
extra), and only inside functions, so the core package never needs them.
"""
