#!/usr/bin/env bash
# Growth curve: server RSS with N idle registered connections, and fan-out
# to one user with N connections, at N = 1k, 5k, 10k and 19k (the process
# descriptor limit here is 20,000). Each figure is the median of RUNS runs,
# each on a fresh server pinned to CPU 0 (taskset -c 0), the load tool on
# CPU 1. Writes a CSV and draws it with scripts/growth.gp.
#
#   scripts/growth-curve.sh                      # -> docs/growth.csv, docs/growth.png
#   RUNS=5 SIZES="1000 10000" scripts/growth-curve.sh
#
# Environment: RUNS (3), SIZES (1000 5000 10000 19000), PUSHES (200 pushes
# per fan-out run), CSV (docs/growth.csv), PNG (docs/growth.png), OUT (raw
# JSON lines, target/growth/<time>), PORT_BASE (19300), WSPUSH_BIN and
# BENCH_BIN (target/release/..., built if they are the defaults).
# Only 127.0.0.1 ports are used; every server started is killed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
SIZES=${SIZES:-1000 5000 10000 19000}
PUSHES=${PUSHES:-200}
CSV=${CSV:-docs/growth.csv}
PNG=${PNG:-docs/growth.png}
OUT=${OUT:-target/growth/$(date +%Y%m%d-%H%M%S)}
PORT_BASE=${PORT_BASE:-19300}

# 19k connections need that many descriptors in the server and the tool.
ulimit -n 20000 2>/dev/null || true
need=$(( $(echo "$SIZES" | tr ' ' '\n' | sort -n | tail -1) + 100 ))
if [ "$(ulimit -n)" -lt "$need" ]; then
  echo "growth-curve: ulimit -n is $(ulimit -n), $need needed for SIZES=$SIZES" >&2
  exit 1
fi

if [ -z "${WSPUSH_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
  cargo build --release -q --workspace
fi
WSPUSH_BIN=${WSPUSH_BIN:-target/release/wspush}
BENCH_BIN=${BENCH_BIN:-target/release/wspush-bench}
mkdir -p "$OUT" "$(dirname "$CSV")" "$(dirname "$PNG")"
results="$OUT/results.jsonl"
: > "$results"

# shellcheck source=scripts/lib-server.sh
. scripts/lib-server.sh
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

port=$PORT_BASE
# Starts a fresh server on CPU 0, sized for $1 connections; sets server_pid, addr.
start_server() {
  port=$((port + 1))
  addr=127.0.0.1:$port
  local log="$OUT/server-$port.log"
  taskset -c 0 "$WSPUSH_BIN" --listen "$addr" --log-level warn \
    --max-connections $(( $1 + 100 )) > "$log" 2>&1 &
  server_pid=$!
  wait_listening "growth-curve: server" "$log"
  sleep 0.5
}

# Runs one scenario on a fresh server; appends {"conns":N,"result":...}.
scenario() {
  local n=$1 name=$2
  shift 2
  start_server "$n"
  local line
  if ! line=$(taskset -c 1 "$BENCH_BIN" "$name" --addr "$addr" --pid "$server_pid" --json "$@" \
      2> "$OUT/bench-$port.err"); then
    echo "growth-curve: $name with $n connections failed: $(tail -n 3 "$OUT/bench-$port.err")" >&2
    exit 1
  fi
  stop_server
  echo "{\"conns\":$n,\"result\":$line}" >> "$results"
  echo "  $name $n: $line" | cut -c1-200
}

echo "growth-curve: $RUNS runs of $SIZES -> $OUT"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq "$RUNS"); do
  echo "run $run ($(cut -d' ' -f1-3 /proc/loadavg))"
  for n in $SIZES; do
    scenario "$n" idle --conns "$n"
    scenario "$n" fanout --conns "$n" --pushes "$PUSHES"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" "$CSV" "$SIZES" <<'EOF'
import json, statistics, sys
results, csv, sizes = sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3].split()]
rows = [json.loads(l) for l in open(results)]

def med(n, scenario, key):
    vals = [r["result"][key] for r in rows
            if r["conns"] == n and r["result"].get("scenario") == scenario
            and isinstance(r["result"].get(key), (int, float))]
    return statistics.median(vals) if vals else float("nan")

cols = [
    ("conns", None, None, "{}"),
    ("rss_mib", "idle", "rss_after_kib", "{:.2f}"),
    ("rss_per_conn_kib", "idle", "rss_per_conn_kib", "{:.3f}"),
    ("connect_register_s", "idle", "connect_register_s", "{:.2f}"),
    ("fanout_msgs_per_s", "fanout", "msgs_per_s", "{:.0f}"),
    ("fanout_p50_ms", "fanout", "latency_p50_ms", "{:.1f}"),
    ("fanout_p99_ms", "fanout", "latency_p99_ms", "{:.1f}"),
    ("server_us_per_msg", "fanout", "server_us_per_unit", "{:.2f}"),
]
with open(csv, "w") as f:
    f.write(",".join(c[0] for c in cols) + "\n")
    for n in sizes:
        vals = []
        for name, scen, key, fmt in cols:
            if scen is None:
                vals.append(str(n))
            else:
                v = med(n, scen, key)
                vals.append(fmt.format(v / 1024 if name == "rss_mib" else v))
        f.write(",".join(vals) + "\n")
print(open(csv).read(), end="")
bad = [r for r in rows if r["result"].get("ok") is False]
for r in bad:
    print(f"FAILED: {r['conns']} {r['result'].get('scenario')}: {r['result'].get('failures')}")
sat = [r for r in rows if r["result"].get("bench_saturated")]
for r in sat:
    print(f"load tool over 90 %: {r['conns']} {r['result']['scenario']}")
EOF

if command -v gnuplot >/dev/null; then
  gnuplot -e "csv='$CSV'; png='$PNG'" scripts/growth.gp
  echo "plot: $PNG"
else
  echo "growth-curve: gnuplot not found; $CSV written, no plot" >&2
fi
echo "all JSON lines: $results"
