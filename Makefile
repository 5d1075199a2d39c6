# One-command set-up: every target creates .venv when it is absent and installs into it.
PYTHON ?= python3
TORCH ?= torch==2.13.0
# Another index for torch, e.g. https://download.pytorch.org/whl/cpu for the CPU-only build
TORCH_INDEX ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-faults lint format docs docs-test clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
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

DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

# The site, strictly: a warning (broken link, page missing from nav, bad docstring) fails.
docs: $(DOCS_STAMP)
	$(PY) -m mkdocs build --strict

# Every code block of the pages runs; the built site opens in headless Chromium
# (Debian's chromium package, installed here when apt-get is available).
docs-test: docs
	command -v chromium >/dev/null || ! command -v apt-get >/dev/null || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) || \
		echo "chromium could not be installed: the browser test will say why it skips"
	$(PY) -m pytest -q -p no:cacheprovider -m "" tests/docs

format: $(STAMP)
	$(VENV)/bin/ruff format boltzgen tests benchmarks
	$(VENV)/bin/ruff check --fix boltzgen tests benchmarks

clean:
	rm -rf $(VENV) runs site .pytest_cache .ruff_cache
