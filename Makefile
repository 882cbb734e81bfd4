# Two commands on a fresh clone:
#   make demo    installs, starts `nexum dev` and `worker.py`, runs demo.py twice (the second run is
#                served from the store), then stops what it started. QUERY='...' asks something
#                else; WEB=real uses the real web instead of the local stand-in
#   make test    installs the test tools and runs the whole test suite
#   make lint    installs the test tools and runs ruff (lint and format check) and pyright
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
QUERY ?= What is durable execution?
WEB ?= local
# The query reaches the script through the environment, as typed: no shell parses it, and
# $(value ...) keeps make from expanding a `$` in it.
export DEMO_QUERY := $(value QUERY)

.PHONY: demo test lint format bench bench-calls clean

demo: $(VENV)/.app
	$(PY) scripts/demo_stack.py --web '$(WEB)'

test: $(VENV)/.test
	$(PY) -m pytest

# pyright checks against this virtualenv's packages; without the variable it asks PyPI for a newer
# release of itself at every run.
lint: $(VENV)/.test
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(PY) -m pyright --pythonpath $(PY)

# Rewrites the files as `make lint` wants them: ruff's fixes and its formatting.
format: $(VENV)/.test
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: $(VENV)/.app
	$(PY) benchmark.py

bench-calls: $(VENV)/.app
	$(PY) benchmark.py --calls

$(VENV)/.app: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.test: $(VENV)/.app requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

clean:
	rm -rf $(VENV) .nexum .pytest_cache
