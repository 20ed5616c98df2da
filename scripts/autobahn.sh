#!/usr/bin/env bash
# WebSocket conformance: the Autobahn|Testsuite case files, driven by the
# kosoku runner (PyPI), against examples/echo.rs — the same connection code
# as the server, with a 16 MiB message limit. Fails (and names the cases)
# unless every case is OK, NON-STRICT or INFORMATIONAL.
#
#   scripts/autobahn.sh            # cases 1-7, 9.1, 9.2, 10; report in target/autobahn
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import kosoku' 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check kosoku
fi
KOSOKU=$(python3 -c 'import shutil,sys,os; p=shutil.which("kosoku") or os.path.join(os.path.dirname(sys.executable),"kosoku"); print(p)')

cargo build --release -q --example echo
out=target/autobahn
rm -rf "$out" && mkdir -p "$out"
target/release/examples/echo 127.0.0.1:0 > "$out/echo.stdout" 2> "$out/echo.stderr" &
echo_pid=$!
trap 'kill $echo_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q '^listening on ' "$out/echo.stdout" 2>/dev/null && break
  sleep 0.05
done
addr=$(sed -n 's/^listening on //p' "$out/echo.stdout")
[ -n "$addr" ] || { echo "echo server did not start"; cat "$out/echo.stderr"; exit 1; }

timeout 900 "$KOSOKU" -m fuzzingclient "$addr" -p 2 -o "$out" \
  -i '1.*' -i '2.*' -i '3.*' -i '4.*' -i '5.*' -i '6.*' -i '7.*' -i '9.1.*' -i '9.2.*' -i '10.*' \
  > "$out/kosoku.log" 2>&1 || { tail -20 "$out/kosoku.log"; exit 1; }

python3 - "$out/index.json" <<'PY'
import collections, json, sys
index = json.load(open(sys.argv[1]))
ok = {"OK", "NON-STRICT", "INFORMATIONAL"}
counts, bad = collections.Counter(), []
for agent, cases in index.items():
    for case, r in cases.items():
        counts[r["behavior"]] += 1
        if r["behavior"] not in ok or r.get("behaviorClose", "OK") not in ok:
            bad.append(f'{case} ({r["behavior"]}/{r.get("behaviorClose")})')
total = sum(counts.values())
print("autobahn:", total, "cases:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
if total == 0:
    sys.exit("autobahn: no case ran")
if bad:
    print("autobahn: failing cases:", *sorted(bad), sep="\n  ")
    sys.exit(1)
PY
