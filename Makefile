# Everything a newcomer or CI needs, from a fresh machine with python3 (>= 3.11).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# A second environment for the kurrentdbclient conformance checks: kurrentdbclient needs
# grpcio >= 1.80 while esdbclient pins 1.71, so they cannot share one.
KVENV  := .venv-kurrent

.PHONY: setup kurrent-env demo test lint format clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e '.[dev]'
	touch $@

kurrent-env: $(KVENV)/.installed

$(KVENV)/.installed: tests/emulator/kurrent-requirements.txt
	$(PYTHON) -m venv $(KVENV)
	$(KVENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(KVENV)/bin/uv pip install --quiet --python $(KVENV)/bin/python -r tests/emulator/kurrent-requirements.txt
	touch $@

demo: setup
	$(BIN)/esdb-relay demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup kurrent-env lint
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m bench.emulator_bench

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(KVENV) .pytest_cache .ruff_cache
