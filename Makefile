# dsrlab: the two commands of the README, plus the checks they run.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install demo test lint bench clean-lab

install:
	@bash scripts/install.sh

demo: install
	$(VENV)/bin/dsrlab run seed

lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy lab

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) bench/bringup.py

clean-lab: install
	$(VENV)/bin/dsrlab clean
