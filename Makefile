# Two set-up commands: `make demo` (install + materialize the demo graph), `make test` (install + servers + lint + tests).
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
	$(BIN)/python -m pipelines.demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/dagster definitions validate -w workspace.yaml

# Debian's servers for the end-to-end tests: Chromium (browser UI), PostgreSQL and Redis (production)
SERVERS = chromium postgresql redis-server
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)
servers:
	@dpkg -s $(SERVERS) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(SERVERS) >/dev/null; }

test: lint servers
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

ui: install
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1

# Every benchmark at its documented default except the CATE ones, which run 1k and 10k units here
# (`python benchmarks/cate.py --units 50000`: about 45 minutes, nearly all of it econml's defaults;
# `python benchmarks/cate_estimates.py --units 100000`: about an hour).
bench: install
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/encoder.py
	$(BIN)/python benchmarks/cate.py --units 1000 10000
	$(BIN)/python benchmarks/cate_estimates.py --units 1000 10000
	$(BIN)/python benchmarks/debias.py
	$(BIN)/python benchmarks/landcover.py
	$(BIN)/python benchmarks/landcover_real_labels.py
	$(BIN)/python benchmarks/study2_simulation.py && $(BIN)/python benchmarks/study2_simulation.py --survey-effect 2

.PHONY: install demo lint servers test test-fast ui bench
