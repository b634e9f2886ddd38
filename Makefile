# One entry point for people and CI (.ci/run calls `make test`).
# Local services (real Kafka in KRaft mode + redis-server on loopback, no Docker):
# see scripts/services.sh for ports, cache and state directories.
.PHONY: venv test demo lint check services-up services-down services-status

PYTHON ?= python3
VENV := .venv
# reinstall only when the dependencies may have changed
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

SERVICES := bash scripts/services.sh

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -e '.[test,dev]'
	touch $@

venv: $(STAMP)

# SEGMENTER_REQUIRE_SERVICES=1: a test that cannot get Kafka/Redis fails, never skips.
# Exit code 5 (nothing collected) is a failure too: a broken collection must not look green.
test: venv
	@SEGMENTER_REQUIRE_SERVICES=1 $(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

# the three samples are three different shops and years: replay each on its own
demo: venv
	@mkdir -p out
	@for f in online_retail rees46 otto; do \
		rules=""; [ -f data/sample/$$f.rules.toml ] && rules="--rules data/sample/$$f.rules.toml"; \
		echo "== segmenter replay data/sample/$${f}_sample.jsonl.gz $$rules --out out/$$f.changes.jsonl"; \
		$(VENV)/bin/segmenter replay data/sample/$${f}_sample.jsonl.gz $$rules --out out/$$f.changes.jsonl || exit 1; \
	done
	@echo "--- first changes of out/online_retail.changes.jsonl:"
	@head -n 3 out/online_retail.changes.jsonl

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

check: lint test

services-up:
	$(SERVICES) start

services-down:
	$(SERVICES) stop

services-status:
	$(SERVICES) status
