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

.PHONY: test lint typecheck unit core-test docs dashboards demo bench bench-smoke clean

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

test: lint typecheck unit core-test docs dashboards

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

# The documentation site, built strictly (broken links and refs fail).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet --site-dir site

# The dashboard JSON type-checked against Grafana's published schema types.
dashboards:
	cd dashboards/typecheck && npm ci --no-audit --no-fund --loglevel=error && npx --no-install tsc --noEmit -p .

# The main job: a flaky upstream, protected, observed (see README).
DEMO_ARGS ?=
demo: $(STAMP)
	$(PY) -m stormwall demo $(DEMO_ARGS)

# Benchmarks against the peers, reported as ratios, never asserted. The
# script builds its own venv (.venv-bench) with stormwall and the pinned peers
# and regenerates docs/performance.md.
bench:
	$(PYTHON) bench/run.py

# A few seconds of every benchmark case, so the harness never rots (CI).
bench-smoke:
	$(PYTHON) bench/run.py --smoke

clean:
	rm -rf $(VENV) $(CORE_VENV) .venv-bench .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache site dashboards/typecheck/node_modules
