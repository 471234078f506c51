# fraudwatch: two commands from clone to a running pipeline (`make run`) and a green test run
# (`make test`). Everything is installed into .venv/ and .stack/ by these targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STACK := $(PY) -m devtools.stack

.PHONY: venv browser up down status clean-stack run test chaos soak lint typecheck unit integration bench bench-full evaluate screenshots

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; v=sys.version_info[:2]; sys.exit(0 if (3,11) <= v < (3,13) else "fraudwatch needs Python 3.11 or 3.12 (bytewax 0.21.1 wheels stop at 3.12); found %d.%d: set PYTHON=python3.12" % v)'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

up: venv
	@$(STACK) up

# Debian's Chromium for the end-to-end browser tests (installed once, only when missing).
browser:
	@scripts/install-browser

down:
	@if [ -x $(PY) ]; then $(STACK) down; else echo "no virtualenv: nothing was started"; fi

status: venv
	@$(STACK) status

clean-stack:
	@if [ -x $(PY) ]; then $(STACK) clean; fi
	@rm -rf .stack/data .stack/run

# The whole pipeline on the local stack; Ctrl-C stops everything it started.
run: venv
	@$(PY) -m devtools.supervisor

lint: venv
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .

typecheck: venv
	@$(PY) -m mypy .

# Lint, types and every test tier, with the stack started (and stopped again) around them.
test: venv browser
	@$(STACK) with-stack -- env PY=$(PY) scripts/check $(PYTEST_ARGS)

# The fault-injection suite at full size plus the console under load (docs/reliability.md):
# about 20 minutes. `make test` runs the same suite at reduced size.
chaos: venv browser
	@$(STACK) with-stack -- env PY=$(PY) scripts/chaos $(PYTEST_ARGS)

# The broker faults that once lost alerts, repeated (default 30 runs each) on a private
# Kafka + FerretDB, every record checked against the backtest; not part of `make test`.
# Runs are recorded under .stack/soak/, a tally is printed. E.g. SOAK_ARGS="--runs 5".
soak: venv
	@nice -n 10 $(PY) -m tests.chaos.soak $(SOAK_ARGS)

# Refresh docs/screenshots from the browser tests (needs the stack: `make up` first).
screenshots: venv browser
	@FRAUDWATCH_SCREENSHOT_DIR=docs/screenshots $(PY) -m pytest -q tests/webapp/test_browser.py

unit: venv
	@$(PY) -m pytest -m 'not integration and not browser' $(PYTEST_ARGS)

# Detection quality the handbook way: fraudwatch vs today's rules vs a random forest (no stack needed).
evaluate: venv
	@$(PY) -m bench.evaluate

# Throughput, latency, memory and scale-out on the local stack (`make up` first); writes
# bench/results/<mode>.json, docs/benchmarks.md and docs/benchmarks-latency.png.
bench: venv
	@$(PY) -m bench --quick

bench-full: venv
	@$(PY) -m bench --full
