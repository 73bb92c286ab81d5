#!/usr/bin/env bash
# The client role under load: examples/client-bench against examples/echo-server.
#
#   bench/client.sh                 # echo: 100 connections, depth 16, 16 B, 5 s; idle: 10,000
#   bench/client.sh --reps 3
#
# Server pinned to CPU 0, client to CPU 1. Prints client-bench's RESULT lines: client CPU
# time per echoed message (from /proc/self/stat) and resident memory per idle client
# connection (VmRSS growth / connections); beside it, interleaved rep by rep, tungstenite's
# client non-blocking on mio (benches/tungstenite_client.rs) and tokio-tungstenite's on a
# current-thread runtime (benches/tokio_tungstenite_client.rs) under the same echo load.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=$2; shift ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) echo "client.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
cd "$ROOT"
cargo build --release -q --example echo-server --example client-bench --bench tungstenite_client --bench tokio_tungstenite_client
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 target/release/examples/echo-server --port "$port" --interface 127.0.0.1 >/dev/null 2>&1 &
srv=$!
trap 'kill $srv 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
for r in $(seq "$REPS"); do
  echo "rep $r echo: $(taskset -c 1 timeout 60 target/release/examples/client-bench echo "ws://127.0.0.1:$port/" --conns 100 --depth 16 --size 16 --secs 5)"
  echo "rep $r tungstenite: $(taskset -c 1 timeout 60 cargo bench -q --bench tungstenite_client -- "ws://127.0.0.1:$port/" 100 16 16 5 2>/dev/null | grep RESULT)"
  echo "rep $r tokio-tungstenite: $(taskset -c 1 timeout 60 cargo bench -q --bench tokio_tungstenite_client -- "ws://127.0.0.1:$port/" 100 16 16 5 2>/dev/null | grep RESULT)"
  echo "rep $r idle: $( (ulimit -n "$(ulimit -Hn)"; taskset -c 1 timeout 120 target/release/examples/client-bench idle "ws://127.0.0.1:$port/" --conns 10000 --hold 3) )"
done
