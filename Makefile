# Two entry points: `make demo` and `make test`. Everything else is set up on demand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# `make demo DEMO_PORT=8090` or `DEMO_PORT=8090 make demo`
DEMO_PORT ?= 8080

.PHONY: test demo lint contracts bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

contracts: $(STAMP)
	$(BIN)/lint-imports

lint: $(STAMP)
	$(BIN)/ruff check protocol agent firmware_sim collector demo scripts tests bench
	$(BIN)/mypy protocol

test: $(STAMP) contracts lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m demo --port $(DEMO_PORT)

bench: $(STAMP)
	$(BIN)/python bench/poll_cycle.py
	$(BIN)/python bench/agent_footprint.py --duration 60 --poll 10

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-data
