#!/usr/bin/env bash
# The Pi checks of the test command (tests/run.sh runs this after `cargo test`): cross builds
# for aarch64 and armv7 and a native build (profile `dist`), the three .deb packages and their
# contents, the aarch64 and armv7 binaries under qemu-user (--version, check-config on the
# shipped config, a short run serving /healthz and /metrics), `systemd-analyze verify` on
# systemd/*.service, and, on a machine without a running systemd where we are root (CI's
# fresh Debian container), an install/purge round trip of the amd64 package.
#
# RADIOGATE_SKIP_PI=1 skips all of it (quick local runs). RADIOGATE_DEB_INSTALL_TEST=1 forces
# the install round trip (it installs the package on this machine, creating the radiogate
# user), =0 skips it. Timings of each step are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${RADIOGATE_SKIP_PI:-0}" = 1 ]; then
  echo "pi: skipped (RADIOGATE_SKIP_PI=1)" >&2
  exit 0
fi
if [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
timings=()
step() {
  local name="$1" s
  shift
  s=$(date +%s)
  "$@"
  timings+=("$name: $(($(date +%s) - s)) s")
}

for t in aarch64 armv7 amd64; do
  step "cargo build --profile dist ($t)" cross/build.sh "$t" >/dev/null
done
debs=()
for a in arm64 armhf amd64; do
  step "deb ($a)" env NO_BUILD=1 cross/deb.sh "$a" >/dev/null
  debs+=("$(ls target/deb/radiogate_*_"$a".deb)")
done
for d in "${debs[@]}"; do cross/check-deb.sh "$d"; done
for t in aarch64 armv7 amd64; do
  step "smoke ($t)" cross/qemu-smoke.sh "$t"
done

# systemd-analyze verify needs the ExecStart binaries to exist: with the package installed
# (round trip below) it checks the units as they are; otherwise a copy pointing at the built
# binary.
if ! command -v systemd-analyze >/dev/null; then
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q || echo "apt-get update failed (continuing with the lists it has)" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends systemd
fi
install_test="${RADIOGATE_DEB_INSTALL_TEST:-auto}"
if [ "$install_test" = auto ]; then
  install_test=0
  if [ "$(id -u)" -eq 0 ] && [ ! -d /run/systemd/system ] && ! dpkg-query -W radiogate >/dev/null 2>&1; then
    install_test=1
  fi
fi
verify_copy() {
  local tmp
  tmp="$(mktemp -d)"
  for u in systemd/*.service; do
    sed "s#/usr/bin/radiogate#$PWD/target/x86_64-unknown-linux-gnu/dist/radiogate#g" "$u" >"$tmp/$(basename "$u")"
  done
  systemd-analyze verify "$tmp"/*.service
  rm -rf "$tmp"
  echo "pi: systemd-analyze verify ok (ExecStart pointed at the built binary)"
}
if [ "$install_test" = 1 ]; then
  step "deb install/purge round trip" tests/deb-install.sh "${debs[2]}"
else
  verify_copy
fi

echo "pi: all checks passed; timings:"
printf '  %s\n' "${timings[@]}"
