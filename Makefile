# Dialtone: build, run and test.
#   make run     build the release binary and run `dialtone serve` (DIALTONE_* variables configure it)
#   make test    everything CI runs: unit tests, a bounded fuzz run, the interop suite with real peers
#   make bench   the benchmarks in bench/
#   make bench-api  the REST API benchmark alone (bench/api.sh: SQLite, PostgreSQL, reference)
#   make interop the interop suite alone (tests/interop; PYTEST_ARGS="-k record" to pick tests)

SHELL := /bin/bash
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
# The interop suite runs the debug binary by default: `cargo nextest` builds the same dev-profile
# dependencies anyway, while a release build of the workspace costs about twice as much CPU again
# (measured on 2 cores, see tests/README.md); the suite's timing margins hold for a debug build.
# `make test PROFILE=release` runs it against an optimised one.
PROFILE ?= dev
PROFILE_DIR := $(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
DIALTONE_BIN ?= $(TARGET_DIR)/$(PROFILE_DIR)/dialtone
VENV := tests/.venv
PYTEST_ARGS ?=
FUZZ_SECONDS ?= 20

.PHONY: run build test test-peers unit fuzz interop bench bench-api

run:
	@command -v espeak-ng >/dev/null || scripts/install-run-deps.sh \
		|| echo "warning: espeak-ng is missing and could not be installed: <Say> will fail" >&2
	$(CARGO) build --release -p dialtone
	$(TARGET_DIR)/release/dialtone serve

build:
	$(CARGO) build --profile $(PROFILE) -p dialtone

test: test-peers build unit fuzz interop

test-peers:
	scripts/install-test-peers.sh

unit:
	@if command -v cargo-nextest >/dev/null; then \
		echo "$(CARGO) nextest run --workspace"; $(CARGO) nextest run --workspace --no-fail-fast \
			&& $(CARGO) test --workspace --doc; \
	else \
		echo "$(CARGO) test --workspace"; $(CARGO) test --workspace --no-fail-fast; \
	fi
	@# The store and API suites again, on a real PostgreSQL started (and stopped) for them.
	scripts/with-postgres.sh $(CARGO) test -p store -p api

fuzz:
	@if [ -f fuzz/run.sh ]; then \
		command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked; \
		bash fuzz/run.sh $(FUZZ_SECONDS); \
	else \
		echo "no fuzz/run.sh: nothing to fuzz"; \
	fi

interop: test-peers
	@test -x "$(DIALTONE_BIN)" || { echo "no $(DIALTONE_BIN): run 'make build' first" >&2; exit 1; }
	DIALTONE_BIN="$(DIALTONE_BIN)" $(VENV)/bin/python -m pytest tests/interop -v -rfE \
		--durations=10 -p no:cacheprovider --timeout=600 $(PYTEST_ARGS)

bench:
	@if [ -f bench/run.sh ]; then bash bench/run.sh; else echo "no bench/run.sh" >&2; exit 1; fi

# Builds the release binary in this target dir first (the script builds one only if missing).
bench-api:
	$(CARGO) build --release -p dialtone
	DIALTONE=$(TARGET_DIR)/release/dialtone bash bench/api.sh $(BENCH_ARGS)
