# Entry points: `make demo` runs the end-to-end demo, `make test` the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test demo lint nab clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The stamp is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,train,plot]'
	touch $@

# The demo and the CLI need neither the test tools nor PyTorch.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[plot]'
	touch $@

setup: $(VENV)/.installed

test: setup
	$(BIN)/python -m pytest -q

demo: $(VENV)/.installed-run
	$(BIN)/python deploy/demo.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

nab: setup
	$(BIN)/python -m benchmarks.nab

clean:
	-bash deploy/kafka/local-kafka.sh stop
	rm -rf $(VENV) .cache
