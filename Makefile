# Every target installs what it needs into .venv first; nothing relies on a global install.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install compile demo up test lint format bench latency clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Our own modules byte-compiled, again only where a source changed. Where
# PYTHONDONTWRITEBYTECODE is set (containers and CI runners often set it) Python never
# writes these itself, and every process the stack and the tests start (the CLI, the API,
# each worker, the simulator) would compile all of them again: ~0.1 s a start, a tenth of
# the CLI tests' time.
compile: install
	@$(BIN)/python -m compileall -q worker tasks scripts

demo: compile  ## the whole stack on embedded defaults, with the simulator and the spec's example
	$(BIN)/dispatch up --demo

up: compile
	$(BIN)/dispatch up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint compile
	$(BIN)/pytest

latency: compile  ## p50/p99 of a synchronous WhatsApp send over the simulator
	$(BIN)/python scripts/latency.py

bench: compile  ## every figure of the campaign/throughput bench: a table, and bench/results.json
	$(BIN)/python scripts/bench.py

clean:
	rm -rf $(VENV) .data .mypy_cache .pytest_cache .ruff_cache
