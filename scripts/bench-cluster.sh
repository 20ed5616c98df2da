#!/usr/bin/env bash
# Cross-node fan-out against single-node fan-out, in one run (issue 6).
#
# Each run, alternating: (1) single: one wspush without Redis, all CONNS
# clients on it; (2) cluster: two wspush nodes joined by a fresh
# redis-server, half the clients on each, every push posted to the first
# node and delivered through Redis (wspush-bench fanout --also). Both
# check every message (exactly once, in order). Servers on CPU 0, Redis and
# the load tool on CPU 1 (two cores: the cluster's two nodes share one,
# so the comparison is "same CPU budget, one extra hop"). Prints medians of
# msgs/s and latency p50/p99, and the latency the Redis hop adds.
#
#   scripts/bench-cluster.sh                 # 3 runs, 10k clients, 200 pushes
#   RUNS=5 CONNS=2000 scripts/bench-cluster.sh
#
# Environment: RUNS (3), CONNS (10000), PUSHES (200), OUT
# (target/bench-cluster/<time>), PORT_BASE (19300). Loopback only; every
# process started is killed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
CONNS=${CONNS:-10000}
PUSHES=${PUSHES:-200}
OUT=${OUT:-target/bench-cluster/$(date +%Y%m%d-%H%M%S)}
PORT_BASE=${PORT_BASE:-19300}

command -v redis-server >/dev/null || { echo "bench-cluster: needs redis-server (apt-get install redis-server)" >&2; exit 1; }
cargo build --release -q --workspace
WSPUSH_BIN=target/release/wspush
BENCH_BIN=target/release/wspush-bench
mkdir -p "$OUT"
results="$OUT/results.jsonl"
: > "$results"

pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT
trap 'stop_all; exit 130' INT TERM

port=$PORT_BASE
# Starts a wspush node on CPU 0 with extra flags; sets `addr`.
start_node() {
  port=$((port + 1))
  addr=127.0.0.1:$port
  local log="$OUT/node-$port.log"
  taskset -c 0 "$WSPUSH_BIN" --listen "$addr" --log-level warn "$@" > "$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q "listening on" "$log" 2>/dev/null && break
    sleep 0.05
  done
}

wait_healthy() {
  for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$1/healthz")" = 200 ] && return 0
    sleep 0.05
  done
  echo "bench-cluster: $1 never reported redis up" >&2
  exit 1
}

record() {
  echo "{\"variant\":\"$1\",\"run\":$2,\"result\":$3}" >> "$results"
  echo "  $1: $3" | cut -c1-200
}

echo "bench-cluster: $RUNS runs, $CONNS clients, $PUSHES pushes -> $OUT"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/load.txt"
for run in $(seq "$RUNS"); do
  echo "run $run ($(cut -d' ' -f1-3 /proc/loadavg))"

  start_node
  single=$addr
  line=$(taskset -c 1 "$BENCH_BIN" fanout --addr "$single" --conns "$CONNS" --pushes "$PUSHES" --json \
    2> "$OUT/single-$run.err") || line=${line:-'{"ok":false}'}
  record single "$run" "$line"
  stop_all

  port=$((port + 1))
  rport=$port
  taskset -c 1 redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no > "$OUT/redis-$run.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    [ "$(printf 'PING\r\n' | timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$rport; cat >&3; head -c5 <&3" 2>/dev/null)" = "+PONG" ] && break
    sleep 0.05
  done
  start_node --redis "redis://127.0.0.1:$rport"
  a=$addr
  start_node --redis "redis://127.0.0.1:$rport"
  b=$addr
  wait_healthy "$a"
  wait_healthy "$b"
  line=$(taskset -c 1 "$BENCH_BIN" fanout --addr "$a" --also "$b" --conns "$CONNS" --pushes "$PUSHES" --json \
    2> "$OUT/cluster-$run.err") || line=${line:-'{"ok":false}'}
  record cluster "$run" "$line"
  stop_all
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt"

python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def vals(variant, key):
    return [r["result"][key] for r in rows
            if r["variant"] == variant and isinstance(r["result"].get(key), (int, float))]
keys = [("msgs/s", "msgs_per_s", "{:.0f}"), ("p50 ms", "latency_p50_ms", "{:.2f}"),
        ("p99 ms", "latency_p99_ms", "{:.2f}"), ("max ms", "latency_max_ms", "{:.2f}"),
        ("push rtt p50 ms", "push_rtt_p50_ms", "{:.3f}")]
print(f"\n{'variant':10}" + "".join(f"{k[0]:>22}" for k in keys))
med = {}
for v in ["single", "cluster"]:
    cells = []
    for name, key, fmt in keys:
        xs = vals(v, key)
        med[(v, key)] = statistics.median(xs) if xs else None
        cells.append((fmt.format(med[(v, key)]) + f" ({fmt.format(min(xs))}-{fmt.format(max(xs))})") if xs else "-")
    print(f"{v:10}" + "".join(f"{c:>22}" for c in cells))
for q in ["latency_p50_ms", "latency_p99_ms"]:
    s, c = med.get(("single", q)), med.get(("cluster", q))
    if s is not None and c is not None:
        print(f"added by the Redis hop, {q[8:11]}: {c - s:+.2f} ms")
s, c = med.get(("single", "msgs_per_s")), med.get(("cluster", "msgs_per_s"))
if s and c:
    print(f"cluster/single msgs/s: {c / s:.2f}")
bad = [r for r in rows if not r["result"].get("ok", False)]
for r in bad:
    print(f"FAILED: {r['variant']} run {r['run']}: {r['result'].get('failures')}")
sys.exit(1 if bad else 0)
EOF
