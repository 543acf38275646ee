# futu-authd — the README's two commands are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# Debian packages the tests use; installed when missing. systemd: systemd-analyze,
# journalctl, systemd-socket-activate and systemd-journald; util-linux: setpriv and
# prlimit; mount: mount and umount (a small tmpfs); procps: /bin/kill (the unit's
# ExecReload, which systemd-analyze verify checks); make: the install test runs it;
# python3-venv: the virtual environment of the Python clients (VENV); curl: the REST client
# of the gateway tests; iproute2: ip, which brings up the loopback of the network namespace
# the README's tour runs in (util-linux's unshare and nsenter make and enter it); bsdutils:
# script, the pseudo-terminal futucli replay shows its progress on; chromium: the headless
# browser that renders the status page (tests/tests/status_page.rs).
TEST_PACKAGES := jq prometheus systemd util-linux bsdutils mount procps make python3-venv curl postgresql-15 faketime iproute2 chromium
RUN := run
# The Python clients of the gateway tests, in a virtual environment of their own
# (tests/tests/gateway.rs, four_front_ends.rs and python_client.rs look for it here, or
# where FUTU_TEST_PYTHON names its python): grpcio and its stub generator
# (tests/python/grpc_client.py), websockets (ws_client.py), the official MCP SDK
# (mcp_client.py, stdio and streamable HTTP), DuckDB (audit_duckdb.py, the audit file's
# queries in SQL) and this repository's own Python client (client/python, futu-auth-client).
VENV := target/venv
GRPCIO_VERSION := 1.85.1
WEBSOCKETS_VERSION := 17.4
MCP_VERSION := 2.3.0
DUCKDB_VERSION := 2.0.1
# The Python client package (client/python), installed in VENV by `make venv`.
PY_CLIENT_FILES := client/python/pyproject.toml client/python/README.md \
	$(wildcard client/python/src/futu_auth_client/*.py) client/python/src/futu_auth_client/py.typed
PY_CLIENT_STAMP := $(VENV)/.futu-auth-client-installed

.PHONY: build release test deps debian-deps venv venv-packages bench-deps lint fmt bench bench-quick fuzz run clean-run install uninstall

build:
	$(CARGO) build --workspace --all-targets

release:
	$(CARGO) build --release --workspace --bins

## Installs what the tests need when it is missing: Debian's packages (debian-deps), then
## the Python packages of the gateway and audit tests (venv). When that cannot be done the tests that need it say
## they are skipped, unless FUTU_TEST_STRICT=1: then this target fails.
deps: debian-deps venv

## Debian's packages of TEST_PACKAGES (as root: apt-get update, then apt-get install). When
## another apt or dpkg is at work, both wait up to APT_LOCK_WAIT seconds for it to finish:
## install through apt's DPkg::Lock::Timeout; update (whose lock of /var/lib/apt/lists that
## option does not cover) by trying again while apt says it could not get the lock.
APT_LOCK_WAIT := 600
debian-deps:
	@missing=""; for p in $(TEST_PACKAGES); do \
		[ "$$(dpkg-query -W -f='$${db:Status-Abbrev}' $$p 2>/dev/null)" = "ii " ] || missing="$$missing $$p"; \
	done; \
	[ -z "$$missing" ] && exit 0; \
	echo "installing:$$missing"; \
	apt_update() { \
		local deadline=$$(( $$(date +%s) + $(APT_LOCK_WAIT) )) out waiting=""; \
		while ! out=$$(LC_ALL=C apt-get -o DPkg::Lock::Timeout=$(APT_LOCK_WAIT) update -qq 2>&1); do \
			case "$$out" in *"Could not get lock"*) ;; *) printf '%s\n' "$$out" >&2; return 1;; esac; \
			[ "$$(date +%s)" -lt "$$deadline" ] || { printf '%s\n' "$$out" >&2; return 1; }; \
			[ -n "$$waiting" ] || echo "waiting up to $(APT_LOCK_WAIT) s for another apt-get update to finish"; \
			waiting=1; sleep 2; \
		done; \
		[ -z "$$out" ] || printf '%s\n' "$$out"; \
	}; \
	if [ "$$(id -u)" != 0 ]; then why="not root: install$$missing yourself"; \
	elif ! apt_update; then why="apt-get update failed"; \
	elif ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=$(APT_LOCK_WAIT) install -y -qq $$missing; then \
		why="could not install$$missing"; \
	else exit 0; fi; \
	if [ "$${FUTU_TEST_STRICT:-}" = 1 ]; then \
		echo "make deps: $$why, and FUTU_TEST_STRICT=1 forbids skipping the tests that need them" >&2; \
		exit 1; \
	fi; \
	echo "$$why; the tests that need them say they are skipped"

## VENV with grpcio, grpcio-tools, websockets, mcp and duckdb (python3 -m venv, then pip
## install); at once when they are all there at their versions. Then the Python client.
venv: venv-packages $(PY_CLIENT_STAMP)

venv-packages:
	@if $(VENV)/bin/python -c 'import sys, grpc, grpc_tools, websockets, duckdb; from importlib.metadata import version; sys.exit((grpc.__version__, websockets.__version__, version("mcp"), version("duckdb")) != ("$(GRPCIO_VERSION)", "$(WEBSOCKETS_VERSION)", "$(MCP_VERSION)", "$(DUCKDB_VERSION)"))' 2>/dev/null; then exit 0; fi; \
	echo "making $(VENV): grpcio and grpcio-tools $(GRPCIO_VERSION), websockets $(WEBSOCKETS_VERSION), mcp $(MCP_VERSION), duckdb $(DUCKDB_VERSION)"; \
	if ! python3 -m venv $(VENV); then why="python3 -m venv $(VENV) failed (python3-venv missing?)"; \
	elif ! $(VENV)/bin/pip install -q --disable-pip-version-check grpcio==$(GRPCIO_VERSION) grpcio-tools==$(GRPCIO_VERSION) \
		websockets==$(WEBSOCKETS_VERSION) mcp==$(MCP_VERSION) duckdb==$(DUCKDB_VERSION); then \
		why="pip could not install grpcio, grpcio-tools, websockets, mcp and duckdb into $(VENV)"; \
	else exit 0; fi; \
	if [ "$${FUTU_TEST_STRICT:-}" = 1 ]; then \
		echo "make venv: $$why, and FUTU_TEST_STRICT=1 forbids skipping the gateway and audit tests that need them" >&2; \
		exit 1; \
	fi; \
	echo "$$why; the gateway and audit tests that need them say they are skipped"

## The Python client (client/python) installed in VENV as a user installs it (pip install, not
## editable), from a copy so that the build leaves nothing in the tree; again whenever one
## of its files changed since the last install (PY_CLIENT_STAMP).
$(PY_CLIENT_STAMP): $(PY_CLIENT_FILES) | venv-packages
	@if [ ! -x $(VENV)/bin/python ]; then why="there is no $(VENV) to install client/python into"; \
	else \
		echo "installing client/python (futu-auth-client) into $(VENV)"; \
		tmp=$$(mktemp -d) && cp -r client/python/pyproject.toml client/python/README.md client/python/src "$$tmp"/ && \
		if $(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --force-reinstall "$$tmp"; then \
			rm -rf "$$tmp"; touch $@; exit 0; \
		fi; \
		rm -rf "$$tmp"; why="pip could not install client/python into $(VENV)"; \
	fi; \
	if [ "$${FUTU_TEST_STRICT:-}" = 1 ]; then \
		echo "make venv: $$why, and FUTU_TEST_STRICT=1 forbids going on without it" >&2; \
		exit 1; \
	fi; \
	echo "$$why; going on without it"

## Builds once, then runs every test (unit, golden vectors, end-to-end with the real
## binaries): every suite, even after one fails (--no-fail-fast). Then the list of the tests
## that skipped and why (SKIP_LOG, written by futu_authd_tests::skip), whether the tests
## passed or not; the exit status is cargo's.
SKIP_LOG := $(CURDIR)/target/test-skips.txt
test: deps
	$(CARGO) build --workspace --bins
	@mkdir -p "$$(dirname "$(SKIP_LOG)")" && : > "$(SKIP_LOG)"
	@echo "$(CARGO) test --workspace --no-fail-fast"; \
	status=0; FUTU_TEST_SKIP_LOG="$(SKIP_LOG)" $(CARGO) test --workspace --no-fail-fast || status=$$?; \
	echo; \
	if [ -s "$(SKIP_LOG)" ]; then \
		echo "skipped tests ($$(wc -l < "$(SKIP_LOG)")):"; sort "$(SKIP_LOG)" | sed 's/^/  /'; \
	else \
		echo "no test was skipped"; \
	fi; \
	exit $$status

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Installs redis-server (the baseline the load benchmark compares with) and PostgreSQL
## (its scenario of the shared ledger) when missing.
bench-deps:
	@$(MAKE) -s debian-deps TEST_PACKAGES="redis-server postgresql-15"

## The decide() micro-benchmark, then the full load benchmark (echo floor, futu-authd,
## redis, key counts, RSS, reload, client library); its last line is a JSON summary. Then
## the HTTP layer's cost: futu-gw-demo's REST quote route with and without it.
bench: bench-deps
	$(CARGO) bench -p futu-authd --bench decide
	$(CARGO) bench -p futu-authd --bench load
	$(CARGO) build --release -p futu-authd --bins
	$(CARGO) bench -p futu-gw-demo --bench rest

## Coverage-guided fuzzing (cargo-fuzz): each target for FUZZ_SECONDS (default 600); a
## crash lands in fuzz/regressions/, which `make test` replays. See docs/TESTING.md.
FUZZ_SECONDS ?= 600
fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

## The load benchmark in under a minute, then the HTTP layer's cost in ~10 s; each ends
## with its JSON summary.
bench-quick: bench-deps
	@$(CARGO) build --release -q -p futu-authd --benches
	$(CARGO) bench -q -p futu-authd --bench load -- --quick
	@$(CARGO) build --release -q -p futu-authd --bins
	$(CARGO) bench -q -p futu-gw-demo --bench rest -- --quick

## Starts futu-authd in the foreground on a development setup inside the repository:
## socket ./run/auth.sock, keys ./run/keys.json (a demo key is made on first run and its
## plaintext printed once), audit ./run/audit.jsonl, metrics on 127.0.0.1:9464. Before the
## daemon starts it prints what to paste into a second terminal: the exports that point
## futucli at this daemon and how to put the key in FUTU_AUTH_TOKEN; on a later run, where
## the demo key is and how to get a new plaintext for it. BIN: where the binaries are.
BIN := target/debug
RUN_ABS = $(abspath $(RUN))
run:
	$(CARGO) build --workspace --bins
	@mkdir -p $(RUN) && chmod 700 $(RUN)
	@if [ ! -f $(RUN)/keys.json ]; then \
		echo "first run: making a demo key in $(RUN)/keys.json"; \
		FUTU_AUTH_SOCKET=$(RUN)/auth.sock $(BIN)/futucli --keys-file $(RUN)/keys.json gen-key \
			--id demo --scopes qot:read,acc:read,trade:simulate \
			--max-order-value 100000 --max-daily-value 500000 --max-orders-per-minute 5 \
			--note "demo key made by make run" 2>$(RUN)/.gen-key.err \
			|| { cat $(RUN)/.gen-key.err >&2; rm -f $(RUN)/.gen-key.err; exit 1; }; \
		rm -f $(RUN)/.gen-key.err; \
		printf '%s\n' '' \
			'In a second terminal, in this directory: point futucli at this daemon, and paste the key' \
			'(read -s shows nothing; the key stays out of the process list and the shell history):' \
			'    export FUTU_AUTH_SOCKET=$(RUN_ABS)/auth.sock FUTU_KEYS_FILE=$(RUN_ABS)/keys.json' \
			'    read -rs FUTU_AUTH_TOKEN && export FUTU_AUTH_TOKEN    # paste the plaintext above, then Enter' \
			'    $(BIN)/futucli check --endpoint Qot_GetBasicQot'; \
	else \
		printf '%s\n' \
			'$(RUN)/keys.json is there already: an earlier make run made it, with the demo key (make clean-run starts afresh).' \
			'The plaintext of the demo key was printed once, when it was made, and cannot be shown again (keys.json' \
			'keeps only its SHA-256). In a second terminal, in this directory: point futucli at this daemon and paste the key;' \
			'lost it? rotate-key prints a new plaintext (the old one stays accepted for 24 h), or gen-key --id NAME makes another key:' \
			'    export FUTU_AUTH_SOCKET=$(RUN_ABS)/auth.sock FUTU_KEYS_FILE=$(RUN_ABS)/keys.json' \
			'    $(BIN)/futucli rotate-key demo' \
			'    read -rs FUTU_AUTH_TOKEN && export FUTU_AUTH_TOKEN    # paste the plaintext, then Enter' \
			'    $(BIN)/futucli check --endpoint Qot_GetBasicQot'; \
	fi; \
	printf '%s\n' \
		'Without the exports, futucli asks /run/futu/auth.sock and, when nothing answers there, edits' \
		'/etc/futu/keys.json (as root) or ~/.config/futu/keys.json: keys this daemon never sees.' ''
	exec $(BIN)/futu-authd --socket $(RUN)/auth.sock --keys-file $(RUN)/keys.json \
		--state-dir $(RUN)/state --audit-log $(RUN)/audit.jsonl --metrics-listen 127.0.0.1:9464

## Forgets the development setup (keys, ledger, audit).
clean-run:
	rm -rf $(RUN)

# Installation: PREFIX for programs and systemd files (systemd also reads
# /usr/local/lib/systemd/system, sysusers.d and tmpfiles.d), DESTDIR for staging.
PREFIX ?= /usr/local
# Where install takes the binaries from (`make release` builds them there).
PROFILE_DIR ?= target/release
BINDIR := $(PREFIX)/bin
UNITDIR := $(PREFIX)/lib/systemd/system
SYSUSERSDIR := $(PREFIX)/lib/sysusers.d
TMPFILESDIR := $(PREFIX)/lib/tmpfiles.d
DOCDIR := $(PREFIX)/share/doc/futu-authd
# The Prometheus alerting rules (with their promtool tests) and the Grafana dashboard.
SHAREDIR := $(PREFIX)/share/futu-authd
CONFDIR := /etc/futu

## Installs binaries, units (their Documentation= pointing at DOCDIR), sysusers.d,
## tmpfiles.d, docs (README, OPERATIONS, GATEWAYS, PROTOCOL), the Prometheus alerting rules
## and the Grafana dashboard (SHAREDIR/prometheus, SHAREDIR/grafana); an example keys.json only
## when none exists (an existing one is never overwritten). Without DESTDIR, as root, it
## also creates the users and directories and reloads systemd.
install: release
	install -Dm755 $(PROFILE_DIR)/futu-authd $(DESTDIR)$(BINDIR)/futu-authd
	install -Dm755 $(PROFILE_DIR)/futucli $(DESTDIR)$(BINDIR)/futucli
	install -d $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/bin/futu-authd|$(BINDIR)/futu-authd|' -e 's|/usr/share/doc/futu-authd|$(DOCDIR)|g' \
		systemd/futu-authd.service > $(DESTDIR)$(UNITDIR)/futu-authd.service
	sed 's|/usr/share/doc/futu-authd|$(DOCDIR)|g' systemd/futu-authd.socket > $(DESTDIR)$(UNITDIR)/futu-authd.socket
	chmod 644 $(DESTDIR)$(UNITDIR)/futu-authd.service $(DESTDIR)$(UNITDIR)/futu-authd.socket
	install -Dm644 systemd/futu-authd.sysusers $(DESTDIR)$(SYSUSERSDIR)/futu-authd.conf
	install -Dm644 systemd/futu-authd.tmpfiles $(DESTDIR)$(TMPFILESDIR)/futu-authd.conf
	install -Dm644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -Dm644 docs/PROTOCOL.md $(DESTDIR)$(DOCDIR)/PROTOCOL.md
	install -Dm644 docs/OPERATIONS.md $(DESTDIR)$(DOCDIR)/OPERATIONS.md
	install -Dm644 docs/GATEWAYS.md $(DESTDIR)$(DOCDIR)/GATEWAYS.md
	install -Dm644 -t $(DESTDIR)$(SHAREDIR)/prometheus systemd/prometheus/futu-authd.rules.yml \
		systemd/prometheus/futu-authd.rules.test.yml
	install -Dm644 -t $(DESTDIR)$(SHAREDIR)/grafana systemd/grafana/futu-authd.json
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
		systemd-sysusers $(SYSUSERSDIR)/futu-authd.conf; \
		systemd-tmpfiles --create $(TMPFILESDIR)/futu-authd.conf; \
	fi
	@if [ -e $(DESTDIR)$(CONFDIR)/keys.json ]; then \
		echo "keeping the existing $(DESTDIR)$(CONFDIR)/keys.json"; \
	else \
		install -Dm600 systemd/keys.example.json $(DESTDIR)$(CONFDIR)/keys.json; \
		if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then chown futu-authd:futu-authd $(CONFDIR)/keys.json; fi; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

## Removes what install put in place, except keys.json, the ledger and the audit log.
uninstall:
	-@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl disable --now futu-authd.socket futu-authd.service 2>/dev/null; fi
	rm -f $(DESTDIR)$(BINDIR)/futu-authd $(DESTDIR)$(BINDIR)/futucli
	rm -f $(DESTDIR)$(UNITDIR)/futu-authd.service $(DESTDIR)$(UNITDIR)/futu-authd.socket
	rm -f $(DESTDIR)$(SYSUSERSDIR)/futu-authd.conf $(DESTDIR)$(TMPFILESDIR)/futu-authd.conf
	rm -rf $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SHAREDIR)
	@echo "kept $(CONFDIR)/keys.json, /var/lib/futu-authd and /var/log/futu-authd"
