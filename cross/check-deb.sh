#!/usr/bin/env bash
# Checks a radiogate .deb: control fields, conffiles, maintainer scripts and the file list
# (`dpkg-deb -I/-c/-f`), and that the binary is for the package's architecture.
#
#   cross/check-deb.sh target/deb/radiogate_0.1.0_arm64.deb
set -euo pipefail
deb="$(realpath "$1")"
cd "$(dirname "$0")/.."
fail() {
  echo "check-deb: $deb: $*" >&2
  exit 1
}
arch="$(dpkg-deb -f "$deb" Architecture)"
[ "$(dpkg-deb -f "$deb" Package)" = radiogate ] || fail "Package is not radiogate"
case "$arch" in
  arm64) machine="AArch64" ;;
  armhf) machine="ARM" ;;
  amd64) machine="Advanced Micro Devices X86-64" ;;
  *) fail "unexpected Architecture $arch" ;;
esac
depends="$(dpkg-deb -f "$deb" Depends)"
[[ "$depends" == *"libc6 (>= 2."* ]] || fail "Depends lacks libc6 (>= ...): $depends"

list="$(dpkg-deb -c "$deb")"
has() { grep -qE "$1" <<<"$list" || fail "missing in file list: $2"; }
has '^-rwxr-xr-x root/root .* \./usr/bin/radiogate$' "/usr/bin/radiogate (0755 root)"
has '^-rw-r--r-- root/root .* \./usr/lib/systemd/system/radiogate\.service$' "the systemd unit"
has '^-rw-r----- root/root .* \./etc/radiogate/radiogate\.toml$' "/etc/radiogate/radiogate.toml (0640)"
has '^-rw-r--r-- root/root .* \./usr/lib/udev/rules\.d/60-radiogate\.rules$' "udev rules"
has '^d.* \./etc/radiogate/$' "/etc/radiogate/"
has '\./usr/share/doc/radiogate/copyright$' "copyright"
# What the shipped configuration points to (issue 13).
has '^-rw-r--r-- root/root .* \./usr/share/doc/radiogate/README\.hal\.md$' "the wiring guide README.hal.md"
for ex in config/examples/*.toml; do
  has "^-rw-r--r-- root/root .* \\./usr/share/doc/radiogate/examples/$(basename "$ex")\$" "examples/$(basename "$ex")"
done
[ "$(dpkg-deb -f "$deb" Maintainer)" != "radiogate maintainers <radiogate@localhost>" ] ||
  fail "placeholder Maintainer"
[[ "$(dpkg-deb -f "$deb" Homepage)" == https://* ]] || fail "Homepage"
if grep -qE '\./var/lib/radiogate' <<<"$list"; then
  fail "/var/lib/radiogate must be created by postinst/systemd, not shipped"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -e "$deb" "$tmp/DEBIAN"
dpkg-deb -x "$deb" "$tmp/root"
[ "$(cat "$tmp/DEBIAN/conffiles")" = "/etc/radiogate/radiogate.toml" ] || fail "conffiles"
cmp -s <(cross/shipped-config.sh) "$tmp/root/etc/radiogate/radiogate.toml" ||
  fail "shipped config differs from cross/shipped-config.sh"
for s in postinst prerm postrm; do
  [ -x "$tmp/DEBIAN/$s" ] || fail "$s missing or not executable"
  sh -n "$tmp/DEBIAN/$s" || fail "$s has a syntax error"
done
post="$tmp/DEBIAN/postinst"
grep -q 'useradd --system --gid radiogate' "$post" || fail "postinst does not create the user"
grep -q 'for g in dialout gpio audio plugdev' "$post" || fail "postinst groups"
grep -q 'groupadd --system "\$g"' "$post" || fail "postinst does not create missing groups"
grep -q 'install -d -o radiogate -g radiogate -m 0750 /var/lib/radiogate' "$post" ||
  fail "postinst does not create the state directory"
grep -q 'deb-systemd-helper enable radiogate.service' "$post" || fail "postinst does not enable"
grep -q 'restart radiogate.service' "$post" || fail "postinst does not start the service"
grep -q 'rm -rf /var/lib/radiogate' "$tmp/DEBIAN/postrm" || fail "purge keeps the state"
unit="$tmp/root/usr/lib/systemd/system/radiogate.service"
for k in 'Type=notify' 'WatchdogSec=' 'Wants=network-online.target time-sync.target' \
  'After=network-online.target sound.target time-sync.target' 'Restart=on-failure' 'ExecStopPost=/usr/bin/radiogate unkey' \
  'ExecStart=/usr/bin/radiogate run --config /etc/radiogate/radiogate.toml' \
  'StateDirectory=radiogate' 'ProtectSystem=strict' 'NoNewPrivileges=yes' 'PrivateTmp=yes' \
  'CapabilityBoundingSet=$' 'User=radiogate' 'SupplementaryGroups=dialout gpio audio plugdev'; do
  grep -q "^$k" "$unit" || fail "unit lacks $k"
done
file_machine="$(readelf -h "$tmp/root/usr/bin/radiogate" | sed -n 's/ *Machine: *//p')"
[ "$file_machine" = "$machine" ] || fail "binary is for $file_machine, not $arch"
if readelf -S "$tmp/root/usr/bin/radiogate" | grep -q '\.debug_info'; then
  fail "binary is not stripped"
fi
echo "check-deb: $deb ok ($arch, $(stat -c %s "$deb") bytes, Depends: $depends)"
