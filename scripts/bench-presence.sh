#!/usr/bin/env bash
# What keeping presence costs (issue 16), measured in one run: the server
# of this tree ("new") against the same server before presence ("base",
# built from BASE in a temporary worktree; presence cannot be switched
# off), alternating, a fresh server per scenario pinned to CPU 0 and the
# load tool to CPU 1. Scenarios: fanout (1 user x CONNS connections,
# PUSHES sequential pushes) and idle (CONNS connections, each its own
# user: RSS per connection). Then /presence?event=e with CONNS subscribers
# on the new server (`wspush-bench presence`). Prints medians and the
# new/base ratio of each figure; every JSON line is kept.
#
#   scripts/bench-presence.sh                 # 5 runs, BASE 226a5e0
#   RUNS=3 BASE_BIN=/tmp/old/wspush scripts/bench-presence.sh
#
# Environment: RUNS (5), CONNS (10000), PUSHES (200), QUERIES (500),
# BASE (226a5e0, the commit before presence), BASE_BIN (skips building
# BASE), OUT (target/bench-presence/<time>), PORT_BASE (19600).
# Only 127.0.0.1 ports are used; every server started is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
CONNS=${CONNS:-10000}
PUSHES=${PUSHES:-200}
QUERIES=${QUERIES:-500}
BASE=${BASE:-226a5e0}
OUT=${OUT:-target/bench-presence/$(date +%Y%m%d-%H%M%S)}
PORT_BASE=${PORT_BASE:-19600}

cargo build --release -q --workspace
NEW_BIN=target/release/wspush
BENCH_BIN=target/release/wspush-bench
tree=""
if [ -z "${BASE_BIN:-}" ]; then
  tree=$(mktemp -d /tmp/wspush-base.XXXXXX)
  git worktree add -q --detach "$tree" "$BASE"
  (cd "$tree" && cargo build --release -q --bin wspush)
  BASE_BIN=$tree/target/release/wspush
fi
mkdir -p "$OUT"
results="$OUT/results.jsonl"
: > "$results"

# shellcheck source=scripts/lib-server.sh
. scripts/lib-server.sh
cleanup() {
  stop_server
  if [ -n "$tree" ]; then git worktree remove --force "$tree"; fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

port=$PORT_BASE
# Runs scenario $3 against a fresh server $1 (base or new); appends its line.
scenario() {
  local which=$1 run=$2 name=$3
  shift 3
  local bin=$NEW_BIN
  [ "$which" = base ] && bin=$BASE_BIN
  port=$((port + 1))
  local log="$OUT/$which-$port.log"
  taskset -c 0 "$bin" --listen "127.0.0.1:$port" --log-level warn > "$log" 2>&1 &
  server_pid=$!
  wait_listening "bench-presence: $which" "$log"
  sleep 0.5
  local line
  if ! line=$(taskset -c 1 "$BENCH_BIN" "$name" --addr "127.0.0.1:$port" --pid "$server_pid" --json "$@" \
      2> "$OUT/$which-$port.bench.err"); then
    echo "bench-presence: $which $name (run $run) failed: $(tail -n 3 "$OUT/$which-$port.bench.err")" >&2
    [ -n "$line" ] || line="{\"scenario\":\"$name\",\"ok\":false}"
  fi
  stop_server
  echo "{\"server\":\"$which\",\"run\":$run,\"result\":$line}" >> "$results"
  echo "  $which $name: $line" | cut -c1-200
}

echo "bench-presence: $RUNS runs, base $BASE_BIN vs new $NEW_BIN -> $OUT"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq "$RUNS"); do
  echo "run $run ($(cut -d' ' -f1-3 /proc/loadavg))"
  # Alternate which goes first, so a drift in the machine's load is shared.
  order="base new"
  [ $((run % 2)) -eq 0 ] && order="new base"
  for s in $order; do
    scenario "$s" "$run" fanout --conns "$CONNS" --pushes "$PUSHES"
    scenario "$s" "$run" idle --conns "$CONNS"
  done
done
scenario new 0 presence --conns "$CONNS" --queries "$QUERIES"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]

def vals(server, scen, key):
    return [r["result"][key] for r in rows
            if r["server"] == server and r["result"].get("scenario") == scen
            and isinstance(r["result"].get(key), (int, float))]

print(f"{'figure':<28}{'base':>12}{'new':>12}{'new/base':>10}   spread base | new")
for scen, key, label, fmt in [
    ("fanout", "msgs_per_s", "fan-out messages/s", "{:.0f}"),
    ("fanout", "server_us_per_unit", "server µs per message", "{:.3f}"),
    ("fanout", "latency_p99_ms", "fan-out p99 ms", "{:.1f}"),
    ("idle", "rss_per_conn_kib", "RSS KiB per connection", "{:.3f}"),
]:
    b, n = vals("base", scen, key), vals("new", scen, key)
    if not b or not n:
        continue
    mb, mn = statistics.median(b), statistics.median(n)
    spread = lambda v: fmt.format(min(v)) + "-" + fmt.format(max(v))
    print(f"{label:<28}{fmt.format(mb):>12}{fmt.format(mn):>12}{mn / mb:>10.3f}   {spread(b)} | {spread(n)}")
b, n = vals("base", "idle", "rss_per_conn_kib"), vals("new", "idle", "rss_per_conn_kib")
if b and n:
    print(f"presence's memory per connection: {(statistics.median(n) - statistics.median(b)) * 1024:+.0f} bytes (median difference)")
for r in rows:
    if r["result"].get("scenario") == "presence":
        p = r["result"]
        print(f"/presence?event=e, {p.get('conns')} subscribers, {p.get('answer_bytes')} bytes: "
              f"p50 {p.get('event_rtt_p50_ms')} ms, p99 {p.get('event_rtt_p99_ms')} ms, max {p.get('event_rtt_max_ms')} ms; "
              f"?userId= p99 {p.get('user_rtt_p99_ms')} ms")
for r in rows:
    if not r["result"].get("ok", True):
        print(f"FAILED: {r['server']} {r['result'].get('scenario')} run {r['run']}: {r['result'].get('failures')}")
    if r["result"].get("bench_saturated"):
        print(f"load tool over 90 %: {r['server']} {r['result']['scenario']} run {r['run']}")
EOF
echo "all JSON lines: $results"
