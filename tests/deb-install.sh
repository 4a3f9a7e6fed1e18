#!/usr/bin/env bash
# Installs the amd64 radiogate .deb on this machine (root, no running systemd: nothing is
# started), checks what the maintainer scripts did, runs `systemd-analyze verify` on
# systemd/*.service with /usr/bin/radiogate in place, then purges and checks the state is gone.
#
#   tests/deb-install.sh target/deb/radiogate_VERSION_amd64.deb
set -euo pipefail
cd "$(dirname "$0")/.."
deb="$1"
fail() {
  echo "deb-install: $*" >&2
  exit 1
}
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "./$deb" >/dev/null
trap 'apt-get purge -y -q radiogate >/dev/null 2>&1 || true' EXIT

id radiogate >/dev/null || fail "no user radiogate"
groups="$(id -nG radiogate)"
for g in radiogate dialout gpio audio plugdev; do
  grep -qw "$g" <<<"$groups" || fail "radiogate is not in group $g ($groups)"
done
[ "$(getent passwd radiogate | cut -d: -f7)" = /usr/sbin/nologin ] || fail "login shell"
[ "$(stat -c '%U:%G %a' /var/lib/radiogate)" = "radiogate:radiogate 750" ] ||
  fail "/var/lib/radiogate: $(stat -c '%U:%G %a' /var/lib/radiogate)"
[ "$(stat -c '%U:%G %a' /etc/radiogate/radiogate.toml)" = "root:radiogate 640" ] ||
  fail "/etc/radiogate/radiogate.toml: $(stat -c '%U:%G %a' /etc/radiogate/radiogate.toml)"
dpkg-query -W -f='${Conffiles}\n' radiogate | grep -q '/etc/radiogate/radiogate.toml' ||
  fail "config is not a conffile"
[ -L /etc/systemd/system/multi-user.target.wants/radiogate.service ] || fail "service not enabled"
[ -f /usr/lib/udev/rules.d/60-radiogate.rules ] || fail "udev rules"
# The service user can read the config and open the state directory.
runuser -u radiogate -- /usr/bin/radiogate check-config /etc/radiogate/radiogate.toml >/dev/null ||
  fail "check-config as the service user"
# `permissions` never creates state (issue 13): before the first start it fails, naming the
# database and what to do.
if out="$(runuser -u radiogate -- /usr/bin/radiogate permissions set \
  --config /etc/radiogate/radiogate.toml --event site1 --user ana --channel ops 2>&1)"; then
  fail "permissions set created state before the gateway's first start"
fi
grep -q "/var/lib/radiogate/radiogate.db" <<<"$out" || fail "permissions did not name the database: $out"
# The first start creates the state, as the service would (bounded wait for its listening line).
log="$(mktemp)"
runuser -u radiogate -- /usr/bin/radiogate run --config /etc/radiogate/radiogate.toml >"$log" 2>&1 &
pid=$!
for _ in $(seq 200); do
  grep -q "listening" "$log" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
grep -q "listening" "$log" || fail "first start as the service user: $(tail -5 "$log")"
# runuser passes SIGTERM on and reports the signal itself: the gateway's own log says how it ended.
kill -TERM "$pid"
wait "$pid" || true
grep -q "shutdown complete" "$log" || fail "first start did not shut down cleanly: $(tail -5 "$log")"
rm -f "$log"
runuser -u radiogate -- /usr/bin/radiogate permissions set --config /etc/radiogate/radiogate.toml \
  --event site1 --user ana --channel ops >/dev/null 2>&1 || fail "permissions set as the service user"
[ -f /var/lib/radiogate/radiogate.db ] || fail "no database in /var/lib/radiogate"
systemd-analyze verify systemd/*.service || fail "systemd-analyze verify"
echo "deb-install: systemd-analyze verify systemd/*.service ok"

apt-get purge -y -q radiogate >/dev/null
trap - EXIT
[ ! -e /var/lib/radiogate ] || fail "purge left /var/lib/radiogate"
[ ! -e /etc/radiogate ] || fail "purge left /etc/radiogate"
[ ! -e /usr/bin/radiogate ] || fail "purge left /usr/bin/radiogate"
echo "deb-install: $deb installed (user, groups, state dir, conffile, enabled) and purged (state removed)"
