# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config/default.toml

.PHONY: run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python app.py --config $(CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/billing.py
	$(BIN)/python bench/footprint.py
	$(BIN)/python bench/modbus_bus.py
	$(BIN)/python bench/deposits.py
	$(BIN)/python bench/gas.py
	$(BIN)/python bench/vouchers.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
