# One entry point for people and CI (.ci/run calls `make test`).
# Local services (real Kafka in KRaft mode + redis-server on loopback, no Docker):
# see scripts/services.sh for ports, cache and state directories.
.PHONY: venv core core-clean test test-pure demo lint check services-up services-down services-status

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

# The compiled core (mypyc, in place: the extension modules beside their sources win on import; README,
# "Benchmarks"). Rebuilt when a source of the core changed; `make core-clean` goes back to pure Python.
CORE_SOURCES := $(shell find segmenter schemas -name '*.py') streams/sequencer.py streams/processor.py streams/batch.py streams/murmur.py scripts/build_core.py
CORE_STAMP := build/core/.stamp

$(CORE_STAMP): $(CORE_SOURCES) | $(STAMP)
	$(VENV)/bin/python scripts/build_core.py
	@mkdir -p $(dir $@) && touch $@

core: $(CORE_STAMP)

core-clean:
	rm -rf build/core build/lib.* $(CORE_STAMP)
	find schemas segmenter streams -name '*.so' -delete

# SEGMENTER_REQUIRE_SERVICES=1: a test that cannot get Kafka/Redis fails, never skips.
# Exit code 5 (nothing collected) is a failure too: a broken collection must not look green.
# the whole suite on the compiled core (what ships), then the core's unit tests on its pure-Python sources
test: venv core
	@SEGMENTER_REQUIRE_SERVICES=1 $(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi
	$(MAKE) test-pure

# the unit tests with the sources only: a copy of the tree without the extension modules, first on the path
test-pure: venv
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	tar --exclude=./.venv --exclude=./build --exclude='*.so' --exclude=./.git -cf - . | tar -xf - -C "$$tmp" && \
	cd "$$tmp" && PYTHONPATH="$$tmp" $(CURDIR)/$(VENV)/bin/python -c \
	  'import segmenter.engine as e, sys; sys.exit(0 if e.__file__.endswith(".py") else "not the sources: " + e.__file__)' && \
	PYTHONPATH="$$tmp" $(CURDIR)/$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/unit

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
