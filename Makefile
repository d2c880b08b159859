# Two set-up commands: `make demo` (install + materialize the demo graph), `make test` (install + tests).
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
TORCH ?= torch==2.13.0
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/dagster asset materialize -m pipelines.definitions --select '*'

test: install
	$(BIN)/python -m pytest -q

ui: install
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/dagster dev -w workspace.yaml

bench: install
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/encoder.py

.PHONY: install demo test ui bench
