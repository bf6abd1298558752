# nudge: every target sets up what it needs on a fresh machine (Python 3.11+, Node 20 for CDK).
SHELL := /bin/bash
.DEFAULT_GOAL := help
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

# uv from PATH, else a private copy bootstrapped with pip into .tools/.
UV := $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.synced

.PHONY: help setup demo test test-fast fuzz lint fmt synth diff deploy bench chaos clean chromium

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

test: $(STAMP) chromium ## lint, type-check and run every test (unit, component, sim, infra)
	$(VENV)/bin/ruff check functions tests infra
	$(VENV)/bin/mypy
	@# NUDGE_REQUIRE_CHROMIUM: the HTML report's screenshot test fails here instead of skipping.
	NUDGE_REQUIRE_CHROMIUM=1 $(VENV)/bin/pytest -n 2 --dist loadgroup --ignore=tests/component/test_schemathesis.py
	@# schemathesis gives every API operation the same test id, which pytest-xdist would run only once.
	$(VENV)/bin/pytest -p no:xdist tests/component/test_schemathesis.py

fuzz: $(STAMP) ## the signed schemathesis run over every route, with many more examples (FUZZ_EXAMPLES=200)
	NUDGE_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),200) NUDGE_FUZZ_REPORT=1 \
	  $(VENV)/bin/pytest -p no:xdist -s -q tests/component/test_schemathesis.py

test-fast: $(STAMP) ## unit and simulation tests only
	$(VENV)/bin/pytest tests/unit tests/sim -q

# Debian's chromium (and a font) for the HTML report's screenshot test; as root, or through sudo.
chromium: ## install headless Chromium for the report screenshot test, if missing
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; elif command -v sudo >/dev/null; then sudo=sudo; \
	  else echo "make chromium: not root and no sudo; install the chromium package yourself" >&2; exit 1; fi; \
	  command -v apt-get >/dev/null || { echo "make chromium: no apt-get; install Chromium as 'chromium' on PATH" >&2; exit 1; }; \
	  $$sudo apt-get update -q && $$sudo apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; }

lint: $(STAMP) ## ruff + mypy
	$(VENV)/bin/ruff check functions tests infra
	$(VENV)/bin/ruff format --check functions tests infra
	$(VENV)/bin/mypy

fmt: $(STAMP) ## format the code
	$(VENV)/bin/ruff format functions tests infra
	$(VENV)/bin/ruff check --fix functions tests infra

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

STAGE ?= dev
synth: $(STAMP) node_modules/.package-lock.json ## cdk synth offline with the pinned CLI, into cdk.out/ (STAGE=dev|prod)
	npx --no-install cdk synth -q -c stage=$(STAGE)

diff: $(STAMP) node_modules/.package-lock.json ## what a deploy would change (STAGE=dev|prod)
	npx --no-install cdk diff -c stage=$(STAGE)

deploy: $(STAMP) node_modules/.package-lock.json ## deploy the stack (STAGE=dev|prod, CDK_ARGS='-c fromAddress=...')
	npx --no-install cdk deploy -c stage=$(STAGE) $(CDK_ARGS)

bench: $(STAMP) ## print engine and moto-adapter throughput figures
	$(VENV)/bin/nudge bench

chaos: $(STAMP) ## the fault sweep: one fault at every AWS call of the demo story, then 20 seeds at 20 %
	$(VENV)/bin/nudge chaos --every-call
	$(VENV)/bin/nudge chaos --random 0.2 --seeds 20

clean: ## remove the venv, caches and cdk.out
	rm -rf $(VENV) .tools cdk.out node_modules .pytest_cache .mypy_cache .ruff_cache
