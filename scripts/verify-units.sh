#!/usr/bin/env bash
# Checks deploy/'s systemd units with systemd's own tools, against the
# binary built from this tree:
#
#   scripts/verify-units.sh
#
# - `systemd-analyze verify` on every unit (syntax, unknown settings,
#   dependencies, an ExecStart= that is not executable), with no warning;
# - `systemd-analyze security` on the services, failing if the exposure
#   score rises above $MAX_EXPOSURE (README states the score).
#
# verify needs ExecStart='s binary to exist: the units name
# /usr/local/bin/wspush (where README installs it), so they are checked as
# copies that name target/release/wspush instead, and nothing outside the
# tree is touched. Needs no running systemd (works in a container).
set -euo pipefail
cd "$(dirname "$0")/.."
max=${MAX_EXPOSURE:-1.5}

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "verify-units: systemd-analyze is missing (apt-get install systemd); the units are NOT checked" >&2
  exit 1
fi

target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$PWD/$target ;; esac
cargo build --release --bin wspush
bin=$target/release/wspush

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for unit in deploy/*.service deploy/*.socket; do
  sed "s#/usr/local/bin/wspush#$bin#g" "$unit" >"$work/$(basename "$unit")"
done
# An instance of the template, as `systemctl start wspush@1` makes.
cp "$work/wspush@.service" "$work/wspush@1.service"

# verify exits 0 on an unknown key or a value it cannot parse (it only
# warns, and the setting is ignored): any output at all is a failure.
out=$(cd "$work" && systemd-analyze verify ./*.service ./*.socket 2>&1) || {
  echo "$out" >&2
  echo "verify-units: systemd-analyze verify failed" >&2
  exit 1
}
if [ -n "$out" ]; then
  echo "$out" >&2
  echo "verify-units: systemd-analyze verify complained (a setting would be ignored)" >&2
  exit 1
fi
echo "verify-units: systemd-analyze verify: all units pass, no warnings"

for svc in wspush.service wspush@1.service; do
  line=$(systemd-analyze security --offline=yes "$work/$svc" 2>&1 | grep 'Overall exposure level') || {
    echo "verify-units: systemd-analyze security gave no score for $svc" >&2
    exit 1
  }
  score=$(sed -E 's/.*: ([0-9.]+) .*/\1/' <<<"$line")
  echo "verify-units: $svc exposure $score (systemd-analyze security; at most $max allowed)"
  if ! awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }'; then
    echo "verify-units: $svc became less hardened: exposure $score > $max" >&2
    exit 1
  fi
done
