#!/usr/bin/env bash
# Coverage-guided fuzzing of futu-authd (cargo-fuzz, libFuzzer): runs each target for
# SECONDS (default 600), one after the other.
#
#   fuzz/run.sh [SECONDS] [TARGET...]        (make fuzz FUZZ_SECONDS=...)
#
# Targets: frame_decoder, keys_json, ledger_replay, layer_request (all when none is named); their bodies
# are in tests/src/fuzz.rs. Each run starts from the committed seeds (fuzz/corpus/TARGET)
# and keeps what it generates in target/fuzz-corpus/TARGET, outside git, so later runs go
# on from there. A crash is copied to fuzz/regressions/TARGET/, which `make test` replays:
# rename it to say what it exercises and commit it with its fix. The last lines of each
# run (executions, exec/s, coverage) are kept in target/fuzz-logs/TARGET.log and printed
# at the end. A libFuzzer dictionary fuzz/dicts/TARGET.dict (the format's words and
# boundary numbers) is used when there is one.
#
# Needs a nightly compiler (`cargo +nightly`); without one it uses the stable compiler with
# RUSTC_BOOTSTRAP=1. Installs cargo-fuzz (`cargo install cargo-fuzz --locked`) when it is
# missing. Environment: FUZZ_SANITIZER (address, the default, or none: faster, without
# AddressSanitizer), FUZZ_TIMEOUT (seconds one input may take before it counts as a hang,
# 30).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
seconds="${1:-600}"
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame_decoder keys_json ledger_replay layer_request)
case "$seconds" in
	'' | *[!0-9]*) echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
sanitizer="${FUZZ_SANITIZER:-address}"
timeout="${FUZZ_TIMEOUT:-30}"

if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "==> installing cargo-fuzz (cargo install cargo-fuzz --locked)"
	cargo install cargo-fuzz --locked
fi
if cargo +nightly --version >/dev/null 2>&1; then
	fuzz=(cargo +nightly fuzz)
else
	echo "==> no nightly toolchain: using the stable compiler with RUSTC_BOOTSTRAP=1"
	export RUSTC_BOOTSTRAP=1
	fuzz=(cargo fuzz)
fi

cd "$here"
mkdir -p "$root/target/fuzz-logs"
crashed=()
for t in "${targets[@]}"; do
	[ -f "fuzz_targets/$t.rs" ] || { echo "no fuzz target $t (fuzz/fuzz_targets/$t.rs)" >&2; exit 2; }
	scratch="$root/target/fuzz-corpus/$t"
	artifacts="$root/target/fuzz-artifacts/$t"
	log="$root/target/fuzz-logs/$t.log"
	mkdir -p "$scratch" "$artifacts" "regressions/$t"
	echo "==> fuzzing $t for ${seconds}s (corpus $scratch, log $log)"
	"${fuzz[@]}" build --sanitizer "$sanitizer" --debug-assertions "$t"
	extra=()
	[ -f "dicts/$t.dict" ] && extra+=(-dict="dicts/$t.dict")
	# The first corpus directory receives the new inputs; the committed seeds are only read.
	# The saved crashes are not given: one not fixed yet would stop the run at once
	# (`make test` replays them).
	set +e
	"${fuzz[@]}" run --sanitizer "$sanitizer" --debug-assertions "$t" \
		"$scratch" "corpus/$t" -- \
		-max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1 \
		-artifact_prefix="$artifacts/" ${extra[@]+"${extra[@]}"} 2>&1 | tee "$log" |
		grep --line-buffered -E '^#[0-9]+\s+(INITED|pulse|DONE)|^==|panicked|^error|SUMMARY'
	status=${PIPESTATUS[0]}
	set -e
	new=()
	for a in "$artifacts"/crash-* "$artifacts"/oom-* "$artifacts"/timeout-* "$artifacts"/leak-*; do
		[ -f "$a" ] || continue
		known=""
		for f in "regressions/$t"/*; do
			if [ -f "$f" ] && cmp -s "$a" "$f"; then known="$f"; fi
		done
		if [ -n "$known" ]; then
			echo "!!! the saved crash fuzz/$known still crashes $t (not fixed yet)"
			crashed+=("$t")
		else
			cp "$a" "regressions/$t/$(basename "$a")"
			new+=("fuzz/regressions/$t/$(basename "$a")")
		fi
		rm -f "$a"
	done
	if [ ${#new[@]} -gt 0 ]; then
		crashed+=("$t")
		echo "!!! $t crashed; the input is saved for \`make test\` to replay:"
		printf '    %s\n' "${new[@]}"
		echo "    reproduce: cd fuzz && ${fuzz[*]} run --debug-assertions $t ${new[0]#fuzz/}"
		echo "    rename it to say what it exercises, fix the bug, and commit both"
	elif [ "$status" -ne 0 ] && [[ " ${crashed[*]} " != *" $t "* ]]; then
		crashed+=("$t")
		echo "!!! cargo fuzz run $t failed (status $status) without a crash input; see $log"
	fi
done

echo
echo "==> summary (target/fuzz-logs/)"
for t in "${targets[@]}"; do
	log="$root/target/fuzz-logs/$t.log"
	[ -f "$log" ] || continue
	echo "$t:"
	grep -E '^#[0-9]+\s+DONE' "$log" | tail -1 | sed 's/^/    /' || true
	grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" | sed 's/^/    /' || true
done
if [ ${#crashed[@]} -gt 0 ]; then
	echo "crashes in: ${crashed[*]} (see fuzz/regressions/)" >&2
	exit 1
fi
echo "no crash"
