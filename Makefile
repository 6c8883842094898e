# OneDoor — every routine command lives here. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.DEFAULT_GOAL := help
.PHONY: help run test lint format typecheck unit integration e2e bench bench-smoke faults faults-smoke migrate demo i18n simulate clean

help: ## list the commands
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(STAMP)

run: $(STAMP) ## install, migrate, load the demo hall (once) and serve on http://127.0.0.1:8000
	$(BIN)/onedoor db upgrade
	$(BIN)/onedoor demo
	$(BIN)/onedoor serve --no-migrate --demo-printer

migrate: $(STAMP) ## apply database migrations (ONEDOOR_DATABASE_URL, default SQLite under var/)
	$(BIN)/onedoor db upgrade

demo: $(STAMP) ## load the demo hall into an empty database
	$(BIN)/onedoor demo

test: $(DEV_STAMP) lint ## install dev dependencies, lint, and run the whole suite
	$(BIN)/pytest

unit: $(DEV_STAMP) ## the pure domain tests only (milliseconds each)
	$(BIN)/pytest tests/unit

integration: $(DEV_STAMP) ## tests against real SQLite and PostgreSQL
	$(BIN)/pytest tests/integration

e2e: $(DEV_STAMP) ## the app over HTTP, and real server processes
	$(BIN)/pytest tests/e2e

lint: $(DEV_STAMP) ## ruff lint + format check, mypy (strict on the domain)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(DEV_STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(DEV_STAMP) ## benchmarks: HTTP issue/call-next (SQLite, PostgreSQL, 1-2 workers), websocket fan-out, booking rush, managers' views on a year of 20 halls, CPU per command, issuing's statements on the database alone (pgbench), the estimate's projection
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.fanout
	$(BIN)/python -m bench.booking
	$(BIN)/python -m bench.history
	$(BIN)/python -m bench.commands
	$(BIN)/python -m bench.issuing_sql
	$(BIN)/python -m bench.estimate

bench-smoke: $(DEV_STAMP) ## a short run of every benchmark (CI)
	$(BIN)/python -m bench.run --smoke
	$(BIN)/python -m bench.fanout --smoke
	$(BIN)/python -m bench.booking --smoke
	$(BIN)/python -m bench.history --smoke
	$(BIN)/python -m bench.commands --smoke
	$(BIN)/python -m bench.issuing_sql --smoke
	$(BIN)/python -m bench.estimate --smoke

faults: $(DEV_STAMP) ## the fault suite: workers, PostgreSQL, Redis, printers and the scheduler leader broken under load, then a 30 min soak (docs/operations.md)
	$(BIN)/python -m bench.faults

faults-smoke: $(DEV_STAMP) ## the fault suite's short run (CI): every scenario once, a 1 min soak
	$(BIN)/python -m bench.faults --short

simulate: $(STAMP) ## the goals table of every shipped scenario: queue policy v2 against FIFO and v1 (docs/queue.md)
	for s in standard-075 standard-092 priority-flood everyone-early counter-closes-1100; do \
		$(BIN)/onedoor simulate $$s --compare fifo,v1 || exit 1; echo; done

i18n: $(DEV_STAMP) ## check that every page message has its Chinese (lists what is missing)
	$(BIN)/pytest -q tests/unit/test_catalogs.py

clean: ## remove the virtualenv, caches and local data under var/
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
