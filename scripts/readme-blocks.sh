#!/usr/bin/env bash
# Runs README.md's runnable shell blocks, in order, against the server built
# from this tree, so every recipe marked runnable works as typed.
#
#   scripts/readme-blocks.sh [README.md]
#
# Marking (invisible on GitHub): a fenced block is runnable when the line
# before its opening fence is `<!-- runnable -->`. Inside it, lines starting
# with `#>` are what the command just above them prints (a reader sees a
# comment); the script checks that output exactly. `<!-- quote: PATH -->`
# before a fence means the block is PATH's text, byte for byte (the library
# example is a file CI compiles; README shows it).
#
# Each block runs on its own: `bash -euo pipefail`, a fresh temporary
# directory as its working directory (recipes create their files there),
# `wspush` on PATH (target/release, what `cargo install --path .` gives),
# a 90 s limit, and every process it started in the background (servers,
# redis-server) stopped when it ends. The recipes use ports 12345, 12346
# and 6379; any of them already taken on this machine is replaced by a free
# one in every runnable block, and the server's default listen address
# becomes 127.0.0.1 on that port (WSPUSH_LISTEN), so nothing is exposed.
# A failing command, a wrong `#>` output or a timeout fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
readme=${1:-README.md}
limit=${README_BLOCK_TIMEOUT:-90}

target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$PWD/$target ;; esac
cargo build --release --bin wspush
bin=$target/release

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- quoted files -----------------------------------------------------------
# Prints each quoted block to $work/quote.N and its path to $work/quote.N.path.
awk -v dir="$work" '
  /^<!-- quote: .* -->$/ { path = $3; next }
  path != "" && /^```/ && !inside { inside = 1; n++; out = dir "/quote." n; printf "" > out; print path > (out ".path"); next }
  inside && /^```$/ { inside = 0; path = ""; close(out); next }
  inside { print > out; next }
  { path = "" }
' "$readme"
for q in "$work"/quote.[0-9]*; do
  [ -e "$q" ] || break
  case $q in *.path) continue ;; esac
  path=$(cat "$q.path")
  if ! diff -u "$path" "$q" >"$work/diff"; then
    echo "README block quoting $path differs from the file:" >&2
    cat "$work/diff" >&2
    exit 1
  fi
  echo "quoted: $path matches"
done

# --- runnable blocks ----------------------------------------------------------
# Each runnable block to $work/block.N, with its README line in block.N.line.
awk -v dir="$work" '
  /^<!-- runnable -->$/ { mark = 1; next }
  mark && /^```/ && !inside { inside = 1; mark = 0; n++; out = dir "/block." n; printf "" > out; print NR + 1 > (out ".line"); next }
  inside && /^```$/ { inside = 0; close(out); next }
  inside { print > out; next }
  { mark = 0 }
' "$readme"
blocks=$(find "$work" -maxdepth 1 -name 'block.*[0-9]' | sort -t. -k2 -n)
[ -n "$blocks" ] || { echo "no <!-- runnable --> block in $readme" >&2; exit 1; }

# True when something accepts connections on 127.0.0.1:$1.
taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    taken "$p" || { echo "$p"; return; }
  done
}
subst=()
for p in 12345 12346 6379; do
  q=$p
  if taken "$p"; then
    q=$(free_port)
    echo "port $p is taken here: the blocks use $q instead"
  fi
  subst+=(-e "s/\\b$p\\b/$q/g")
  [ "$p" = 12345 ] && default_port=$q
done

# The checks: `cmd` followed by `#> line`s becomes `__check 'line' 'cmd'`.
# A command continued with a trailing backslash is one command.
to_script() {
  awk '
    function q(s) { gsub(/\047/, "\047\\\047\047", s); return "\047" s "\047" }
    function flush() {
      if (pending == "") return
      if (nexp) print "__check " q(want) " " q(pending); else print pending
      pending = ""; want = ""; nexp = 0
    }
    /^#>( |$)/ { e = $0; sub(/^#> ?/, "", e); want = nexp++ ? want "\n" e : e; next }
    cont { pending = pending "\n" $0; cont = /\\$/; next }
    { flush(); pending = $0; cont = /\\$/ }
    END { flush() }
  '
}

cat >"$work/prelude.sh" <<'EOF'
__check() {
  local got
  printf '$ %s\n' "$2"
  got=$(eval "$2") || { echo "README block: exit $? from: $2" >&2; return 1; }
  printf '%s\n' "$got"
  if [ "$got" != "$1" ]; then
    printf 'README block: wrong output from: %s\n--- expected\n%s\n--- got\n%s\n' "$2" "$1" "$got" >&2
    return 1
  fi
}
EOF
# curl as typed at a terminal: no progress meter in the log, errors shown.
printf -- '--silent\n--show-error\n' >"$work/.curlrc"

# Stops what is left of process group $1 (TERM, then KILL after 5 s).
reap() {
  kill -TERM -- "-$1" 2>/dev/null || return 0
  for _ in $(seq 50); do
    kill -0 -- "-$1" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL -- "-$1" 2>/dev/null || true
}

n=0
for b in $blocks; do
  n=$((n + 1))
  line=$(cat "$b.line")
  dir=$work/run.$n
  mkdir "$dir"
  { cat "$work/prelude.sh"; sed "${subst[@]}" "$b" | to_script; } >"$dir/block.sh"
  echo "=== README.md:$line (block $n)"
  # setsid: the block and everything it starts form one process group,
  # which timeout signals as a whole and reap() stops afterwards.
  rc=0
  (
    cd "$dir"
    PATH=$bin:$PATH CURL_HOME=$work WSPUSH_LISTEN=127.0.0.1:$default_port \
      exec setsid timeout -s TERM -k 5 "$limit" bash -euo pipefail block.sh </dev/null
  ) &
  pid=$!
  wait "$pid" || rc=$?
  reap "$pid"
  if [ "$rc" -ne 0 ]; then
    [ "$rc" -eq 124 ] && echo "README.md:$line: the block did not finish within ${limit} s" >&2
    echo "README.md:$line: block $n failed (exit $rc); it ran as:" >&2
    cat -n "$dir/block.sh" >&2
    exit 1
  fi
done
echo "README blocks: $n runnable blocks passed"
