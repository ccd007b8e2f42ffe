# dlaas-tui: `make run` sets up .venv and opens the TUI; `make test` runs everything.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-installed
TEST_STAMP := $(VENV)/.test-installed
PYTEST_ARGS ?=
# the time-bomb guard: the date-reading suites again, the whole program's clock moved this far
CLOCK_SHIFTS ?= 400d -400d

.PHONY: run install test test-fast test-clock bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[samples,serve]'
	touch $@

$(TEST_STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[samples,serve,test]'
	touch $@ $(RUN_STAMP)

install: $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/dlaas-tui

test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-clock

test-clock: $(TEST_STAMP)
	@for shift in $(CLOCK_SHIFTS); do \
		echo "== clock shifted by $$shift"; \
		DLAAS_CLOCK_SHIFT=$$shift $(BIN)/python -m pytest -q -m clock -p no:cacheprovider || exit 1; \
	done

test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest -m "not slow and not e2e" -x -q $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
