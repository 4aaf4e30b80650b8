# churnstream developer commands. `make demo` and `make test` work on a fresh machine:
# they install what is missing first (system packages, the Python env, the Kafka jars).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup system-deps python-env kafka-jars demo test test-unit bench lint format \
        typecheck up down status docs clean faults

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-12s %s\n", $$1, $$2}'

setup: system-deps python-env kafka-jars  ## Install everything: system packages, Python env, Kafka jars

system-deps:
	@scripts/install-system-deps.sh

python-env: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[dev]'
	@touch $(STAMP)

kafka-jars: $(STAMP)
	@$(BIN)/churnstream infra fetch

demo: setup  ## Run everything locally on simulated customers: Kafka, Redis, a worker, the API + dashboard, the monitor (Ctrl-C stops)
	$(BIN)/churnstream demo $(DEMO_ARGS)

test: setup  ## Run every test (unit, integration against real Kafka + Redis, end-to-end)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: python-env  ## Only the tests that need no services
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

bench: setup  ## Run the benchmarks; results go to bench/results/
	$(BIN)/python -m bench.run $(BENCH_ARGS)

FAULTS_SIZE ?= full
faults: setup  ## Fault suite: worker kills, Redis/Kafka restarts, bad events; asserts exactness (FAULTS_SIZE=full|reduced)
	$(BIN)/python -m bench.faults --size $(FAULTS_SIZE) $(FAULTS_ARGS)

lint: python-env  ## ruff (lint + format check), mypy and the layering contracts (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: python-env  ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

up: setup  ## Start the local Kafka + Redis (idempotent)
	$(BIN)/churnstream infra up

down: python-env  ## Stop the local Kafka + Redis
	$(BIN)/churnstream infra down

status: python-env  ## Show the local Kafka + Redis
	$(BIN)/churnstream infra status

docs: python-env  ## Regenerate the README settings table, .env.example and docs/schemas
	$(BIN)/python -m churnstream.docs

clean:  ## Remove the Python env and local run data (stops the stack first)
	-$(BIN)/churnstream infra down
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
