# The two quick-start commands: `make dev` brings the stack up, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test bench openapi clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/airlock dev

test: $(STAMP)
	$(BIN)/python -m tests.preflight
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/dispatch.py
	$(BIN)/python bench/connection_tests.py
	$(BIN)/python bench/connection_tests.py --cap 4 --burst 100
	$(BIN)/python bench/triggers.py
	$(BIN)/python bench/console.py

openapi: $(STAMP)
	$(BIN)/python -m api.execution.app

clean:
	rm -rf .airlock
