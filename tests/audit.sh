#!/usr/bin/env bash
# The dependency audit of the test command (tests/run.sh): `cargo deny` (installed by
# tests/setup-debian.sh) checks the advisories, duplicate versions and sources (deny.toml)
# without network, against the advisory database vendored in deny/ (deny/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-deny >/dev/null; then
  echo "audit: cargo-deny is not installed; run tests/setup-debian.sh" >&2
  exit 1
fi
# cargo-deny opens the default database at <db-path>/advisory-db-<hash of its URL>/: the
# advisories under crates/, and .git/FETCH_HEAD, whose date it takes as the last fetch.
db=target/advisory-dbs/advisory-db-3157b0e258782691
read -r rev date <deny/advisory-db.rev
if [ ! -f "$db/.rev" ] || ! cmp -s deny/advisory-db.rev "$db/.rev"; then
  rm -rf "$db"
  mkdir -p "$db/.git"
  tar -xzf deny/advisory-db.tar.gz -C "$db"
  echo "$rev" >"$db/.git/FETCH_HEAD"
  touch -d "$date" "$db/.git/FETCH_HEAD"
  cp deny/advisory-db.rev "$db/.rev"
fi
age_days=$((($(date +%s) - $(date -d "$date" +%s)) / 86400))
echo "audit: advisory database ${rev:0:12} of ${date%%T*} (${age_days} days old, vendored in deny/)"
if ((age_days > 90)); then
  echo "audit: WARNING: the vendored advisory database is more than 90 days old;" \
    "refresh deny/advisory-db.tar.gz (deny/README.md)" >&2
fi
# `cargo metadata` (run by cargo-deny) wants every package of every platform on disk: fetch
# them from crates.io first; the check itself runs offline.
cargo fetch --locked --quiet
cargo deny --offline --log-level warn check --hide-inclusion-graph advisories bans sources
