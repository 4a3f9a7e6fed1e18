#!/usr/bin/env bash
# Builds the radiogate Debian package for one architecture with dpkg-deb (no cargo-deb
# needed), from the binary cross/build.sh produced (built first when missing or older than
# the sources, unless NO_BUILD=1).
#
#   cross/deb.sh arm64|armhf|amd64     -> target/deb/radiogate_VERSION_ARCH.deb
#
# Contents: /usr/bin/radiogate, /usr/lib/systemd/system/radiogate.service,
# /etc/radiogate/radiogate.toml (conffile: cross/shipped-config.sh, the documented defaults
# with state.dir = /var/lib/radiogate and UDP media ports 40000..40999), /usr/lib/udev/rules.d/60-radiogate.rules, docs under
# /usr/share/doc/radiogate/ (README, protocol, control plane, the radio wiring guide
# hal/README.md as README.hal.md, the radio setups config/examples/ as examples/: where the
# shipped configuration points); maintainer scripts create the system user radiogate (groups
# dialout, gpio, audio, plugdev; gpio is created if missing) and /var/lib/radiogate, enable
# and start the service; purge removes /var/lib/radiogate. Depends are computed from the
# binary's ELF dynamic section (NEEDED libraries, highest GLIBC_ symbol version).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  arm64 | aarch64) arch=arm64 build=aarch64 triple=aarch64-unknown-linux-gnu ;;
  armhf | armv7) arch=armhf build=armv7 triple=armv7-unknown-linux-gnueabihf ;;
  amd64 | x86_64) arch=amd64 build=amd64 triple=x86_64-unknown-linux-gnu ;;
  *)
    echo "usage: cross/deb.sh arm64|armhf|amd64" >&2
    exit 2
    ;;
esac
profile="${PROFILE:-dist}"
bin="target/$triple/$profile/radiogate"
if [ "${NO_BUILD:-0}" != 1 ]; then
  bin="$(cross/build.sh "$build" | tail -1)"
fi
[ -x "$bin" ] || {
  echo "cross/deb.sh: $bin missing (run cross/build.sh $build)" >&2
  exit 1
}

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
out="target/deb"
root="$out/radiogate_${arch}"
rm -rf "$root"
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/systemd/system" \
  "$root/usr/lib/udev/rules.d" "$root/etc/radiogate" "$root/usr/share/doc/radiogate"

install -m 0755 "$bin" "$root/usr/bin/radiogate"
install -m 0644 systemd/radiogate.service "$root/usr/lib/systemd/system/radiogate.service"
install -m 0644 systemd/60-radiogate.rules "$root/usr/lib/udev/rules.d/60-radiogate.rules"
# The shipped configuration: the embedded defaults, state in the systemd StateDirectory.
cross/shipped-config.sh >"$root/etc/radiogate/radiogate.toml"
chmod 0640 "$root/etc/radiogate/radiogate.toml"
for d in README.md docs/PROTOCOL.md docs/CONTROL_PLANE.md; do
  [ -f "$d" ] && install -m 0644 "$d" "$root/usr/share/doc/radiogate/$(basename "$d")"
done
install -m 0644 hal/README.md "$root/usr/share/doc/radiogate/README.hal.md"
install -d -m 0755 "$root/usr/share/doc/radiogate/examples"
install -m 0644 config/examples/*.toml "$root/usr/share/doc/radiogate/examples/"
cat >"$root/usr/share/doc/radiogate/copyright" <<'COPY'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: radiogate

Files: *
License: MIT or Apache-2.0
COPY
install -m 0755 cross/debian/postinst cross/debian/prerm cross/debian/postrm "$root/DEBIAN/"
echo "/etc/radiogate/radiogate.toml" >"$root/DEBIAN/conffiles"

# Depends from the ELF dynamic section.
needed="$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')"
glibc="$(readelf -V "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -1)"
deps=("libc6 (>= ${glibc:-2.31})")
for lib in $needed; do
  case "$lib" in
    libc.so.* | libm.so.* | libdl.so.* | libpthread.so.* | librt.so.* | ld-linux*) ;;
    libgcc_s.so.*) deps+=("libgcc-s1") ;;
    libasound.so.2) deps+=("libasound2 | libasound2t64") ;;
    libudev.so.1) deps+=("libudev1") ;;
    libopus.so.0) deps+=("libopus0") ;;
    *)
      echo "cross/deb.sh: no package known for $lib (add it to the Depends mapping)" >&2
      exit 1
      ;;
  esac
done
depends="$(printf '%s\n' "${deps[@]}" | awk '!seen[$0]++' | paste -sd, | sed 's/,/, /g')"
size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
cat >"$root/DEBIAN/control" <<CONTROL
Package: radiogate
Version: $version
Architecture: $arch
Maintainer: radiogate project <radiogate@users.noreply.github.com>
Installed-Size: $size
Depends: $depends, passwd
Section: net
Priority: optional
Homepage: https://github.com/radiogate/radiogate
Description: edge push-to-talk radio gateway
 One process on a Raspberry Pi-class box runs WebSocket signaling with JWT
 roles, push-to-talk floor control, a WebRTC audio SFU and the bridge to
 two-way radios and PTT buttons. The service starts after installation with
 /etc/radiogate/radiogate.toml; state lives in /var/lib/radiogate.
CONTROL

deb="$out/radiogate_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
rm -rf "$root"
echo "$deb"
