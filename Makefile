# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HTMX_VERSION := 2.0.11
HTMX_SHA256 := d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717

.PHONY: run test test-sqlite test-postgres setup lint bench

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

static/vendor/htmx.min.js: Makefile
	HTMX_VERSION=$(HTMX_VERSION) HTMX_SHA256=$(HTMX_SHA256) sh scripts/fetch_htmx.sh

setup: $(BIN)/.installed static/vendor/htmx.min.js

## Runs the product: migrations, demo data, web + worker-with-scheduler + sweeper (+ embedded Redis).
run: setup
	$(BIN)/flask --app wsgi run-all

## Runs the whole test suite: SQLite, then PostgreSQL when one answers at DATABASE_URL or 127.0.0.1:5432.
test: setup
	$(BIN)/python scripts/run_tests.py

lint: setup
	$(BIN)/ruff check webapp jobs tests bench

bench: setup
	$(BIN)/python bench/builder.py
