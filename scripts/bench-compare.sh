#!/usr/bin/env bash
# Side-by-side run of wspush and the peer servers (scripts/bench-peers.sh
# prepares them) with wspush-bench: for each run, for each server, a fresh
# server per scenario, pinned to CPU 0 (taskset -c 0), the load tool pinned
# to CPU 1. Scenarios: idle (10k connections, each its own user), fanout
# (1 user x 10k connections, 200 sequential pushes), pushrate (1k users,
# 4 keep-alive push connections, 10 s). Prints one table of medians over the
# runs, then the spread (min-max) of each figure; every JSON line is kept.
#
#   scripts/bench-peers.sh && scripts/bench-compare.sh          # 3 runs
#   RUNS=5 SERVERS="wspush raw-floor" scripts/bench-compare.sh
#   SERVERS="wspush wspush-old=/tmp/old/target/release/wspush raw-floor" scripts/bench-compare.sh
#
# A server written LABEL=PATH is a wspush binary at PATH (an older commit
# built elsewhere, say), shown as LABEL, run with the same flags as wspush.
#
# Environment: RUNS (3), SERVERS (wspush go-gorilla node-ws rust-axum
# raw-floor), CONNS (10000), PUSHES (200), USERS (1000), HTTP_CONNS (4),
# SECONDS_PUSH (10), WSPUSH_BIN (target/release/wspush, built if it is the
# default), BENCH_BIN (target/release/wspush-bench, likewise), PEERS_DIR
# (/tmp/peers), OUT (target/bench-compare/<time>), PORT_BASE (19100).
# Only 127.0.0.1 ports are used; every server started is killed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
SERVERS=${SERVERS:-wspush go-gorilla node-ws rust-axum raw-floor}
CONNS=${CONNS:-10000}
PUSHES=${PUSHES:-200}
USERS=${USERS:-1000}
HTTP_CONNS=${HTTP_CONNS:-4}
SECONDS_PUSH=${SECONDS_PUSH:-10}
PEERS_DIR=${PEERS_DIR:-/tmp/peers}
OUT=${OUT:-target/bench-compare/$(date +%Y%m%d-%H%M%S)}
PORT_BASE=${PORT_BASE:-19100}

if [ -z "${WSPUSH_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
  cargo build --release -q --workspace
fi
WSPUSH_BIN=${WSPUSH_BIN:-target/release/wspush}
BENCH_BIN=${BENCH_BIN:-target/release/wspush-bench}
mkdir -p "$OUT"
results="$OUT/results.jsonl"
: > "$results"

# The command line of a server listening on 127.0.0.1:PORT.
server_cmd() {
  case "$1" in
    *=*) echo "${1#*=} --listen 127.0.0.1:$2 --log-level warn" ;;
    wspush) echo "$WSPUSH_BIN --listen 127.0.0.1:$2 --log-level warn" ;;
    go-gorilla) echo "$PEERS_DIR/go-gorilla/go-gorilla $2" ;;
    node-ws) echo "node $PEERS_DIR/node-ws/server.js $2" ;;
    rust-axum) echo "$PEERS_DIR/rust-axum/target/release/rust-axum-peer $2" ;;
    raw-floor) echo "$PEERS_DIR/raw-floor/target/release/raw-floor $2" ;;
    *) echo "bench-compare: unknown server $1" >&2; return 1 ;;
  esac
}

# The file whose stripped size is the server's binary size (none for node).
server_bin() {
  case "$1" in
    *=*) echo "${1#*=}" ;;
    wspush) echo "$WSPUSH_BIN" ;;
    go-gorilla) echo "$PEERS_DIR/go-gorilla/go-gorilla" ;;
    rust-axum) echo "$PEERS_DIR/rust-axum/target/release/rust-axum-peer" ;;
    raw-floor) echo "$PEERS_DIR/raw-floor/target/release/raw-floor" ;;
    *) echo "" ;;
  esac
}

for s in $SERVERS; do
  cmd=$(server_cmd "$s" 1)
  [ -x "${cmd%% *}" ] || command -v "${cmd%% *}" >/dev/null || {
    echo "bench-compare: $s is not built (${cmd%% *}); run scripts/bench-peers.sh" >&2
    exit 1
  }
done

# shellcheck source=scripts/lib-server.sh
. scripts/lib-server.sh
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

