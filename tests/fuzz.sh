#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ (cargo-fuzz, libFuzzer) for a number of executions each and
# prints a summary (docs/BENCHMARKS.md "Fuzzing"). A long run: NOT part of tests/run.sh.
#
#   tests/fuzz.sh [TARGET|all] [RUNS]        default: all targets, 10000000 executions each
#
# Targets: rpc_request token_verify membership_update sdp_offer ice_candidate config_toml.
# Environment:
#   FUZZ_CPU=N          pin each run to CPU N (taskset); runs are niced (nice -n 10) always
#   FUZZ_MAX_SECS=S     also stop a target after S seconds (libFuzzer -max_total_time)
#   FUZZ_SANITIZER=X    address (default when the toolchain ships ASan's runtime) or none
#
# It installs what it needs outside the test command: cargo-fuzz (into ~/.cargo/bin) when
# missing, and a nightly toolchain (rustup) for -Zsanitizer. When no nightly can be had it
# says so and builds with the installed stable toolchain and RUSTC_BOOTSTRAP=1.
# Seeds are fuzz/seeds/TARGET/ (checked in); the corpus grows in fuzz/corpus/TARGET/ and
# crashing inputs land in fuzz/artifacts/TARGET/ (both ignored by git). A run stops at the
# first crash; the script then exits non-zero after the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

ALL=(rpc_request token_verify membership_update sdp_offer ice_candidate config_toml)
target=${1:-all}
runs=${2:-10000000}
if [ "$target" = all ]; then
  targets=("${ALL[@]}")
else
  targets=("$target")
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

# The toolchain: an installed nightly, else one rustup can install, else stable with
# RUSTC_BOOTSTRAP=1 (the unstable flags cargo-fuzz passes are then allowed on stable).
toolchain=()
if rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
  echo "fuzz: toolchain $(rustup run nightly rustc --version)"
elif rustup toolchain install nightly --profile minimal >/dev/null 2>&1 &&
  rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
  echo "fuzz: installed $(rustup run nightly rustc --version)"
else
  export RUSTC_BOOTSTRAP=1
  echo "fuzz: no nightly toolchain (rustup could not install one): building with" \
    "$(rustc --version) and RUSTC_BOOTSTRAP=1"
fi

# AddressSanitizer when the toolchain ships its runtime; `none` otherwise (Rust code is
# memory-safe without it; ASan matters for the C in the dependency tree, e.g. SQLite, opus).
if [ -z "${FUZZ_SANITIZER:-}" ]; then
  sysroot=$(rustc "${toolchain[@]}" --print sysroot)
  host=$(rustc "${toolchain[@]}" -vV | sed -n 's/^host: //p')
  if ls "$sysroot/lib/rustlib/$host/lib/"librustc-*_rt.asan.a >/dev/null 2>&1; then
    FUZZ_SANITIZER=address
  else
    FUZZ_SANITIZER=none
    echo "fuzz: this toolchain has no ASan runtime: --sanitizer none"
  fi
fi
echo "fuzz: sanitizer $FUZZ_SANITIZER, $runs executions per target"

wrap=(nice -n 10)
if [ -n "${FUZZ_CPU:-}" ]; then
  wrap+=(taskset -c "$FUZZ_CPU")
fi
libfuzzer_args=(-runs="$runs" -print_final_stats=1)
if [ -n "${FUZZ_MAX_SECS:-}" ]; then
  libfuzzer_args+=(-max_total_time="$FUZZ_MAX_SECS")
fi

# --debug-assertions: integer overflow and debug_assert! panics count as crashes too.
build=(cargo "${toolchain[@]}" fuzz build --release --debug-assertions --sanitizer "$FUZZ_SANITIZER")
mkdir -p target/fuzz-logs
summary=()
failed=0
for t in "${targets[@]}"; do
  [ -d "fuzz/seeds/$t" ] || {
    echo "fuzz: no such target $t (targets: ${ALL[*]})" >&2
    exit 2
  }
  echo "fuzz: building $t"
  "${wrap[@]}" "${build[@]}" "$t"
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  crashes_before=$(find "fuzz/artifacts/$t" -type f | wc -l)
  log="target/fuzz-logs/$t.log"
  echo "fuzz: running $t (log: $log)"
  start=$(date +%s)
  rc=0
  "${wrap[@]}" cargo "${toolchain[@]}" fuzz run --release --debug-assertions \
    --sanitizer "$FUZZ_SANITIZER" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    "${libfuzzer_args[@]}" >"$log" 2>&1 || rc=$?
  secs=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -1 | sed 's/corp: //')
  files=$(find "fuzz/corpus/$t" -type f | wc -l)
  crashes=$(($(find "fuzz/artifacts/$t" -type f | wc -l) - crashes_before))
  if [ "$rc" -ne 0 ]; then
    failed=1
    tail -40 "$log"
  fi
  summary+=("$(printf '| %s | %s | %s s | %s | %s (%s files) | %s | %s |' "$t" "${execs:-?}" \
    "$secs" "${rate:-?}" "${corp:-?}" "$files" "$crashes" "$rc")")
done

echo
echo "| target | executions | time | exec/s | corpus (units/bytes) | new crashes | exit |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${summary[@]}"
exit "$failed"
