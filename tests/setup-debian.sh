#!/usr/bin/env bash
# Installs what building and testing radiogate needs on a fresh Debian machine: a C toolchain,
# cmake and pkg-config for -sys crates, libopus (the tests' Opus encoder/decoder), ALSA and udev
# headers (hardware layer), the hardware tests' real peers (rigctld, socat, PulseAudio with the
# ALSA pulse plugin), redis-server and openssl (the permission-sync tests start a real Redis,
# with TLS), Rust (rustup) with rustfmt and clippy when cargo is missing, and cargo-deny.
# For the browser tests: Chromium, Node.js and npm (when node/npm are missing), and the npm
# packages of tests/browser from its lockfile (playwright-core; it uses /usr/bin/chromium and
# downloads no browser). Safe to run again: it installs only what is missing.
set -euo pipefail

APT_PACKAGES=(build-essential pkg-config cmake curl ca-certificates libopus-dev libasound2-dev libudev-dev
  libhamlib-utils socat pulseaudio pulseaudio-utils libasound2-plugins redis-server openssl chromium)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js may come from another source than Debian (then its npm is bundled): only ask apt
# for what is not on the PATH.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
if [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
if command -v rustup >/dev/null; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

# cargo-deny for the dependency audit (tests/audit.sh), built from crates.io into ~/.cargo/bin
# once (a few minutes on 2 cores); the version deny.toml is written for.
CARGO_DENY_VERSION=0.20.2
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
  echo "installing cargo-deny $CARGO_DENY_VERSION" >&2
  cargo install --locked --quiet "cargo-deny@$CARGO_DENY_VERSION"
fi

# npm packages of the browser tests, exactly as locked; reinstalled when the lockfile changes.
BROWSER_DIR="$(cd "$(dirname "$0")" && pwd)/browser"
STAMP="$BROWSER_DIR/node_modules/.package-lock.json"
if [ ! -f "$STAMP" ] || ! cmp -s "$BROWSER_DIR/package-lock.json" "$BROWSER_DIR/node_modules/.radiogate-lock"; then
  echo "installing npm packages of tests/browser" >&2
  (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$BROWSER_DIR/package-lock.json" "$BROWSER_DIR/node_modules/.radiogate-lock"
fi
