# plivo-verify-gateway. `make demo` and `make test` work on a fresh machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
GRAPHIQL_ASSETS := gateway/static/node_modules/.package-lock.json
SOURCES := gateway tests bench

.PHONY: help install assets demo test lint typecheck importlint hadolint pytest schema bench bench-herd bench-soak bench-fleet clean

help:
	@echo "make demo    install, then run the gateway in front of the built-in Plivo simulator"
	@echo "make test    install, then ruff, mypy --strict, import-linter, hadolint, pytest"
	@echo "make schema  regenerate schema.graphql from the code"
	@echo "make bench       S1 hot, S2 cold, S3 herd (needs wrk); rewrites BENCHMARKS.md's section"
	@echo "make bench-herd  the herd benchmark; rewrites its section of BENCHMARKS.md"
	@echo "make bench-soak  the 60 s soak; rewrites its section of BENCHMARKS.md"
	@echo "make bench-fleet polls through two gateways within Plivo's budget (wrk, Redis); rewrites its section"

install: $(INSTALLED) assets

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11 or newer is needed (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# GraphiQL's scripts and styles, so GraphiQL works without internet access (never committed).
assets: $(GRAPHIQL_ASSETS)

$(GRAPHIQL_ASSETS): gateway/static/package.json gateway/static/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix gateway/static --no-audit --no-fund --loglevel=error; \
	else \
		echo "npm not found: GraphiQL will load its scripts and styles from unpkg.com"; \
	fi

demo: install
	$(BIN)/plivo-gateway demo

test: install lint typecheck importlint hadolint pytest

lint:
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/ruff check $(SOURCES)

typecheck:
	$(BIN)/mypy

importlint:
	$(BIN)/lint-imports

hadolint:
	$(BIN)/hadolint Dockerfile

pytest:
	$(BIN)/pytest --cov --cov-report=term

schema: $(INSTALLED)
	$(BIN)/plivo-gateway export-schema --output schema.graphql

bench: install
	$(BIN)/python -m bench.run --write BENCHMARKS.md

bench-soak: install
	$(BIN)/python -m bench.soak --write BENCHMARKS.md

bench-herd: install
	$(BIN)/python -m bench.herd --write BENCHMARKS.md

bench-fleet: install
	$(BIN)/python -m bench.fleet --write BENCHMARKS.md

clean:
	rm -rf $(VENV) gateway/static/node_modules .coverage .mypy_cache .ruff_cache .pytest_cache
