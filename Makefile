# One-command set-up: every target creates .venv when it is absent and installs into it.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-faults lint format clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/boltzgen run experiments/quickstart.yaml --out runs/quickstart

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow or faults"

# Fault injection (docs/faults.md): killed workers, damaged files, locks, full disk, NaN storms.
test-faults: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests/faults

lint: $(STAMP)
	$(VENV)/bin/ruff check boltzgen tests benchmarks
	$(VENV)/bin/ruff format --check boltzgen tests benchmarks
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format boltzgen tests benchmarks
	$(VENV)/bin/ruff check --fix boltzgen tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
