#!/usr/bin/env bash
# Installs only what building and running radiogate needs on Debian/Ubuntu (not the test
# peers: no Chromium, Redis, PulseAudio, hamlib; tests/setup-debian.sh installs those):
# a C toolchain, pkg-config, cmake, the Opus, ALSA and udev headers, and Rust through rustup
# when there is no cargo. Uses sudo when not root. Safe to run again (installs what is
# missing only).
#
#   tests/setup-run.sh && cargo run --release -- run
set -euo pipefail

APT_PACKAGES=(build-essential pkg-config cmake curl ca-certificates libopus-dev libasound2-dev libudev-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
if ! command -v cargo >/dev/null; then
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  echo "Rust installed: run '. \$HOME/.cargo/env' (or open a new shell) before cargo" >&2
fi
