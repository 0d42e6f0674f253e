# One task runner. Needs only python3 and make: uv is bootstrapped into .tools/ on first use.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

.PHONY: help run test lint format bench sync clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(UV):
	@echo "bootstrapping uv $(UV_VERSION) into $(TOOLS)/"
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)'

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen
	@touch $@

sync: .venv/.synced ## install the locked dependencies into .venv

run: .venv/.synced ## serve on 127.0.0.1:8000 with the embedded defaults (no external service)
	$(UV) run --frozen --no-sync python -m bot serve --host $(HOST) --port $(PORT)

test: .venv/.synced ## the whole test suite
	$(UV) run --frozen --no-sync pytest $(PYTEST_ARGS)

lint: .venv/.synced ## ruff (lint + format check) and mypy --strict
	$(UV) run --frozen --no-sync ruff check .
	$(UV) run --frozen --no-sync ruff format --check .
	$(UV) run --frozen --no-sync mypy

format: .venv/.synced ## apply ruff's fixes and formatting
	$(UV) run --frozen --no-sync ruff check --fix .
	$(UV) run --frozen --no-sync ruff format .

bench: .venv/.synced ## run the benchmarks and print each figure beside its target
	@set -e; for b in bench/*.py; do echo "== $$b"; $(UV) run --frozen --no-sync python $$b; done

clean: ## remove the environment, caches and local data
	rm -rf .venv $(TOOLS) .pytest_cache .mypy_cache .ruff_cache data
