# q16 — `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
export HF_HUB_OFFLINE := 1

.DEFAULT_GOAL := help

help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create .venv and install q16 with dev extras

test: install ## run the test suite (gpu/weights tests skip when unavailable)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install ## the suite without slow tests
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-full: install ## everything, including gpu/weights tests (set Q16_WEIGHTS_DIR)
	$(PY) -m pytest -m "slow or not slow" $(PYTEST_ARGS)

demo: install ## offline demo: synthetic SMID, tiny random-weight CLIP, zero-shot vs tuned
	$(PY) train.py experiment=demo

lint: install ## ruff + mypy
	$(VENV)/bin/ruff check src tests scripts *.py
	$(VENV)/bin/ruff format --check src tests scripts *.py
	$(VENV)/bin/mypy

format: install ## ruff format + autofix
	$(VENV)/bin/ruff format src tests scripts *.py
	$(VENV)/bin/ruff check --fix src tests scripts *.py

.PHONY: help install test test-fast test-full demo lint format
