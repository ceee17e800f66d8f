# feedray: every set-up step behind two commands. `make demo` and `make test` install what is
# missing first (scripts/install.sh is idempotent), so both work on a fresh machine.
VENV    := .venv
FEEDRAY := $(VENV)/bin/feedray
PYTEST  := $(VENV)/bin/pytest

# `feedray demo` runs every step, one timed line each (logs under .feedray/logs/demo); the world
# size defaults to the `demo` settings: override e.g. `make demo DEMO_ARGS="--users 100000 --items 1000000"`.
DEMO_ARGS ?=

.PHONY: install demo test test-fast lint up down status purge bench bench-feast

install:
	bash scripts/install.sh

demo: install
	$(FEEDRAY) demo $(DEMO_ARGS)

# Lint and format check (ruff, configured in pyproject.toml), then the whole suite; integration
# tests start their own Redis, Kafka, Ray and MLflow on free loopback ports.
test: install lint
	$(PYTEST) -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Pure-logic tests only (no servers).
test-fast: install
	$(PYTEST) -q -m "not integration"

up: install
	$(FEEDRAY) up

down:
	$(FEEDRAY) down

status:
	$(FEEDRAY) status

purge:
	$(FEEDRAY) down --purge

# The scale benchmark suite (bench/suite): a 3,000,000-item / 1,000,000-user world built through
# the platform's code, then every section; writes bench/results/scale_3000000.json and
# BENCHMARKS.md. BENCH_ARGS e.g. "--lock-file /tmp/feedray-heavy.lock" on a shared host.
BENCH_ARGS ?=

bench: install bench-feast
	$(FEEDRAY) bench --items 3000000 --users 1000000 $(BENCH_ARGS)

# Feast's SDK for the feature-read peer, in its own venv (it pins pandas and redis below ours).
FEAST_VENV := .feedray/feast-venv
bench-feast:
	[ -x $(FEAST_VENV)/bin/python ] || { uv venv -q --python python3.11 $(FEAST_VENV) && \
	  uv pip install -q --python $(FEAST_VENV)/bin/python "feast[redis]==0.67.0"; }
