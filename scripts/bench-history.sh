#!/usr/bin/env bash
# What --history (SPEC §8) costs and holds, with wspush-bench, each run on a
# fresh server pinned to CPU 0 (taskset -c 0), the tool on CPU 1:
#   fanout:   1 user x CONNS connections, PUSHES sequential pushes, with and
#             without --history 100, alternating in the same run (the order
#             flips every run); messages/s and latency p99.
#   resume:   CLIENTS clients reconnect at once, each replayed MISSED
#             broadcasts it missed (--history MISSED): time to caught up,
#             server RSS before and at peak.
#   histfill: FILL pushes of FILL_SIZE bytes to FILL_USERS users against
#             --history-bytes CAP: server RSS growth as a share of the cap.
# Prints medians over RUNS, and keeps every JSON line.
#
#   scripts/bench-history.sh                 # RUNS=3
#   RUNS=5 CONNS=1000 scripts/bench-history.sh
#
# Environment: RUNS (3), CONNS (10000), PUSHES (200), CLIENTS (1000),
# MISSED (1000), FILL (1000000), FILL_SIZE (100), FILL_USERS (1000),
# CAP (67108864), OUT (target/bench-history/<time>), PORT (19300).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
CONNS=${CONNS:-10000}
PUSHES=${PUSHES:-200}
CLIENTS=${CLIENTS:-1000}
MISSED=${MISSED:-1000}
FILL=${FILL:-1000000}
FILL_SIZE=${FILL_SIZE:-100}
FILL_USERS=${FILL_USERS:-1000}
CAP=${CAP:-67108864}
OUT=${OUT:-target/bench-history/$(date +%Y%m%d-%H%M%S)}
PORT=${PORT:-19300}

cargo build --release -q --workspace
WSPUSH=target/release/wspush
BENCH=target/release/wspush-bench
mkdir -p "$OUT"
results="$OUT/results.jsonl"
: > "$results"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT

# start_server ARGS...: a fresh server on CPU 0, waited for.
start_server() {
  taskset -c 0 "$WSPUSH" --listen "127.0.0.1:$PORT" --log-level warn "$@" >/dev/null &
  server_pid=$!
  for _ in $(seq 100); do
    curl -sf "localhost:$PORT/healthz" >/dev/null && return 0
    sleep 0.05
  done
  echo "bench-history: the server did not start" >&2
  return 1
}

# bench LABEL SCENARIO ARGS...: one JSON line, tagged, into $results.
bench() {
  local label=$1
  shift
  local line
  line=$(taskset -c 1 "$BENCH" "$@" --addr "127.0.0.1:$PORT" --pid "$server_pid" --json) || {
    echo "bench-history: $label failed: $line" >&2
    return 1
  }
  echo "{\"label\":\"$label\",${line#\{}" >> "$results"
  echo "$label: $line"
}

for run in $(seq "$RUNS"); do
  if [ $((run % 2)) -eq 1 ]; then order="off on"; else order="on off"; fi
  for mode in $order; do
    if [ "$mode" = on ]; then start_server --history 100; else start_server; fi
    bench "fanout-$mode" fanout --conns "$CONNS" --pushes "$PUSHES"
    stop_server
  done
  start_server --history "$MISSED"
  bench resume resume --clients "$CLIENTS" --missed "$MISSED"
  stop_server
  start_server --history 1000000 --history-bytes "$CAP"
  bench histfill histfill --pushes "$FILL" --size "$FILL_SIZE" --users "$FILL_USERS"
  stop_server
done

python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(label, key):
    v = [r[key] for r in rows if r["label"] == label and r.get(key) is not None]
    return (statistics.median(v), min(v), max(v)) if v else (float("nan"),) * 3
def line(what, label, key, fmt):
    m, lo, hi = med(label, key)
    print(f"{what:<44} {fmt.format(m):>12}   ({fmt.format(lo)} - {fmt.format(hi)})")
print(f"medians of {len([r for r in rows if r['label'] == 'resume'])} runs (min - max)")
line("fanout msgs/s, no history", "fanout-off", "msgs_per_s", "{:.0f}")
line("fanout msgs/s, --history 100", "fanout-on", "msgs_per_s", "{:.0f}")
line("fanout latency p99 ms, no history", "fanout-off", "latency_p99_ms", "{:.2f}")
line("fanout latency p99 ms, --history 100", "fanout-on", "latency_p99_ms", "{:.2f}")
line("resume: caught up p50 ms", "resume", "caught_up_p50_ms", "{:.0f}")
line("resume: caught up max ms", "resume", "caught_up_max_ms", "{:.0f}")
line("resume: server RSS before KiB", "resume", "rss_before_kib", "{:.0f}")
line("resume: server RSS peak KiB", "resume", "rss_peak_kib", "{:.0f}")
line("resume: server CPU us per replayed message", "resume", "server_us_per_unit", "{:.2f}")
line("histfill: RSS growth / --history-bytes", "histfill", "growth_over_cap", "{:.3f}")
EOF
echo "JSON lines: $results"
