# Shared by the bench scripts (sourced): one server process at a time.
#   server_pid  the running server, if any
#   stop_server       TERM, wait up to 5 s, then KILL
#   wait_listening NAME LOG   until LOG says "listening on", or exit 1
server_pid=""

stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}

wait_listening() {
  local name=$1 log=$2
  for _ in $(seq 100); do
    grep -q "listening on" "$log" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { echo "$name died:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  grep -q "listening on" "$log" || { echo "$name never listened" >&2; exit 1; }
}
