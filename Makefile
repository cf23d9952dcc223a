# `make demo` and `make test` set everything up on a fresh machine: they create .venv when it is
# missing, install the CPU build of torch 2.13.0 first (so pip never resolves a CUDA build), then
# the project with its dev extras.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.routing-env-installed

# RLlib pins an older Gymnasium than the dev environment, so its interop tests get their own
# environment, .venv-rllib, set up the same way (torch first), with the `rllib` extra.
RLLIB_VENV ?= .venv-rllib
RLLIB_PY := $(RLLIB_VENV)/bin/python
RLLIB_STAMP := $(RLLIB_VENV)/.routing-env-installed

.PHONY: demo test test-rllib lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(RLLIB_STAMP): pyproject.toml
	test -x $(RLLIB_PY) || $(PYTHON) -m venv $(RLLIB_VENV)
	$(RLLIB_PY) -m pip install --quiet torch==2.13.0
	$(RLLIB_PY) -m pip install --quiet -e '.[rllib]' 'pytest>=7'
	touch $(RLLIB_STAMP)

demo: $(STAMP)
	$(VENV)/bin/routing-env demo

test: $(STAMP)
	$(PY) -m pytest -q

test-rllib: $(RLLIB_STAMP)
	$(RLLIB_PY) -m pytest -q -m rllib tests/interop_rllib

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) $(RLLIB_VENV) build *.egg-info .pytest_cache
