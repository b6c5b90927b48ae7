# Everything a fresh machine needs is installed by these targets: a virtual
# environment with the project and its tools, and buf from npm.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
BUF    := node_modules/.bin/buf

.PHONY: setup apt-packages demo test bench lint format protos clean

setup: apt-packages $(STAMP) $(BUF)

# Debian packages, installed only when missing (we run as root, no sudo): fuse3 for
# fusermount3 (mounts and their tests), and what pyfuse3 builds against when pip
# installs it: libfuse3-dev, pkg-config, gcc and Python's headers; iproute2 (ip, tc)
# for the benchmark's capped origin link.
apt-packages:
	@missing=""; \
	command -v fusermount3 >/dev/null || missing="$$missing fuse3"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	pkg-config --exists fuse3 2>/dev/null || missing="$$missing libfuse3-dev"; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	command -v tc >/dev/null || missing="$$missing iproute2"; \
	$(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
		|| missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
		echo "apt-get install$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends$$missing; \
	fi

# Order-only on apt-packages: the check runs first every time, but does not make
# the environment be installed again.
$(STAMP): pyproject.toml | apt-packages
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(BUF): package.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

test: setup
	@[ -n "$$KUBEBUILDER_ASSETS" ] || echo "make test: KUBEBUILDER_ASSETS is not set, so the" \
		"Kubernetes and csi-sanity tests will fail: README.md, Development, says how to get them" >&2
	$(PY) -m pytest

# The benchmark suite (cold-start storm behind a tc-capped origin, warm reads, metadata;
# needs root for the network namespace): tables and plots in bench/results/; see bench/README.md.
bench: setup
	$(PY) bench/suite.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) scripts/typecheck.py
	$(BUF) lint

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

protos: $(STAMP)
	$(PY) protos/generate.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
