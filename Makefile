# The two commands: `make run` (the whole application on the embedded default) and
# `make test` (linters, type checks and the whole suite). Both create or reuse .venv/.
PYTHON ?= python3
# The second Django line (CONTRIBUTING.md, "Two Django lines") is the same targets with another
# interpreter, virtualenv and pin set:
#   make PYTHON=python3.12 VENV=.venv-dj61 CONSTRAINTS=constraints-django61.txt test
VENV ?= .venv
CONSTRAINTS ?= constraints.txt
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# What running needs, without the test and lint tools (make run installs only this).
RUN_STAMP := $(VENV)/.run-installed-stamp
# Browser libraries for the staff pages (Chart.js) and axe-core (the browser tests' accessibility
# check, a dev dependency), installed from package-lock.json.
NODE_STAMP := node_modules/.installed-stamp
CHROMIUM := /usr/bin/chromium
PORT ?= 8000
# PYTEST_WORKERS=3 runs the suite in three pytest-xdist processes, each a test run of its own (its
# database, Redis keys and cluster name: tests/settings.py): about 10 min a line instead of 30. Not
# the default yet: in 1 line-run of 2 a test of the wake-up counts saw its Redis list read by
# something left running in its worker (CONTRIBUTING.md). 0: one process, as CI runs it.
PYTEST_WORKERS ?= 0

.PHONY: run test lint typecheck pytest browser clean vendor

# $(CONSTRAINTS) pins every package (a new release must not turn a fresh clone's run red).
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e ".[dev]"
	touch $(STAMP) $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e .
	touch $(RUN_STAMP)

# `make vendor` refreshes the vendored Chart.js (console/static/vendor/chartjs/) from npm, at the
# version package-lock.json pins; the files are committed, so running JobAdmin needs no npm.
vendor: $(NODE_STAMP)
	cp node_modules/chart.js/dist/chart.umd.min.js console/static/vendor/chartjs/
	cp node_modules/chart.js/LICENSE.md console/static/vendor/chartjs/LICENSE.md
	node -p 'require("./node_modules/chart.js/package.json").version' > console/static/vendor/chartjs/VERSION

$(NODE_STAMP): package.json package-lock.json
	command -v npm >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm)
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# The browser tests drive Debian's chromium (never a downloaded browser build).
browser:
	test -x $(CHROMIUM) || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

run: $(RUN_STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py createcachetable
	PORT=$(PORT) $(PY) manage.py runall --port $(PORT)

# ruff, and the import contract of pyproject.toml's [tool.importlinter] (apps import downwards only).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy .

pytest: $(STAMP) browser $(NODE_STAMP)
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
