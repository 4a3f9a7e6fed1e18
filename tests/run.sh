#!/usr/bin/env bash
# The radiogate test command (README "Run the tests"): installs what a fresh Debian machine
# lacks, then checks formatting and lints, runs every test in the workspace, then the Pi
# checks (tests/pi.sh: cross builds, .deb packages, qemu-user runs, systemd-analyze verify).
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup-debian.sh
if [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
tests/pi.sh
