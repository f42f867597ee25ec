# attnbench: `make test` and `make bench` each bootstrap .venv from the project's own files.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROFILE ?= default
DEVICE ?= cpu

.PHONY: test bench quick lint clean-results

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned, so no dependency can pull a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	# the ray extra lets CI exercise --executor ray (+7 s, +258 MB); make bench does not need it
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks all --profile $(PROFILE) --device $(DEVICE)

quick: $(STAMP)
	$(PY) -m benchmarks all --profile quick --device $(DEVICE)

lint: $(STAMP)
	$(PY) -m ruff check models benchmarks tests
	$(PY) -m ruff format --check models benchmarks tests