port=$PORT_BASE
# Starts server $1 pinned to CPU 0 on a new port; sets server_pid, addr and
# rss_start (KiB, half a second after "listening on").
start_server() {
  port=$((port + 1))
  addr=127.0.0.1:$port
  local log="$OUT/${1%%=*}-$port.log"
  # shellcheck disable=SC2046
  taskset -c 0 $(server_cmd "$1" "$port") > "$log" 2>&1 &
  server_pid=$!
  wait_listening "bench-compare: $1" "$log"
  sleep 0.5
  rss_start=$(awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status")
}

# Runs one scenario against a fresh server $1; appends its JSON line.
scenario() {
  local server=$1 run=$2 name=$3
  shift 3
  start_server "$server"
  local line
  if ! line=$(taskset -c 1 "$BENCH_BIN" "$name" --addr "$addr" --pid "$server_pid" --json "$@" \
      2> "$OUT/${server%%=*}-$port.bench.err"); then
    echo "bench-compare: ${server%%=*} $name (run $run) failed: $(tail -n 3 "$OUT/${server%%=*}-$port.bench.err")" >&2
    [ -n "$line" ] || line="{\"scenario\":\"$name\",\"ok\":false}"
  fi
  stop_server
  echo "{\"server\":\"${server%%=*}\",\"run\":$run,\"rss_start_kib\":$rss_start,\"result\":$line}" >> "$results"
  echo "  ${server%%=*} $name: $line" | cut -c1-220
}

echo "bench-compare: $RUNS runs of $SERVERS -> $OUT"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/load.txt"
for run in $(seq "$RUNS"); do
  echo "run $run ($(cut -d' ' -f1-3 /proc/loadavg))"
  for s in $SERVERS; do
    scenario "$s" "$run" idle --conns "$CONNS" --ack none
    scenario "$s" "$run" fanout --conns "$CONNS" --pushes "$PUSHES"
    scenario "$s" "$run" pushrate --users "$USERS" --http-conns "$HTTP_CONNS" --seconds "$SECONDS_PUSH"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt"

sizes="$OUT/sizes.txt"
: > "$sizes"
for s in $SERVERS; do
  bin=$(server_bin "$s")
  if [ -n "$bin" ]; then
    strip -o "$OUT/${s%%=*}.stripped" "$bin" 2>/dev/null || cp "$bin" "$OUT/${s%%=*}.stripped"
    echo "${s%%=*} $(stat -c %s "$OUT/${s%%=*}.stripped")" >> "$sizes"
    rm -f "$OUT/${s%%=*}.stripped"
  fi
done

labels=""
for s in $SERVERS; do labels="$labels ${s%%=*}"; done
python3 - "$results" "$sizes" "$labels" <<'EOF'
import json, statistics, sys
results, sizes, servers = sys.argv[1], sys.argv[2], sys.argv[3].split()
rows = [json.loads(l) for l in open(results)]
size = dict(l.split() for l in open(sizes))

def values(server, scen, key, src="result"):
    out = []
    for r in rows:
        if r["server"] != server or r["result"].get("scenario") != scen:
            continue
        v = r[src] if src == "top" else r["result"].get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(v)
    return out

def rss_start(server):
    return [r["rss_start_kib"] for r in rows if r["server"] == server]

cols = [
    ("RSS start MiB", lambda s: [v / 1024 for v in rss_start(s)], "{:.1f}"),
    ("KiB/idle conn", lambda s: values(s, "idle", "rss_per_conn_kib"), "{:.2f}"),
    ("connect 10k s", lambda s: values(s, "idle", "connect_register_s"), "{:.2f}"),
    ("fanout msg/s", lambda s: values(s, "fanout", "msgs_per_s"), "{:.0f}"),
    ("fan p50 ms", lambda s: values(s, "fanout", "latency_p50_ms"), "{:.1f}"),
    ("fan p99 ms", lambda s: values(s, "fanout", "latency_p99_ms"), "{:.1f}"),
    ("fan max ms", lambda s: values(s, "fanout", "latency_max_ms"), "{:.1f}"),
    ("µs/msg", lambda s: values(s, "fanout", "server_us_per_unit"), "{:.2f}"),
    ("pushes/s", lambda s: values(s, "pushrate", "pushes_per_s"), "{:.0f}"),
    ("push p99 ms", lambda s: values(s, "pushrate", "push_rtt_p99_ms"), "{:.2f}"),
    ("µs/push", lambda s: values(s, "pushrate", "server_us_per_unit"), "{:.2f}"),
]

def table(title, fmt_cell):
    print(title)
    head = ["server", "stripped MiB"] + [c[0] for c in cols]
    lines = [head]
    for s in servers:
        line = [s, "{:.2f}".format(int(size[s]) / 1048576) if s in size else "-"]
        for _, get, fmt in cols:
            v = get(s)
            line.append(fmt_cell(v, fmt) if v else "-")
        lines.append(line)
    w = [max(len(l[i]) for l in lines) for i in range(len(head))]
    for l in lines:
        print("  ".join(x.rjust(w[i]) if i else x.ljust(w[i]) for i, x in enumerate(l)))
    print()

table("medians", lambda v, f: f.format(statistics.median(v)))
table("spread (min-max over the runs)", lambda v, f: f.format(min(v)) + "-" + f.format(max(v)))

bad = [r for r in rows if not r["result"].get("ok", True)]
sat = [r for r in rows if r["result"].get("bench_saturated")]
for r in bad:
    print(f"FAILED: {r['server']} {r['result'].get('scenario')} run {r['run']}: {r['result'].get('failures')}")
for r in sat:
    share = r["result"].get("bench_cpu_share")
    print(f"load tool over 90 %: {r['server']} {r['result']['scenario']} run {r['run']} ({share})")
shares = [r["result"].get("bench_cpu_share", 0) for r in rows if r["result"].get("scenario") in ("fanout", "pushrate")]
if shares:
    print(f"load tool CPU share in fanout/pushrate: max {max(shares):.2f} of one core")
EOF
echo "all JSON lines: $results"
