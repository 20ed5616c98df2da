#!/usr/bin/env bash
# Hostile clients (SPEC §12): one `wspush-bench hostile` run against a fresh
# release server pinned to CPU 0 (taskset -c 0, --log-level warn), the load
# tool on CPU 1. Prints the tool's table; with JSON=1 its JSON lines, also
# kept in $OUT/hostile.jsonl. Extra arguments go to the tool, e.g.
#
#   scripts/hostile.sh                                   # every attack, 5 s each
#   scripts/hostile.sh --seconds 2 --attacks fragments,names
#   JSON=1 scripts/hostile.sh --strict                   # exit 1 unless every verdict is ok
#
# Environment: PORT (19400), SERVER_ARGS (extra server flags), OUT
# (target/hostile/<time>), WSPUSH_BIN and BENCH_BIN (target/release/...,
# built if they are the defaults). Only 127.0.0.1 is used; the server
# started is killed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-19400}
OUT=${OUT:-target/hostile/$(date +%Y%m%d-%H%M%S)}
# http-flood holds 2,000 sockets by default; both sides need the descriptors.
ulimit -n 20000 2>/dev/null || true

if [ -z "${WSPUSH_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
  cargo build --release -q --workspace
fi
WSPUSH_BIN=${WSPUSH_BIN:-target/release/wspush}
BENCH_BIN=${BENCH_BIN:-target/release/wspush-bench}
mkdir -p "$OUT"

# shellcheck source=scripts/lib-server.sh
. scripts/lib-server.sh
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

addr=127.0.0.1:$PORT
# shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
taskset -c 0 "$WSPUSH_BIN" --listen "$addr" --log-level warn ${SERVER_ARGS:-} > "$OUT/server.log" 2>&1 &
server_pid=$!
wait_listening "hostile: server" "$OUT/server.log"
sleep 0.3

echo "hostile: server pid $server_pid on $addr, load $(cut -d' ' -f1-3 /proc/loadavg), output in $OUT" >&2
status=0
if [ "${JSON:-0}" = 1 ]; then
  taskset -c 1 "$BENCH_BIN" hostile --addr "$addr" --pid "$server_pid" --json "$@" \
    | tee "$OUT/hostile.jsonl" || status=$?
else
  taskset -c 1 "$BENCH_BIN" hostile --addr "$addr" --pid "$server_pid" "$@" \
    | tee "$OUT/hostile.txt" || status=$?
fi
kill -0 "$server_pid" 2>/dev/null || { echo "hostile: the server died; its log:" >&2; tail -n 20 "$OUT/server.log" >&2; status=1; }
echo "hostile: load after $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exit "$status"
