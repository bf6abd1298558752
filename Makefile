# nudge: every target sets up what it needs on a fresh machine (Python 3.11+, Node 20 for CDK).
SHELL := /bin/bash
.DEFAULT_GOAL := help
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

# uv from PATH, else a private copy bootstrapped with pip into .tools/.
UV := $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.synced

.PHONY: help setup demo test test-fast lint fmt synth bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet uv

$(STAMP): uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --extra dev
	@touch $@

setup: $(STAMP) ## create .venv from uv.lock (dev + cli extras)

demo: $(STAMP) ## run the storefront story over three weeks of virtual time on moto
	$(VENV)/bin/nudge demo

test: $(STAMP) ## lint, type-check and run every test (unit, component, sim, infra)
	$(VENV)/bin/ruff check functions tests
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -n 2 --dist loadgroup

test-fast: $(STAMP) ## unit and simulation tests only
	$(VENV)/bin/pytest tests/unit tests/sim -q

lint: $(STAMP) ## ruff + mypy
	$(VENV)/bin/ruff check functions tests
	$(VENV)/bin/ruff format --check functions tests
	$(VENV)/bin/mypy

fmt: $(STAMP) ## format the code
	$(VENV)/bin/ruff format functions tests
	$(VENV)/bin/ruff check --fix functions tests

synth: $(STAMP) ## synthesize the CloudFormation template offline into cdk.out/
	$(PY) infra/app.py

bench: $(STAMP) ## print engine and moto-adapter throughput figures
	$(VENV)/bin/nudge bench

clean: ## remove the venv, caches and cdk.out
	rm -rf $(VENV) .tools cdk.out .pytest_cache .mypy_cache .ruff_cache
