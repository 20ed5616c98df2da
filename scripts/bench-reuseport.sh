#!/usr/bin/env bash
# What `--reuse-port` gains on this machine (issue 17): push rate and
# fan-out against one shared port, in one run, three variants alternating
# (the order rotated each run), a fresh Redis and fresh servers per case:
#
#   one       one wspush, no Redis (the reference)
#   redis1    one wspush with --redis (what a node costs once it is clustered)
#   reuse2    two wspush with --reuse-port --redis on the same port; the
#             kernel spreads the clients and the push connections over both
#
# pushrate: USERS users, HTTP_CONNS keep-alive push connections, SECONDS s.
# fanout: 1 user x CONNS connections x PUSHES sequential pushes. Every
# message is checked by wspush-bench (with Redis, `--nodes N`: each push
# must answer "message published to N nodes").
#
# Nothing is pinned: the machine has two cores and the load tool needs about
# one of them, so pinning one server per core would leave the tool none, and
# pinning the tool would give one server a core less than the other. Every
# process floats over both cores in every variant, and the CPU each used
# over the tool's run (servers, Redis, tool; /proc/PID/stat) is recorded,
# as is how many descriptors each server held (the kernel's split).
#
#   scripts/bench-reuseport.sh                   # 3 runs of each
#   RUNS=1 CONNS=2000 SECONDS_=2 scripts/bench-reuseport.sh
#
# Environment: RUNS (3), USERS (1000), HTTP_CONNS (4), SECONDS_ (10), CONNS
# (10000), PUSHES (200), VARIANTS ("one redis1 reuse2"), SCENARIOS
# ("pushrate fanout"), PORT_BASE (19700),
# OUT (target/bench-reuseport/<time>). Loopback only; every process started
# is killed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
USERS=${USERS:-1000}
HTTP_CONNS=${HTTP_CONNS:-4}
SECS=${SECONDS_:-10}
CONNS=${CONNS:-10000}
PUSHES=${PUSHES:-200}
read -r -a VARIANTS <<< "${VARIANTS:-one redis1 reuse2}"
SCENARIOS=${SCENARIOS:-pushrate fanout}
PORT_BASE=${PORT_BASE:-19700}
OUT=${OUT:-target/bench-reuseport/$(date +%Y%m%d-%H%M%S)}
ulimit -n 20000 2>/dev/null || true

command -v redis-server >/dev/null || { echo "bench-reuseport: needs redis-server" >&2; exit 1; }
cargo build --release -q --workspace
WSPUSH_BIN=target/release/wspush
BENCH_BIN=target/release/wspush-bench
mkdir -p "$OUT"
results="$OUT/results.jsonl"
: > "$results"

pids=()
servers=()
redis_pid=""
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  servers=()
  redis_pid=""
}
trap stop_all EXIT
trap 'stop_all; exit 130' INT TERM

# User + system CPU seconds of a process (USER_HZ = 100).
cpu_s() {
  awk '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / 100 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

port=$PORT_BASE
# Starts the variant's Redis (if any) and servers on a new port; sets addr.
start_variant() {
  local variant=$1 tag=$2
  port=$((port + 2))
  addr=127.0.0.1:$port
  local flags=(--listen "$addr" --log-level warn)
  if [ "$variant" != one ]; then
    local rport=$((port + 1))
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no > "$OUT/redis-$tag.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    for _ in $(seq 100); do
      [ "$(printf 'PING\r\n' | timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$rport; cat >&3; head -c5 <&3" 2>/dev/null)" = "+PONG" ] && break
      sleep 0.05
    done
    flags+=(--redis "redis://127.0.0.1:$rport")
  fi
  local n=1
  [ "$variant" = reuse2 ] && { n=2; flags+=(--reuse-port); }
  for i in $(seq "$n"); do
    "$WSPUSH_BIN" "${flags[@]}" > "$OUT/server-$tag-$i.log" 2>&1 &
    pids+=($!)
    servers+=($!)
    for _ in $(seq 100); do
      grep -q "listening on" "$OUT/server-$tag-$i.log" 2>/dev/null && break
      kill -0 "$!" 2>/dev/null || { echo "bench-reuseport: server died:" >&2; cat "$OUT/server-$tag-$i.log" >&2; exit 1; }
      sleep 0.05
    done
  done
  # Each node answers /healthz 200 once its Redis links are up; a request
  # reaches either, so ask until several in a row said ok.
  local ok=0
  for _ in $(seq 200); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/healthz")" = 200 ]; then
      ok=$((ok + 1)); [ "$ok" -ge 8 ] && break
    else
      ok=0
    fi
    sleep 0.05
  done
  [ "$ok" -ge 8 ] || { echo "bench-reuseport: $addr never healthy" >&2; exit 1; }
  sleep 0.3
}

