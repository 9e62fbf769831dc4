# The two commands of the README: `make demo` and `make test`.
# Each creates .venv if missing, installs the pinned dependencies of the lock
# files (requirements.lock, requirements-dev.lock), then qloop itself without
# resolving anything else, and runs. `make lock` re-pins after a change to
# pyproject.toml's dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCKVENV := .lockvenv

.PHONY: demo test lint bench lock clean

$(STAMP): pyproject.toml requirements.lock requirements-dev.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/qloop demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/loop.py

# Resolve pyproject.toml's dependencies afresh in a throwaway venv and pin them:
# runtime ones in requirements.lock, the dev extra's others in requirements-dev.lock.
lock:
	rm -rf $(LOCKVENV)
	$(PYTHON) -m venv $(LOCKVENV)
	$(LOCKVENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCKVENV)/bin/python -m pip install --quiet -e .
	{ sed -n '/^#/p' requirements.lock; \
	  $(LOCKVENV)/bin/python -m pip freeze --exclude-editable | sort -f; } > requirements.lock.new
	$(LOCKVENV)/bin/python -m pip install --quiet -e '.[dev]'
	{ sed -n '/^#/p;/^-r /p' requirements-dev.lock; \
	  $(LOCKVENV)/bin/python -m pip freeze --exclude-editable | sort -f \
	    | grep -vxiFf requirements.lock.new; } > requirements-dev.lock.new
	mv requirements.lock.new requirements.lock
	mv requirements-dev.lock.new requirements-dev.lock
	rm -rf $(LOCKVENV)

clean:
	rm -rf $(VENV) $(LOCKVENV) .demo build *.egg-info
