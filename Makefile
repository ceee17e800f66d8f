# feedray: every set-up step behind two commands. `make demo` and `make test` install what is
# missing first (scripts/install.sh is idempotent), so both work on a fresh machine.
VENV    := .venv
FEEDRAY := $(VENV)/bin/feedray
PYTEST  := $(VENV)/bin/pytest

# Demo world size; override e.g. `make demo DEMO_USERS=100000 DEMO_ITEMS=1000000`.
DEMO_USERS ?= 20000
DEMO_ITEMS ?= 100000
DEMO_DAYS  ?= 2
# The last half day is held out for the offline evaluation that gates each new model version.
DEMO_EVAL_DAYS ?= 0.5

.PHONY: install demo test test-fast up down status purge

install:
	bash scripts/install.sh

demo: install
	$(FEEDRAY) up
	$(FEEDRAY) simulate --users $(DEMO_USERS) --items $(DEMO_ITEMS) --days $(DEMO_DAYS) --start-now --publish-catalogue --sink kafka
	$(FEEDRAY) catalogue --until-idle
	$(FEEDRAY) collect --workers 2 --until-idle
	$(FEEDRAY) trending --once
	$(FEEDRAY) ingest --once
	FEEDRAY_MODELS__TRAINING__EVAL_DAYS=$(DEMO_EVAL_DAYS) $(FEEDRAY) train retrieval --epochs 2
	FEEDRAY_MODELS__TRAINING__EVAL_DAYS=$(DEMO_EVAL_DAYS) $(FEEDRAY) train ranking --epochs 1
	$(FEEDRAY) train index --alias champion
	$(FEEDRAY) serve
	$(FEEDRAY) status
	@echo "example request: curl 'http://127.0.0.1:8000/api/v1/content/feed?user_id=u42&limit=5'"
	@curl -sf 'http://127.0.0.1:8000/api/v1/content/feed?user_id=u42&limit=5' | $(VENV)/bin/python -m json.tool

# The whole suite; integration tests start their own Redis, Kafka, Ray and MLflow on free loopback ports.
test: install
	$(PYTEST) -q

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
