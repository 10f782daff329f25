# The two commands of the README: `make demo` and `make test`. Both set everything up first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: setup demo test lint unit integration e2e bench clean services-down

setup: $(STAMP)

$(STAMP): pyproject.toml deploy/bootstrap.sh
	bash deploy/bootstrap.sh $(VENV)
	rm -f $(VENV)/.installed-*
	touch $@

demo: setup
	$(BIN)/coldtrace demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/coldtrace schema | diff -u schemas/telemetry-v1.json - \
		|| (echo "schemas/telemetry-v1.json is stale: run $(BIN)/coldtrace schema > schemas/telemetry-v1.json"; exit 1)

unit: setup
	$(BIN)/pytest -q tests/unit

test: lint
	$(BIN)/pytest -q -ra tests

bench: setup
	$(BIN)/python benchmarks/ingest_throughput.py

services-down:
	-$(BIN)/coldtrace services down

clean: services-down
	rm -rf $(VENV) run .pytest_cache .mypy_cache .ruff_cache
