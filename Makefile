# Every target sets itself up from a fresh clone: the only prerequisite is a
# python3 (>= 3.11) with venv.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CORE_VENV := .venv-core
CORE_PY := $(CORE_VENV)/bin/python
CORE_STAMP := $(CORE_VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: test lint typecheck unit core-test demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all]' --group dev
	touch $(STAMP)

# A venv with stormwall and the test tools only: no extras, so the core suite
# proves the core needs no third-party package.
$(CORE_STAMP): pyproject.toml
	$(PYTHON) -m venv $(CORE_VENV)
	$(CORE_PY) -m pip install -q --upgrade pip
	$(CORE_PY) -m pip install -q -e . --group test
	touch $(CORE_STAMP)

test: lint typecheck unit core-test

lint: $(STAMP)
	$(PY) -m ruff check --no-cache .
	$(PY) -m ruff format --no-cache --check .

typecheck: $(STAMP)
	$(PY) -m mypy

unit: $(STAMP)
	rm -f .coverage .coverage.*
	$(PY) -m coverage run -m pytest $(PYTEST_ARGS)
	$(PY) -m coverage combine -q
	$(PY) -m coverage report

core-test: $(CORE_STAMP)
	$(CORE_PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

demo: $(STAMP)
	@echo "stormwall demo arrives with issue 6 (the main job); nothing to run yet." >&2
	@exit 1

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) $(CORE_VENV) .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache
