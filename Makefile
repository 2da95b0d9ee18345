# protein_performer — the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# Which torch to install. 2.13.0 is a local CPU build on our machines; any torch in the
# range of pyproject.toml works (e.g. TORCH_SPEC='torch==2.5.1' for a CUDA machine).
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install demo test bench reproduce variants clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e ".[test,esm,families]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py $(if $(FASTA),--fasta $(FASTA),) $(if $(STEPS),--steps $(STEPS),)

variants: $(STAMP)
	$(PY) scripts/variants.py $(if $(STEPS),--steps $(STEPS),)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile tests

bench: $(STAMP)
	$(PIP) install --quiet -e ".[bench]"
	$(PY) scripts/bench_attention.py

reproduce: $(STAMP)
	$(PY) scripts/reproduce.py --budget-minutes $(or $(BUDGET),60)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
