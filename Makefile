# jitstock — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test soak services bench lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Runtime install for the demo: edge + server extras only.
$(VENV)/.demo-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e '.[edge,server]'
	touch $@

# Full install for the tests (adds pytest, hypothesis, playwright, linters).
$(VENV)/.dev-installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e '.[dev]'
	touch $@ $(VENV)/.demo-installed

services:
	@bash scripts/install-services.sh

demo: $(VENV)/.demo-installed
	$(VENV)/bin/jitstock demo

# Workers: most tests wait on subprocesses and sockets, so more workers than cores pay off.
TEST_WORKERS ?= 3
# A worker takes one test module at a time, in the order tests/conftest.py gives them:
# the modules with slow tests first (longest timeout first), so the long tests (the
# position state machine, the demo runs) start at once beside the quick ones instead of
# running alone at the end of the run.  Module fixtures (a browser, a plant) are set up
# once per module.
TEST_DIST ?= --dist loadscope --no-loadscope-reorder

test: $(VENV)/.dev-installed services
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) $(TEST_DIST) --durations=15 $(PYTEST_ARGS)

# The position state machine (issue 9) with thousands of examples per backend.
soak: $(VENV)/.dev-installed services
	HYPOTHESIS_PROFILE=soak $(PY) -m pytest -q -p no:cacheprovider -o timeout=0 \
		tests/server/test_position_state_machine.py $(PYTEST_ARGS)

bench: $(VENV)/.dev-installed services
	$(VENV)/bin/jitstock bench all --out bench-results

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check jitstock tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) bench-results .pytest_cache
