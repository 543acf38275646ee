# futu-authd — the README's two commands are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# Debian packages the tests use; installed when missing.
TEST_PACKAGES := jq
RUN := run

.PHONY: build test deps lint fmt bench run clean-run

build:
	$(CARGO) build --workspace --all-targets

## Installs what the tests need (as root, from Debian's packages) when it is missing.
deps:
	@missing=""; for p in $(TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else echo "not root: install$$missing yourself (the tests that need them say they are skipped)"; fi; \
	fi

## Builds once, then runs every test (unit, golden vectors, end-to-end with the real binaries).
test: deps
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench:
	$(CARGO) bench -p futu-authd --bench decide

## Starts futu-authd in the foreground on a development setup inside the repository:
## socket ./run/auth.sock, keys ./run/keys.json (a demo key is made on first run and its
## plaintext printed once), audit ./run/audit.jsonl, metrics on 127.0.0.1:9464.
run:
	$(CARGO) build --workspace --bins
	@mkdir -p $(RUN) && chmod 700 $(RUN)
	@if [ ! -f $(RUN)/keys.json ]; then \
		echo "first run: making a demo key in $(RUN)/keys.json"; \
		FUTU_AUTH_SOCKET=$(RUN)/auth.sock target/debug/futucli --keys-file $(RUN)/keys.json gen-key \
			--id demo --scopes qot:read,acc:read,trade:simulate \
			--max-order-value 100000 --max-daily-value 500000 --max-orders-per-minute 5 \
			--note "demo key made by make run" 2>/dev/null; \
	fi
	exec target/debug/futu-authd --socket $(RUN)/auth.sock --keys-file $(RUN)/keys.json \
		--state-dir $(RUN)/state --audit-log $(RUN)/audit.jsonl --metrics-listen 127.0.0.1:9464

## Forgets the development setup (keys, ledger, audit).
clean-run:
	rm -rf $(RUN)
