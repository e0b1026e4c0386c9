# mailferry: `make demo` and `make test` set up everything they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_STATE := .devstack/demo
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: help install test lint demo up down env bench clean

help:
	@echo "make demo    local stack + seeded mailboxes + a real poll, then shows what landed"
	@echo "make test    lint, type-check, the whole test suite against the real local stack, and"
	@echo "             the unit tests under every other Python 3.11+ pyenv has (venvs in .venvs/)"
	@echo "make up      start the local stack (and seed demo mail); make down stops it"
	@echo "make bench   throughput benchmarks on the local stack"

install: $(VENV)/.installed
	@bash devstack/install.sh

$(VENV)/.installed: requirements.txt requirements-cli.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements-dev.txt
	$(PIP) --no-deps -e .
	@touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest
	$(BIN)/python -m tests.interpreters

demo: install
	$(BIN)/python -m devstack demo --state-dir $(DEMO_STATE)

up: install
	$(BIN)/python -m devstack up --state-dir $(DEMO_STATE) --seed-demo
	@echo "Settings for this stack: source <($(BIN)/python -m devstack env --state-dir $(DEMO_STATE))"

down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m devstack down --state-dir $(DEMO_STATE); fi

env:
	@$(BIN)/python -m devstack env --state-dir $(DEMO_STATE)

bench: install
	$(BIN)/python -m bench --out bench/results.md

clean: down
	rm -rf $(VENV) .venvs .devstack .mypy_cache .ruff_cache .pytest_cache
