# The README's commands. `make run` serves a sample month; `make test` runs every test.
SHELL := /bin/bash
export DUCKDB_LIB_DIR := $(CURDIR)/.duckdb
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
BIN := target/release/bridge
ROWS ?= 3000000
MONTH ?= 2024-01

.PHONY: run test build libduckdb venv browser data bench bench-http bench-history bench-slow-link test-replicas memory-month load fuzz-http lint clean

libduckdb: $(DUCKDB_LIB_DIR)/libduckdb.so
$(DUCKDB_LIB_DIR)/libduckdb.so:
	scripts/fetch-libduckdb.sh $(DUCKDB_LIB_DIR)

build: libduckdb
	cargo build --release --bins --examples

data: build
	@if ! ls data/yellow/*.parquet >/dev/null 2>&1; then $(BIN) gen --out data/yellow --month $(MONTH) --rows $(ROWS); fi

run: data
	$(BIN) --dataset 'yellow=./data/yellow/*.parquet' --listen 127.0.0.1:50051 \
	  --http-listen 127.0.0.1:8080 --admin-listen 127.0.0.1:9464

venv: $(VENV)/.installed
$(VENV)/.installed: requirements-test.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-test.txt
	touch $@

# Headless Chromium (Debian's) and the npm packages of the browser tests.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
browser: tests/browser/node_modules/.installed
tests/browser/node_modules/.installed: tests/browser/package.json tests/browser/package-lock.json
	@command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium)
	npm ci --prefix tests/browser --no-audit --no-fund
	touch $@

# `cargo test` also builds the binary and the examples, with the same features as the tests (a
# separate `cargo build` would compile the arrow crates a second time with other features).
# The Python and browser setup (mostly downloads) runs while Rust compiles.
test: libduckdb
	@mkdir -p .cache; $(MAKE) --no-print-directory venv browser > .cache/setup.log 2>&1 & setup=$$!; \
	cargo test --release --no-run; built=$$?; \
	if ! wait $$setup; then cat .cache/setup.log; exit 1; fi; cat .cache/setup.log; exit $$built
	cargo test --release
	REQUIRE_BROWSER=1 BRIDGE_BIN=$(CURDIR)/$(BIN) $(PY) -m pytest -q tests/python

# Three replicas in network namespaces behind 300 Mbit/s links, over moto S3 (root; CI runs it
# after `make test`, whose build it reuses).
test-replicas: libduckdb venv
	cargo test --release --no-run
	BRIDGE_BIN=$(CURDIR)/$(BIN) $(PY) -m pytest -q -s -W ignore::Warning tests/replicas

bench: build venv
	cargo bench --bench do_get
	BRIDGE_BIN=$(CURDIR)/$(BIN) $(PY) benches/e2e.py
	BRIDGE_BIN=$(CURDIR)/$(BIN) $(PY) benches/bulk_cpu.py

# The HTTP API beside Flight and a FastAPI + DuckDB JSON peer; wrk and h2load at 256 connections.
bench-http: build venv
	@command -v wrk >/dev/null && command -v h2load >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends wrk nghttp2-client)
	BRIDGE_BIN=$(CURDIR)/$(BIN) $(PY) benches/http_api.py

# Years of data on one node (MONTHS, FROM, ROWS): ingest rate, first answer, footprint, RSS.
bench-history: build venv
	BRIDGE_BIN=$(CURDIR)/$(BIN) $(PY) benches/history.py --months $(or $(MONTHS),12) --from $(or $(FROM),2024-01) --rows $(ROWS)

# IPC compression (bridge-ipc-compression) over a veth capped with tc tbf (MBIT, default 300); root.
bench-slow-link: build venv
	BRIDGE_BIN=$(CURDIR)/$(BIN) $(PY) benches/slow_link.py --mbit $(or $(MBIT),300)

# Peak RSS while ingesting two 2009-sized months (14 M rows each, converted together) against the DuckDB limit + 256 MiB.
memory-month: build venv
	MEMORY_MONTH_ROWS=14000000 MEMORY_LIMIT_MB=$(or $(LIMIT_MB),1024) BRIDGE_BIN=$(CURDIR)/$(BIN) $(PY) -m pytest -q -s tests/python/test_memory.py -k large_months

# The long load run (the CI-sized one is part of `make test`).
load: build venv
	LOAD_CLIENTS=512 LOAD_SECONDS=300 BRIDGE_BIN=$(CURDIR)/$(BIN) $(PY) -m pytest -q -s tests/python/test_load.py

# The HTTP API fuzzed from its OpenAPI document with many more cases than `make test` runs.
fuzz-http: build venv
	HTTP_FUZZ_EXAMPLES=$(or $(EXAMPLES),1000) BRIDGE_BIN=$(CURDIR)/$(BIN) $(PY) -m pytest -q -s tests/python/test_http_fuzz.py

lint: libduckdb
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings

clean:
	rm -rf target .cache
