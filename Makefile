# Every target sets itself up from a fresh clone: the only prerequisite is a
# python3 (>= 3.11) with venv. Everything is installed from uv.lock (never
# from open ranges) by a pinned uv that lives in .venv-tools.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .venv-tools
UV := $(TOOLS)/bin/uv
# uv never downloads a Python of its own: it uses $(PYTHON).
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CORE_VENV := .venv-core
CORE_PY := $(CORE_VENV)/bin/python
CORE_STAMP := $(CORE_VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: test lint typecheck unit core-test docs dashboards demo bench bench-smoke lock test-deps test-newest test-oldest clean

# The pinned uv, bootstrapped with nothing but python3 -m venv and pip.
$(UV):
	@echo "bootstrapping uv $(UV_VERSION) into $(TOOLS) ..."
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)

# The dev venv: stormwall with every extra and every dev group, as locked.
$(STAMP): pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --all-extras
	touch $(STAMP)

# A venv with stormwall and the test tools only: no extras, so the core suite
# proves the core needs no third-party package.
$(CORE_STAMP): pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CORE_VENV) $(UV) sync --locked --no-default-groups --group test
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

# The main job: a flaky upstream, protected, observed (see README). Installs
# only the `demo` extra (from the lock), and reuses a venv already there.
DEMO_ARGS ?=
demo: | $(UV)
	@UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --inexact --no-default-groups --extra demo
	$(PY) -m stormwall demo $(DEMO_ARGS)

# Refresh uv.lock: every package to the newest version the ranges allow.
lock: | $(UV)
	$(UV) lock --upgrade

# Both ends of every declared range, with warnings as errors (pyproject's
# filterwarnings): the unit suite against the newest releases the registry
# offers today (the lock ignored), and against the lowest versions
# pyproject.toml declares (uv's lowest-direct resolution).
test-deps: test-newest test-oldest

test-newest: | $(UV)
	bash .ci/deps-run newest

test-oldest: | $(UV)
	bash .ci/deps-run oldest

# Benchmarks against the peers, reported as ratios, never asserted. The
# script syncs .venv-bench from the lock (stormwall, every extra and the
# pinned peers of the `bench` group) and regenerates docs/performance.md.
bench: | $(UV)
	$(PYTHON) bench/run.py

# A few seconds of every benchmark case, so the harness never rots (CI).
bench-smoke: | $(UV)
	$(PYTHON) bench/run.py --smoke

clean:
	rm -rf $(VENV) $(CORE_VENV) $(TOOLS) .venv-bench .venv-newest .venv-oldest .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache site dashboards/typecheck/node_modules
