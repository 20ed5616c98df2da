#!/usr/bin/env bash
# The cost of per-event permissions (SPEC §9, issue 14): connect+register
# time of CONNS connections, each registering with an HS256 JWT, without an
# `events` claim and with a PATTERNS-pattern one (the matching pattern
# last), RUNS runs alternating the order, a fresh server each time, pinned
# to CPU 0 (the load tool to CPU 1). Prints the medians and their ratio
# (the target: at most 1.2). With BASE_BIN (a wspush built from before the
# change), also fan-out (1 user x CONNS connections, PUSHES pushes) of both
# binaries, alternating, to show it unchanged.
#
#   scripts/bench-access.sh
#   BASE_BIN=/tmp/base/target/release/wspush RUNS=5 scripts/bench-access.sh
#
# Environment: RUNS (3), CONNS (10000), PATTERNS (16), PUSHES (200),
# WSPUSH_BIN, BENCH_BIN (target/release/..., built if default), OUT
# (target/bench-access/<time>), PORT_BASE (19300). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
CONNS=${CONNS:-10000}
PATTERNS=${PATTERNS:-16}
PUSHES=${PUSHES:-200}
OUT=${OUT:-target/bench-access/$(date +%Y%m%d-%H%M%S)}
PORT_BASE=${PORT_BASE:-19300}
SECRET=bench-access-secret-of-32-bytes!!
if [ -z "${WSPUSH_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
  cargo build --release -q --workspace
fi
WSPUSH_BIN=${WSPUSH_BIN:-target/release/wspush}
BENCH_BIN=${BENCH_BIN:-target/release/wspush-bench}
mkdir -p "$OUT"
results="$OUT/results.jsonl"
: > "$results"

# shellcheck source=scripts/lib-server.sh
. scripts/lib-server.sh
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

port=$PORT_BASE
# run LABEL BIN AUTH SCENARIO ARGS...: a fresh server BIN (AUTH: jwt, or
# default: userId = token), one scenario, one JSON line.
run() {
  local label=$1 bin=$2 auth=$3 name=$4
  shift 4
  port=$((port + 1))
  local log="$OUT/$label-$port.log" extra=()
  [ "$auth" = jwt ] && extra=(--jwt-secret "$SECRET")
  taskset -c 0 "$bin" --listen "127.0.0.1:$port" --log-level warn --max-connections 20000 \
    "${extra[@]}" > "$log" 2>&1 &
  server_pid=$!
  wait_listening "bench-access: $label" "$log"
  sleep 0.5
  local line
  line=$(taskset -c 1 "$BENCH_BIN" "$name" --addr "127.0.0.1:$port" --pid "$server_pid" --json "$@")
  stop_server
  echo "{\"label\":\"$label\",\"result\":$line}" >> "$results"
  echo "  $label: $line" | cut -c1-200
}

echo "bench-access: $RUNS runs, $CONNS connections, $PATTERNS patterns -> $OUT"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$RUNS"); do
  echo "run $r"
  if [ $((r % 2)) -eq 1 ]; then
    run no-claim "$WSPUSH_BIN" jwt idle --conns "$CONNS" --jwt-secret "$SECRET"
    run claim "$WSPUSH_BIN" jwt idle --conns "$CONNS" --jwt-secret "$SECRET" --events "$PATTERNS"
  else
    run claim "$WSPUSH_BIN" jwt idle --conns "$CONNS" --jwt-secret "$SECRET" --events "$PATTERNS"
    run no-claim "$WSPUSH_BIN" jwt idle --conns "$CONNS" --jwt-secret "$SECRET"
  fi
  if [ -n "${BASE_BIN:-}" ]; then
    run fanout-base "$BASE_BIN" default fanout --conns "$CONNS" --pushes "$PUSHES"
    run fanout-new "$WSPUSH_BIN" default fanout --conns "$CONNS" --pushes "$PUSHES"
    run idle-base "$BASE_BIN" default idle --conns "$CONNS"
    run idle-new "$WSPUSH_BIN" default idle --conns "$CONNS"
  fi
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(label, key):
    v = [r["result"][key] for r in rows if r["label"] == label and r["result"].get(key) is not None]
    return (statistics.median(v), v) if v else (None, v)
a, av = med("no-claim", "connect_register_s")
b, bv = med("claim", "connect_register_s")
print(f"connect+register, JWT without claim : median {a:.3f} s  {av}")
print(f"connect+register, JWT with claim    : median {b:.3f} s  {bv}")
print(f"ratio (target <= 1.2)               : {b / a:.3f}")
for key in ("rss_per_conn_kib",):
    print(f"{key}: no claim {med('no-claim', key)[0]}, claim {med('claim', key)[0]}")
for label in ("fanout-base", "fanout-new", "idle-base", "idle-new"):
    rs = [r["result"] for r in rows if r["label"] == label]
    if rs:
        keys = [k for k in rs[0] if isinstance(rs[0][k], (int, float)) and k not in ("conns", "pushes")]
        print(label, {k: statistics.median([x[k] for x in rs if x.get(k) is not None]) for k in keys})
EOF
