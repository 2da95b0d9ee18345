"""The benchmarks: each module's ``main(argv)`` is one benchmark, and ``scripts/<name>.py`` only calls it.

* :mod:`.attention` (``scripts/bench_attention.py``) with :mod:`.attention_sweep` (the measuring) and
  :mod:`.attention_report` (the block, the plots, the JSON); :mod:`.approximation`
  (``scripts/plot_approximation.py``): FAVOR+ speed, memory and approximation error (paper Fig. 3, 4);
* :mod:`.train` (``scripts/bench_train.py``) with its modes :mod:`.train_sweep`, :mod:`.train_bound`,
  :mod:`.train_precision` and what they share, :mod:`.train_common`;
* :mod:`.data` and :mod:`.datamodule`: ``prepare`` and the data module's windows/s;
* :mod:`.embed`, :mod:`.embed_memory` and :mod:`.esm_gap`: ``embed``, a converted ESM-2's memory and its
  distance from the exact model;
* :mod:`.generate`: the cost of a generated token;
* :mod:`.families` and :mod:`.multi_family`: variant effects from family-trained models;
* :mod:`.common`: timing and peak memory on CPU or CUDA.

Worker processes (a fresh interpreter per measured cell, so that its peak memory is its own) run these
modules with ``python -m``; nothing here depends on where the checkout is.
"""
