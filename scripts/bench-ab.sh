#!/usr/bin/env bash
# Same-run comparison of wspush cases (binaries, transports, scenarios) with
# wspush-bench: each case is one server binary and one scenario with its
# flags. Every run goes through all cases (the order rotated each run, so
# no case always comes first after a build or another case's load); each
# case gets a fresh server pinned to CPU 0 (taskset -c 0), the tool pinned
# to CPU 1. Prints, per scenario, medians over the runs and the spread
# (min-max); every JSON line is kept.
#
#   scripts/bench-ab.sh CASES          # CASES: one case a line, '#' comments:
#                                      #   LABEL  BINARY  SCENARIO  FLAGS...
# e.g.
#   ws-now   target/release/wspush            fanout --conns 10000 --pushes 200
#   sse-now  target/release/wspush            fanout --conns 10000 --pushes 200 --transport sse
#   ws-old   /tmp/wspush-old/target/release/wspush fanout --conns 10000 --pushes 200
#
# Environment: RUNS (3), BENCH_BIN (target/release/wspush-bench, built if
# it is the default), OUT (target/bench-ab/<time>), PORT_BASE (19300).
# Only 127.0.0.1 ports are used; every server started is killed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

cases_file=${1:?usage: scripts/bench-ab.sh CASES-FILE}
RUNS=${RUNS:-3}
OUT=${OUT:-target/bench-ab/$(date +%Y%m%d-%H%M%S)}
PORT_BASE=${PORT_BASE:-19300}
# 10,000 sockets on each side.
ulimit -n 20000 2>/dev/null || true

if [ -z "${BENCH_BIN:-}" ]; then
  cargo build --release -q -p wspush-bench
fi
BENCH_BIN=${BENCH_BIN:-target/release/wspush-bench}
mkdir -p "$OUT"
cp "$cases_file" "$OUT/cases.txt"
results="$OUT/results.jsonl"
: > "$results"

mapfile -t cases < <(grep -v '^[[:space:]]*\(#\|$\)' "$cases_file")
[ "${#cases[@]}" -gt 0 ] || { echo "bench-ab: no cases in $cases_file" >&2; exit 1; }
for c in "${cases[@]}"; do
  read -r _ bin _ <<< "$c"
  [ -x "$bin" ] || { echo "bench-ab: $bin is not an executable" >&2; exit 1; }
done

# shellcheck source=scripts/lib-server.sh
. scripts/lib-server.sh
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

port=$PORT_BASE
run_case() {
  local run=$1 label bin scenario
  read -r label bin scenario flags <<< "$2"
  port=$((port + 1))
  local addr=127.0.0.1:$port log="$OUT/$label-$run.log"
  taskset -c 0 "$bin" --listen "$addr" --log-level warn > "$log" 2>&1 &
  server_pid=$!
  wait_listening "bench-ab: $label" "$log"
  sleep 0.5
  local load line
  load=$(cut -d' ' -f1 /proc/loadavg)
  # shellcheck disable=SC2086 # flags is a list
  if ! line=$(taskset -c 1 "$BENCH_BIN" "$scenario" --addr "$addr" --pid "$server_pid" --json $flags \
      2> "$OUT/$label-$run.bench.err"); then
    echo "bench-ab: $label (run $run) failed: $(tail -n 3 "$OUT/$label-$run.bench.err")" >&2
    [ -n "$line" ] || line="{\"scenario\":\"$scenario\",\"ok\":false}"
  fi
  stop_server
  echo "{\"label\":\"$label\",\"run\":$run,\"load1\":$load,\"result\":$line}" >> "$results"
  echo "  $label: $line" | cut -c1-200
}

echo "bench-ab: $RUNS runs of ${#cases[@]} cases -> $OUT"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/load.txt"
n=${#cases[@]}
for run in $(seq "$RUNS"); do
  echo "run $run (load $(cut -d' ' -f1-3 /proc/loadavg))"
  for k in $(seq 0 $((n - 1))); do
    run_case "$run" "${cases[$(((k + run - 1) % n))]}"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt"

python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
labels = list(dict.fromkeys(r["label"] for r in rows))
cols = {
    "fanout": [("msgs/s", "msgs_per_s", "{:.0f}"), ("p50 ms", "latency_p50_ms", "{:.1f}"),
               ("p99 ms", "latency_p99_ms", "{:.1f}"), ("max ms", "latency_max_ms", "{:.1f}"),
               ("µs/msg", "server_us_per_unit", "{:.2f}"), ("tool share", "bench_cpu_share", "{:.2f}")],
    "idle": [("KiB/conn", "rss_per_conn_kib", "{:.3f}"), ("RSS before KiB", "rss_before_kib", "{:.0f}"),
             ("RSS after KiB", "rss_after_kib", "{:.0f}"), ("connect s", "connect_register_s", "{:.2f}")],
    "pushrate": [("pushes/s", "pushes_per_s", "{:.0f}"), ("p99 ms", "push_rtt_p99_ms", "{:.2f}"),
                 ("µs/push", "server_us_per_unit", "{:.2f}")],
}
def vals(label, key):
    return [r["result"][key] for r in rows if r["label"] == label
            and isinstance(r["result"].get(key), (int, float)) and not isinstance(r["result"].get(key), bool)]
for scen, cs in cols.items():
    ls = [l for l in labels if any(r["label"] == l and r["result"].get("scenario") == scen for r in rows)]
    if not ls:
        continue
    for title, cell in (("medians", lambda v, f: f.format(statistics.median(v))),
                        ("spread (min-max)", lambda v, f: f.format(min(v)) + "-" + f.format(max(v)))):
        print(f"{scen}: {title}")
        head = ["case", "runs ok"] + [c[0] for c in cs]
        lines = [head]
        for l in ls:
            ok = sum(1 for r in rows if r["label"] == l and r["result"].get("ok", True))
            line = [l, str(ok)]
            for _, key, f in cs:
                v = vals(l, key)
                line.append(cell(v, f) if v else "-")
            lines.append(line)
        w = [max(len(x[i]) for x in lines) for i in range(len(head))]
        for x in lines:
            print("  ".join(s.rjust(w[i]) if i else s.ljust(w[i]) for i, s in enumerate(x)))
        print()
loads = [r["load1"] for r in rows]
print(f"load average (1 min) at the cases' start: median {statistics.median(loads):.2f}, {min(loads):.2f}-{max(loads):.2f}")
for r in rows:
    if not r["result"].get("ok", True):
        print(f"FAILED: {r['label']} run {r['run']}: {r['result'].get('failures')}")
EOF
echo "all JSON lines: $results"
