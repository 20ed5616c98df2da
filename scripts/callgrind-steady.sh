#!/usr/bin/env bash
# Server instructions per push (or per delivered fan-out message) in steady
# state, counted by callgrind: stable on a noisy machine where CPU times are not.
#
# The server runs under valgrind --tool=callgrind on CPU 0, wspush-bench on
# CPU 1. After WARM seconds the counters are zeroed and the server's counter
# (wspush_pushes_total, or wspush_messages_delivered_total for fanout) is read
# from /metrics; WINDOW seconds later the counters are dumped and the counter
# read again. Prints instructions per unit; the dump (annotate it with
# callgrind_annotate) is kept in OUT.
#
#   scripts/callgrind-steady.sh                 # pushrate, 1000 users, 4 HTTP connections
#   scripts/callgrind-steady.sh fanout          # one user with 100 connections
#
# Environment: WSPUSH_BIN (an unstripped build, so the dump has names: built
# into target/callgrind with strip off and line tables if unset), WARM and
# WINDOW (8 and 10 s; 4 and 8 for fanout), PORT (19400), OUT
# (target/callgrind-<time>).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-pushrate}
PORT=${PORT:-19400}
OUT=${OUT:-target/callgrind-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

if [ -z "${WSPUSH_BIN:-}" ]; then
  CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
    cargo build --release -q --bin wspush --target-dir target/callgrind
  WSPUSH_BIN=target/callgrind/release/wspush
fi
cargo build --release -q -p wspush-bench
BENCH_BIN=target/release/wspush-bench

case "$MODE" in
  pushrate)
    WARM=${WARM:-8}
    WINDOW=${WINDOW:-10}
    counter=wspush_pushes_total
    load=(pushrate --users 1000 --http-conns 4 --seconds $((WARM + WINDOW + 5)))
    ;;
  fanout)
    # 1,000,000 messages take about 13 s under callgrind.
    WARM=${WARM:-4}
    WINDOW=${WINDOW:-8}
    counter=wspush_messages_delivered_total
    load=(fanout --conns 100 --pushes 10000)
    ;;
  *) echo "usage: $0 [pushrate|fanout]" >&2; exit 2 ;;
esac

taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.%p" \
  "$WSPUSH_BIN" --listen "127.0.0.1:$PORT" --log-level warn > "$OUT/server.log" 2>&1 &
vg=$!
trap 'kill "$vg" 2>/dev/null || true' EXIT
for _ in $(seq 200); do grep -q "listening on" "$OUT/server.log" && break; sleep 0.1; done
grep -q "listening on" "$OUT/server.log" || { echo "server never listened" >&2; exit 1; }

# The value of metric $1, summed over its labels (wspush_messages_delivered_total
# is split by transport).
metric() {
  curl -s "127.0.0.1:$PORT/metrics" |
    awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { print s + 0 }'
}

taskset -c 1 "$BENCH_BIN" "${load[@]}" --addr "127.0.0.1:$PORT" --json > "$OUT/bench.json" &
bench=$!
sleep "$WARM"
callgrind_control -z "$vg" > /dev/null 2>&1
before=$(metric "$counter")
sleep "$WINDOW"
callgrind_control -d "$vg" > /dev/null 2>&1
after=$(metric "$counter")
wait "$bench" || { echo "wspush-bench failed: $(cat "$OUT/bench.json")" >&2; exit 1; }
kill "$vg"; wait "$vg" 2>/dev/null || true
trap - EXIT

dump=$(ls -t "$OUT"/callgrind.out.*.1 | head -1)
instructions=$(awk '/^summary:/ { print $2 }' "$dump")
units=$((after - before))
echo "$MODE: $units units, $instructions instructions, $((instructions / units)) per unit"
echo "annotate: callgrind_annotate $dump"
