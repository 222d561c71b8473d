# plivo-verify-gateway. `make demo` and `make test` work on a fresh machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# What is installed: pinned, with hashes, from pyproject.toml's ranges (`make lock`).
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
RUNTIME_INSTALLED := $(VENV)/.installed-runtime
DEV_INSTALLED := $(VENV)/.installed-dev
GRAPHIQL_ASSETS := gateway/static/node_modules/.package-lock.json
SOURCES := gateway tests bench
DEMO_PORT ?= 8000
DEMO_SIMULATOR_PORT ?= 8001
UV_VERSION ?= 0.13.9
LOCK_ARGS ?=

.PHONY: help install install-dev assets demo test lint typecheck importlint hadolint pytest schema lock bench bench-herd bench-soak bench-fleet clean

help:
	@echo "make demo    install the runtime, then run the gateway in front of the built-in Plivo simulator"
	@echo "             (DEMO_PORT=8000 DEMO_SIMULATOR_PORT=8001 choose its ports)"
	@echo "make test    install the dev tools, then ruff, mypy --strict, import-linter, hadolint, pytest"
	@echo "make schema  regenerate schema.graphql and schema.federation.graphql from the code"
	@echo "make lock    regenerate $(LOCK) and $(DEV_LOCK) from pyproject.toml"
	@echo "             (LOCK_ARGS=--upgrade, or --upgrade-package NAME, moves pins forward)"
	@echo "make bench       S1 hot, S2 cold, S3 herd (needs wrk); rewrites BENCHMARKS.md's section"
	@echo "make bench-herd  the herd benchmark; rewrites its section of BENCHMARKS.md"
	@echo "make bench-soak  the 60 s soak; rewrites its section of BENCHMARKS.md"
	@echo "make bench-fleet polls through two gateways within Plivo's budget (wrk, Redis); rewrites its section"

# The runtime (what `demo`, `schema` and the Docker image need), or it and the dev tools,
# each beside GraphiQL's assets: pip and npm do not wait for each other.
install:
	@$(MAKE) --no-print-directory -j2 $(RUNTIME_INSTALLED) assets

install-dev:
	@$(MAKE) --no-print-directory -j2 $(DEV_INSTALLED) assets

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11 or newer is needed (set PYTHON=...)"; exit 1; }
	@echo "==> creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Exactly the locked files (hashes checked), then the project without resolving again. Bytecode
# is compiled on first import instead of at install, which halves the install.
$(RUNTIME_INSTALLED): $(LOCK) pyproject.toml | $(BIN)/python
	@echo "==> installing the runtime dependencies pinned in $(LOCK)"
	$(PIP) install --no-compile --require-hashes -r $(LOCK)
	@echo "==> installing plivo-verify-gateway itself (editable, no dependencies)"
	$(PIP) install --no-deps -e .
	@touch $@

$(DEV_INSTALLED): $(DEV_LOCK) pyproject.toml | $(BIN)/python
	@echo "==> installing the runtime and the dev tools pinned in $(DEV_LOCK)"
	$(PIP) install --no-compile --require-hashes -r $(DEV_LOCK)
	@echo "==> installing plivo-verify-gateway itself (editable, no dependencies)"
	$(PIP) install --no-deps -e .
	@touch $@ $(RUNTIME_INSTALLED)

# Both locks from pyproject.toml's ranges, for Python 3.11 on any platform, with every file's
# hash. Pins already in the locks are kept unless LOCK_ARGS says --upgrade. The runtime lock is
# resolved within the dev lock, so the image runs exactly the versions `make test` tested.
# uv comes from a throwaway virtualenv: it is no dependency of the project.
lock:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11 or newer is needed (set PYTHON=...)"; exit 1; }
	@tools=$$(mktemp -d) && trap 'rm -rf "$$tools"' EXIT \
		&& echo "==> installing uv $(UV_VERSION) into $$tools" \
		&& $(PYTHON) -m venv "$$tools" \
		&& "$$tools/bin/python" -m pip install --quiet uv==$(UV_VERSION) \
		&& compile="$$tools/bin/uv pip compile pyproject.toml --generate-hashes --universal --python-version 3.11 --custom-compile-command 'make lock'" \
		&& echo "==> $(DEV_LOCK)" \
		&& eval "$$compile --extra dev $(LOCK_ARGS) -o $(DEV_LOCK) >/dev/null" \
		&& echo "==> $(LOCK) (within $(DEV_LOCK))" \
		&& eval "$$compile -c $(DEV_LOCK) $(LOCK_ARGS) -o $(LOCK) >/dev/null"

# GraphiQL's scripts and styles, so GraphiQL works without internet access (never committed).
assets: $(GRAPHIQL_ASSETS)

$(GRAPHIQL_ASSETS): gateway/static/package.json gateway/static/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix gateway/static --no-audit --no-fund --loglevel=error; \
	else \
		echo "npm not found: GraphiQL will load its scripts and styles from unpkg.com"; \
	fi

demo: install
	$(BIN)/plivo-gateway demo --port $(DEMO_PORT) --simulator-port $(DEMO_SIMULATOR_PORT)

test: install-dev lint typecheck importlint hadolint pytest

lint: $(DEV_INSTALLED)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/ruff check $(SOURCES)

typecheck: $(DEV_INSTALLED)
	$(BIN)/mypy

importlint: $(DEV_INSTALLED)
	$(BIN)/lint-imports

hadolint: $(DEV_INSTALLED)
	$(BIN)/hadolint Dockerfile

pytest: $(DEV_INSTALLED)
	$(BIN)/pytest --cov --cov-report=term

schema: $(RUNTIME_INSTALLED)
	$(BIN)/plivo-gateway export-schema --output schema.graphql
	$(BIN)/plivo-gateway export-schema --federation --output schema.federation.graphql

bench: install-dev
	$(BIN)/python -m bench.run --write BENCHMARKS.md

bench-soak: install-dev
	$(BIN)/python -m bench.soak --write BENCHMARKS.md

bench-herd: install-dev
	$(BIN)/python -m bench.herd --write BENCHMARKS.md

bench-fleet: install-dev
	$(BIN)/python -m bench.fleet --write BENCHMARKS.md

clean:
	rm -rf $(VENV) gateway/static/node_modules .coverage .mypy_cache .ruff_cache .pytest_cache
