#!/usr/bin/env bash
# Prints the configuration the .deb installs as /etc/radiogate/radiogate.toml: the documented
# defaults (config/radiogate.toml) with the state in systemd's StateDirectory and a fixed UDP
# media port range that the site firewall can open.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(sed -e 's#^dir = "./radiogate-state"$#dir = "/var/lib/radiogate"#' \
  -e 's#^udp_port_min = 0$#udp_port_min = 40000#' \
  -e 's#^udp_port_max = 0$#udp_port_max = 40999#' \
  -e 's#see config/examples/ for complete#see /usr/share/doc/radiogate/examples/ for complete#' \
  -e 's#^\(\# setups and \)hal/README.md#\1/usr/share/doc/radiogate/README.hal.md#' \
  config/radiogate.toml)"
for want in 'dir = "/var/lib/radiogate"' 'udp_port_min = 40000' 'udp_port_max = 40999' \
  '/usr/share/doc/radiogate/examples/' '/usr/share/doc/radiogate/README.hal.md'; do
  grep -qF "$want" <<<"$out" || {
    echo "cross/shipped-config.sh: could not set '$want' (config/radiogate.toml changed?)" >&2
    exit 1
  }
done
printf '%s\n' "# Installed by the radiogate package: the documented defaults (radiogate print-config)" \
  "# with state.dir = /var/lib/radiogate and sfu.udp_port_min/max = 40000..40999." \
  "# Check changes with: radiogate check-config /etc/radiogate/radiogate.toml" "" "$out"
