# datafold-dynamo — every command a newcomer needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export DATAFOLD_DYNAMODB_ENDPOINT ?= http://127.0.0.1:$(or $(DYNAMODB_LOCAL_PORT),8000)
export DATAFOLD_DYNAMODB_REGION ?= us-east-1
# DynamoDB Local accepts any credentials; these are dummies, never real ones.
export AWS_ACCESS_KEY_ID ?= local
export AWS_SECRET_ACCESS_KEY ?= local

.PHONY: test venv services stop lint unit demo bench bench-quick

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

services: venv
	scripts/system-deps
	scripts/redis-local start
	scripts/dynamodb-local start
	VENV=$(VENV) scripts/s3-local start

## make test: venv + install + DynamoDB Local + Redis + the whole suite (what CI runs)
test: venv services
	$(PY) -m pytest tests

unit: venv
	$(PY) -m pytest tests/unit

## make lint: formatting, lint and types, as CI checks them (ruff format, ruff check, mypy --strict)
lint: venv
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

## make bench: the full benchmark (~10-15 min) -> BENCHMARKS.md + bench/benchmarks.png
bench: venv services
	$(PY) -m bench

## make bench-quick: the same in under a minute (CI runs it through the test suite)
bench-quick: venv services
	$(PY) -m bench --quick --out /tmp/datafold-bench/BENCHMARKS.md

## make demo: the main job in one command (100k records through the queue, progress, summary)
demo: venv services
	scripts/demo

## make stop: stop what demo/services started (worker, Flower, DynamoDB Local, Redis)
stop:
	-for p in worker flower; do [ -f .run/$$p.pid ] && kill $$(cat .run/$$p.pid) 2>/dev/null; rm -f .run/$$p.pid; done
	scripts/dynamodb-local stop
	scripts/redis-local stop
	scripts/s3-local stop
