# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian's packages the project needs: a JVM and Maven for the local Kafka; Chromium and PostgreSQL for tests.
APT_GET := $(shell command -v apt-get 2>/dev/null)
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo 2>/dev/null)

.PHONY: help demo test lint bench bench-stages bench-api install system-java system-test-tools clean

help:
	@echo "make demo          install everything, import examples/clients.csv on a real local Kafka, print the notification"
	@echo "make test          install everything (Chromium, kcat, PostgreSQL too), then the whole suite (what CI runs)"
	@echo "make install       the virtualenv in .venv, with Java and Maven for the local broker"
	@echo "make lint          ruff"
	@echo "make bench         the pipeline's speed against the floor (ARGS=\"--database postgresql --writers 2\")"
	@echo "make bench-stages  each stage alone, CPU seconds per 100,000 rows (ARGS=\"--stage writer --profile writer\")"
	@echo "make bench-api     searches and reads through the API while files import"
	@echo "make clean         remove .venv, data/ and test-output/"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP) system-java

system-java:
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  [ -n "$(APT_GET)" ] || { echo "install Java 17+ and Maven" >&2; exit 1; }; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null; }

system-test-tools:
	@{ command -v chromium >/dev/null && command -v kcat >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || { \
	  [ -n "$(APT_GET)" ] || { echo "install Chromium, kcat and PostgreSQL (the page's, the raw records' and the database tests use them)" >&2; exit 1; }; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium kcat postgresql >/dev/null; }

demo: install
	$(BIN)/clients-import --log-level WARNING run --json examples/clients.csv | $(BIN)/python -m json.tool

test: install system-test-tools lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/bench.py $(ARGS)

bench-stages: install
	$(BIN)/python bench/stages.py $(ARGS)

bench-api: install
	$(BIN)/python bench/bench_api.py

clean:
	rm -rf $(VENV) data test-output