# Runs the tool (unpinned) against the variant; records its JSON line with
# the CPU every process used and the servers' peak descriptor counts.
measure() {
  local variant=$1 run=$2 scenario=$3
  shift 3
  local nodes=()
  case $variant in redis1) nodes=(--nodes 1) ;; reuse2) nodes=(--nodes 2) ;; esac
  local tag="$scenario-$variant-$run"
  start_variant "$variant" "$tag"
  local before=() p
  for p in "${servers[@]}"; do before+=("$(cpu_s "$p")"); done
  local redis0=0
  [ -n "$redis_pid" ] && redis0=$(cpu_s "$redis_pid")
  # Peak descriptors per server, sampled twice a second.
  (
    declare -A peak
    while :; do
      for p in "${servers[@]}"; do
        c=$(ls "/proc/$p/fd" 2>/dev/null | wc -l)
        [ "$c" -gt "${peak[$p]:-0}" ] && peak[$p]=$c
      done
      for p in "${servers[@]}"; do printf '%s ' "${peak[$p]:-0}"; done > "$OUT/fds-$tag"
      sleep 0.5
    done
  ) &
  local sampler=$!
  local load
  load=$(cut -d' ' -f1 /proc/loadavg)
  local line
  line=$("$BENCH_BIN" "$scenario" --addr "$addr" "${nodes[@]}" "$@" --json 2> "$OUT/$tag.err") || line=${line:-'{"ok":false}'}
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  local server_cpu=0 i=0
  for p in "${servers[@]}"; do
    server_cpu=$(awk -v a="$server_cpu" -v b="$(cpu_s "$p")" -v c="${before[$i]}" 'BEGIN { printf "%.2f", a + b - c }')
    i=$((i + 1))
  done
  local redis_cpu=0
  [ -n "$redis_pid" ] && redis_cpu=$(awk -v b="$(cpu_s "$redis_pid")" -v a="$redis0" 'BEGIN { printf "%.2f", b - a }')
  local fds
  fds=$(tr -s ' ' ',' < "$OUT/fds-$tag" | sed 's/,$//')
  echo "{\"variant\":\"$variant\",\"scenario\":\"$scenario\",\"run\":$run,\"load\":$load,\"servers_cpu_s\":$server_cpu,\"redis_cpu_s\":$redis_cpu,\"fds\":[$fds],\"result\":$line}" >> "$results"
  echo "  $scenario $variant (load $load): servers ${server_cpu}s redis ${redis_cpu}s fds [$fds] $(echo "$line" | cut -c1-160)"
  stop_all
}

echo "bench-reuseport: $RUNS runs of ${VARIANTS[*]}; pushrate $USERS users x $HTTP_CONNS conns x ${SECS}s; fanout $CONNS x $PUSHES -> $OUT"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/load.txt"
nv=${#VARIANTS[@]}
for run in $(seq "$RUNS"); do
  echo "run $run ($(cut -d' ' -f1-3 /proc/loadavg))"
  for scenario in $SCENARIOS; do
    for k in $(seq 0 $((nv - 1))); do
      v=${VARIANTS[$(((k + run - 1) % nv))]}
      case $scenario in
        pushrate) measure "$v" "$run" pushrate --users "$USERS" --http-conns "$HTTP_CONNS" --seconds "$SECS" ;;
        fanout) measure "$v" "$run" fanout --conns "$CONNS" --pushes "$PUSHES" ;;
        *) echo "bench-reuseport: unknown scenario $scenario" >&2; exit 1 ;;
      esac
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt"

python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(xs):
    return statistics.median(xs) if xs else None
def cell(xs, fmt):
    if not xs:
        return "-"
    return fmt.format(med(xs)) + " (" + fmt.format(min(xs)) + "-" + fmt.format(max(xs)) + ")"
bad = [r for r in rows if not r["result"].get("ok", False)]
variants = []
for r in rows:
    if r["variant"] not in variants:
        variants.append(r["variant"])
for scenario, rate, unit in [("pushrate", "pushes_per_s", "push"), ("fanout", "msgs_per_s", "msg")]:
    if not any(r["scenario"] == scenario for r in rows):
        continue
    print(f"\n{scenario}: medians (min-max)")
    print(f"{'variant':8} {'rate/s':>22} {'p99 ms':>20} {'servers CPU us/' + unit:>22} {'redis CPU s':>16} {'tool CPU %':>14} {'load':>14}  fds")
    base = {}
    for v in variants:
        rs = [r for r in rows if r["variant"] == v and r["scenario"] == scenario and r["result"].get("ok")]
        rates = [r["result"][rate] for r in rs]
        p99 = [r["result"].get("push_rtt_p99_ms" if scenario == "pushrate" else "latency_p99_ms") for r in rs]
        units = [r["result"]["pushes" if scenario == "pushrate" else "messages"] for r in rs]
        us = [r["servers_cpu_s"] * 1e6 / max(u, 1) for r, u in zip(rs, units)]
        tool = [100 * r["result"]["bench_cpu_share"] for r in rs]
        print(f"{v:8} {cell(rates, '{:.0f}'):>22} {cell([x for x in p99 if x is not None], '{:.1f}'):>20} "
              f"{cell(us, '{:.2f}'):>22} {cell([r['redis_cpu_s'] for r in rs], '{:.2f}'):>16} "
              f"{cell(tool, '{:.0f}'):>14} {cell([r['load'] for r in rs], '{:.1f}'):>14}  "
              + " ".join(str(r["fds"]) for r in rs))
        base[v] = med(rates)
    if base.get("redis1") and base.get("reuse2"):
        print(f"reuse2 / redis1: {base['reuse2'] / base['redis1']:.2f}")
    if base.get("one") and base.get("reuse2"):
        print(f"reuse2 / one:    {base['reuse2'] / base['one']:.2f}")
for r in bad:
    print(f"FAILED: {r['scenario']} {r['variant']} run {r['run']}: {r['result'].get('failures')}")
sys.exit(1 if bad else 0)
EOF
