# Two commands do all the set-up on a fresh machine:  make train  |  make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test test-unit ui install clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-cache-dir -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## make train: set up .venv, then run the default training (override with ARGS="task=regression ...")
train: $(STAMP)
	$(BIN)/pipeline-train $(ARGS)

## make test: set up .venv, then run the whole test suite on TEST_JOBS pytest workers (pytest-xdist; a test
## module stays on one worker, so its module fixtures are built once: the slowest tests are listed at the end, to
## keep the modules' times even)
TEST_JOBS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadscope --durations=15 $(PYTEST_ARGS)

## make test-unit: the fast tier (no subprocess, no real training beyond a few steps), about a minute
test-unit: $(STAMP)
	$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

## make ui: the MLflow UI on this project's store, at http://127.0.0.1:5000
ui: $(STAMP)
	$(BIN)/pipeline-ui $(ARGS)

clean:
	rm -rf outputs multirun .pytest_cache
