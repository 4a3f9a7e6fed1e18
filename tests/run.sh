#!/usr/bin/env bash
# The radiogate test command (README "Run the tests"): installs what a fresh Debian machine
# lacks, then checks formatting and lints, audits the dependencies, runs every test in the
# workspace, checks that a build with nothing changed is a no-op, then the Pi checks
# (tests/pi.sh: cross builds, .deb packages, qemu-user runs, systemd-analyze verify).
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup-debian.sh
if [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
tests/audit.sh
cargo test --workspace

# A build with nothing changed must be a no-op (issue 17: a build script that reran on every
# build recompiled the crate and relinked every test binary, minutes each time). `cargo test`
# has just built the library, the binaries and the tests (with the dev-dependencies' features,
# hence `--tests`): building them again must not compile radiogate and must take under 5 s.
# The benches are type-checked by clippy above and not linked here: eight more binaries, each
# linking the gateway and webrtc-rs, would add minutes to CI and check nothing more.
noop() {
  local start out ms
  start=$(date +%s%N)
  if ! out=$("$@" 2>&1); then
    printf '%s\n' "$out" >&2
    return 1
  fi
  ms=$((($(date +%s%N) - start) / 1000000))
  echo "no-op check: '$*' took ${ms} ms"
  if grep -q "Compiling radiogate" <<<"$out" || ((ms >= 5000)); then
    printf '%s\n' "$out" >&2
    echo "FAIL: '$*' with nothing changed must not compile radiogate and must take < 5 s" >&2
    return 1
  fi
}
noop cargo build --workspace --tests
noop cargo test --workspace --no-run

tests/pi.sh
