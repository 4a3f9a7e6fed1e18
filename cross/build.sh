#!/usr/bin/env bash
# Cross-builds the radiogate binary for a Raspberry Pi (or the build machine) from an x86-64
# Debian machine, installing whatever is missing first.
#
#   cross/build.sh aarch64   # Raspberry Pi OS 64-bit (Pi 3/4/5): aarch64-unknown-linux-gnu
#   cross/build.sh armv7     # Raspberry Pi OS 32-bit (Pi 2/3/4):  armv7-unknown-linux-gnueabihf
#   cross/build.sh amd64     # the build machine itself:           x86_64-unknown-linux-gnu
#
# Installs (apt, with sudo when not root; only what is missing): Debian's cross gcc, the
# target's multiarch -dev packages for the C libraries the gateway links (ALSA for cpal and
# libudev for serialport, both from the hal crate), cmake and pkg-config; and the Rust target
# (rustup). Then sets the linker, the C compiler and pkg-config for the target and runs
# `cargo build --profile dist --target TRIPLE --bin radiogate`. Extra arguments go to cargo.
# PROFILE=release selects the fully optimised (thin LTO) profile instead of `dist`.
# The binary lands in target/TRIPLE/PROFILE/radiogate; its path is the last line printed.
set -euo pipefail
cd "$(dirname "$0")/.."

arch="${1:-}"
shift || true
case "$arch" in
  aarch64 | arm64) triple=aarch64-unknown-linux-gnu deb=arm64 gnu=aarch64-linux-gnu ;;
  armv7 | armhf) triple=armv7-unknown-linux-gnueabihf deb=armhf gnu=arm-linux-gnueabihf ;;
  amd64 | x86_64) triple=x86_64-unknown-linux-gnu deb=amd64 gnu=x86_64-linux-gnu ;;
  *)
    echo "usage: cross/build.sh aarch64|armv7|amd64 [cargo args...]" >&2
    exit 2
    ;;
esac
profile="${PROFILE:-dist}"
host_deb="$(dpkg --print-architecture)"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

pkgs=(build-essential pkg-config cmake)
if [ "$deb" != "$host_deb" ]; then
  pkgs+=("gcc-$gnu" "g++-$gnu" "libc6-dev-$deb-cross" "libc6:$deb" "libasound2-dev:$deb" "libudev-dev:$deb")
else
  pkgs+=(libasound2-dev libudev-dev)
fi
missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
if ((${#missing[@]})); then
  if [ "$deb" != "$host_deb" ] && ! dpkg --print-foreign-architectures | grep -qx "$deb"; then
    $SUDO dpkg --add-architecture "$deb"
  fi
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q || echo "apt-get update failed (continuing with the lists it has)" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
fi

if [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$triple"; then
  rustup target add "$triple"
fi

if [ "$deb" != "$host_deb" ]; then
  T="$(echo "$triple" | tr 'a-z-' 'A-Z_')"
  t="${triple//-/_}"
  export "CARGO_TARGET_${T}_LINKER=$gnu-gcc"
  export "CC_$t=$gnu-gcc" "CXX_$t=$gnu-g++" "AR_$t=$gnu-ar"
  # pkg-config answers with the target's multiarch libraries only.
  export PKG_CONFIG_ALLOW_CROSS=1
  export "PKG_CONFIG_LIBDIR_$t=/usr/lib/$gnu/pkgconfig:/usr/share/pkgconfig"
  export "PKG_CONFIG_SYSROOT_DIR_$t=/"
  if [ "$deb" = armhf ]; then
    # Bundled libopus (audiopus_sys) uses NEON intrinsics that need the FPU named.
    export "CFLAGS_$t=-mfpu=neon-vfpv4"
  fi
fi

cargo build --locked --profile "$profile" --target "$triple" --bin radiogate "$@" >&2
echo "target/$triple/$profile/radiogate"
