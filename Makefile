# Everything a fresh machine needs is installed by these targets: a virtual
# environment with the project and its tools, and buf from npm.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
BUF    := node_modules/.bin/buf

.PHONY: setup demo test bench lint format protos clean

setup: $(STAMP) $(BUF)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(BUF): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

test: setup
	$(PY) -m pytest

# Read throughput against bare gRPC and direct S3 GETs (s3rver from npm); see bench/README.md.
bench: setup
	$(PY) bench/read_throughput.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(BUF) lint

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

protos: $(STAMP)
	$(PY) protos/generate.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
