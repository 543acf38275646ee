# futu-authd — build, test, lint, bench, run.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: build test lint bench fmt

build:
	$(CARGO) build --workspace --all-targets

test:
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench:
	$(CARGO) bench -p futu-authd --bench decide
