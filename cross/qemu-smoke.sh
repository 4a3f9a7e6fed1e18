#!/usr/bin/env bash
# Runs a built radiogate binary for a Pi under qemu-user (or natively for amd64):
# `--version`, `check-config` on the shipped configuration, and a short `run` that must serve
# GET /healthz and GET /metrics, then stop cleanly on SIGTERM. Prints the idle RSS (under
# qemu-user it is qemu's RSS, which includes the emulator: approximate).
#
#   cross/qemu-smoke.sh aarch64|armv7|amd64 [BINARY]
#
# Installs qemu-user and the target's libc (multiarch) when missing. QEMU_LD_PREFIX is
# deliberately unset: with the multiarch libc installed the dynamic loader is found at its
# usual path, and setting the prefix makes the binary hang.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  aarch64 | arm64) triple=aarch64-unknown-linux-gnu qemu=qemu-aarch64 deb=arm64 ;;
  armv7 | armhf) triple=armv7-unknown-linux-gnueabihf qemu=qemu-arm deb=armhf ;;
  amd64 | x86_64) triple=x86_64-unknown-linux-gnu qemu="" deb=amd64 ;;
  *)
    echo "usage: cross/qemu-smoke.sh aarch64|armv7|amd64 [BINARY]" >&2
    exit 2
    ;;
esac
bin="${2:-target/$triple/${PROFILE:-dist}/radiogate}"
unset QEMU_LD_PREFIX

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
if [ -n "$qemu" ]; then
  command -v "$qemu" >/dev/null || need+=(qemu-user)
  dpkg-query -W -f='${Status}' "libc6:$deb" 2>/dev/null | grep -q "install ok installed" ||
    need+=("libc6:$deb")
fi
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  if [ -n "$qemu" ] && ! dpkg --print-foreign-architectures | grep -qx "$deb"; then
    $SUDO dpkg --add-architecture "$deb"
  fi
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q || echo "apt-get update failed (continuing with the lists it has)" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${need[@]}"
fi
run() { if [ -n "$qemu" ]; then "$qemu" "$bin" "$@"; else "$bin" "$@"; fi; }
fail() {
  echo "qemu-smoke $1: $2" >&2
  [ -f "${tmp:-/nonexistent}/log" ] && sed 's/^/  | /' "$tmp/log" >&2
  exit 1
}

tmp="$(mktemp -d)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

version="$(run --version)"
[[ "$version" =~ ^radiogate\ [0-9]+\.[0-9]+\.[0-9]+\ \(git\ [0-9a-z-]+\)$ ]] ||
  fail "$1" "unexpected --version: $version"
echo "$1: $version"

# The shipped configuration (what the .deb installs as /etc/radiogate/radiogate.toml).
cross/shipped-config.sh >"$tmp/shipped.toml"
run check-config "$tmp/shipped.toml" >/dev/null || fail "$1" "check-config on the shipped config failed"
echo "$1: check-config shipped config ok"

# A short run: loopback, free port, temporary state (TLS on: the certificates are generated).
sed -e "s#^dir = .*#dir = \"$tmp/state\"#" -e 's#^listen = .*#listen = "127.0.0.1:0"#' \
  -e 's#^udp_port_min = .*#udp_port_min = 0#' -e 's#^udp_port_max = .*#udp_port_max = 0#' \
  "$tmp/shipped.toml" >"$tmp/run.toml"
started=$(date +%s%N)
if [ -n "$qemu" ]; then
  RADIOGATE_LOG=info "$qemu" "$bin" run --config "$tmp/run.toml" 2>"$tmp/log" &
else
  RADIOGATE_LOG=info "$bin" run --config "$tmp/run.toml" 2>"$tmp/log" &
fi
pid=$!
addr=""
for _ in $(seq 1 600); do
  addr="$(sed -n 's/.*listening addr=\([0-9.:]*\).*/\1/p' "$tmp/log" | head -1)"
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || fail "$1" "gateway exited before listening"
  sleep 0.1
done
[ -n "$addr" ] || fail "$1" "gateway did not listen within 60 s"
ready_ms=$((($(date +%s%N) - started) / 1000000))
health="$(curl -fsS --max-time 10 "http://$addr/healthz")" || fail "$1" "GET /healthz failed"
grep -q '"status":"ok"' <<<"$health" || fail "$1" "unexpected /healthz: $health"
metrics="$(curl -fsS --max-time 10 "http://$addr/metrics")" || fail "$1" "GET /metrics failed"
grep -q '^radiogate_sessions 0$' <<<"$metrics" || fail "$1" "unexpected /metrics"
sleep 3
rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")"
kill -TERM "$pid"
for _ in $(seq 1 100); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then fail "$1" "no exit within 10 s of SIGTERM"; fi
wait "$pid" || fail "$1" "exit status $? after SIGTERM"
pid=""
size="$(stat -c %s "$bin")"
echo "$1: run served /healthz and /metrics on $addr (listening after ${ready_ms} ms), idle RSS ${rss} KiB${qemu:+ (under $qemu: approximate)}, binary $size bytes, clean exit on SIGTERM"
