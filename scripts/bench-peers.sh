#!/usr/bin/env bash
# Prepares the peer servers of ../shared/peers for a side-by-side run
# (scripts/bench-compare.sh): copies them to a writable folder (the shared
# one is read-only), installs Go and gorilla/websocket from Debian, and
# builds each peer the way its README says.
#
#   scripts/bench-peers.sh                 # into /tmp/peers
#   PEERS_DIR=/elsewhere scripts/bench-peers.sh
#
# Idempotent: a second run copies the sources again and rebuilds only what
# changed. Prints the four peer commands at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=${PEERS_SRC:-$root/../shared/peers}
dst=${PEERS_DIR:-/tmp/peers}

[ -d "$src" ] || { echo "bench-peers: no peers at $src" >&2; exit 1; }
mkdir -p "$dst"
cp -r "$src"/. "$dst"/
chmod -R u+w "$dst"

if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/github.com/gorilla/websocket ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go golang-github-gorilla-websocket-dev >/dev/null
fi
"$dst/go-gorilla/build.sh"

command -v npm >/dev/null 2>&1 || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
}
(cd "$dst/node-ws" && npm ci --no-audit --no-fund --silent)

# Their own target folders, whatever the caller's CARGO_TARGET_DIR says.
(cd "$dst/rust-axum" && CARGO_TARGET_DIR=target cargo build --release -q)
(cd "$dst/raw-floor" && CARGO_TARGET_DIR=target cargo build --release -q)

cat <<EOT
peers ready in $dst:
  go-gorilla  $dst/go-gorilla/go-gorilla PORT
  node-ws     node $dst/node-ws/server.js PORT
  rust-axum   $dst/rust-axum/target/release/rust-axum-peer PORT
  raw-floor   $dst/raw-floor/target/release/raw-floor PORT
EOT
