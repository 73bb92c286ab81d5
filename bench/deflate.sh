#!/usr/bin/env bash
# permessage-deflate under load: echo of a compressible 16 KiB JSON-like text message, 10
# connections (depth 4), deflate negotiated on every connection, against our echo-server
# --deflate (level 6 and level 1), Node `ws` (perMessageDeflate) and Python `websockets`
# (compression="deflate"); interleaved rep by rep. Server pinned to CPU 0, the client
# (examples/client-bench, our client with deflate) to CPU 1. Prints per run: MB/s of
# messages echoed, and the server's CPU time per message (utime+stime from /proc/PID/stat).
# Then server memory per idle connection (VmRSS growth / 2000 connections, each after one
# message) for echo-server without deflate, --deflate (dedicated, 15 bits / memLevel 8),
# --deflate-window 10 --deflate-mem 2 (dedicated, small) and --deflate-shared.
#
#   bench/deflate.sh [--reps 3] [--secs 5]
#
# Needs node with `ws` and a Python venv with `websockets`: by default those of the shared
# bench harness (/tmp/wsbench/node/node_modules, /tmp/wsbench/venv; ../shared/bench/run.sh
# makes them), or NODE_MODULES / PYTHON.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=3
SECS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=$2; shift ;;
    --secs) SECS=$2; shift ;;
    -h|--help) sed -n 2,17p "$0"; exit 0 ;;
    *) echo "deflate.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
NODE_MODULES=${NODE_MODULES:-/tmp/wsbench/node/node_modules}
PYTHON=${PYTHON:-/tmp/wsbench/venv/bin/python}
cd "$ROOT"
cargo build --release -q --example echo-server --example client-bench
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
HZ=$(getconf CLK_TCK)
srv=""
trap '[ -n "$srv" ] && kill $srv 2>/dev/null || true' EXIT
start() { # NAME → srv, port
  port=$(free_port)
  case "$1" in
    ours) taskset -c 0 target/release/examples/echo-server --port "$port" --interface 127.0.0.1 --deflate >/dev/null 2>&1 & ;;
    ours-l1) taskset -c 0 target/release/examples/echo-server --port "$port" --interface 127.0.0.1 --deflate-level 1 >/dev/null 2>&1 & ;;
    node-ws) NODE_PATH=$NODE_MODULES taskset -c 0 node bench/deflate/ws-deflate-echo.js "$port" >/dev/null 2>&1 & ;;
    python-websockets) taskset -c 0 "$PYTHON" bench/deflate/ws_deflate_echo.py "$port" >/dev/null 2>&1 & ;;
  esac
  srv=$!
  wait_port "$port"
}
stop() { kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true; srv=""; }
for r in $(seq "$REPS"); do
  for peer in ours ours-l1 node-ws python-websockets; do
    start "$peer"
    t0=$(ticks "$srv")
    out=$(taskset -c 1 timeout 60 target/release/examples/client-bench echo "ws://127.0.0.1:$port/" \
      --conns 10 --depth 4 --size 16384 --secs "$SECS" --json 1 --deflate 1)
    t1=$(ticks "$srv")
    msgs=$(sed -n 's/.* msgs=\([0-9]*\).*/\1/p' <<<"$out")
    echo "RESULT rep=$r peer=$peer $(grep -o 'deflated=[0-9]* .*mb_per_s=[0-9.]*' <<<"$out") server_cpu_s=$(awk -v t=$((t1 - t0)) -v h="$HZ" 'BEGIN{printf "%.2f", t/h}') server_us_per_msg=$(awk -v t=$((t1 - t0)) -v h="$HZ" -v m="$msgs" 'BEGIN{printf "%.1f", t/h*1e6/(m>0?m:1)}')"
    stop
  done
done
for mode in none "--deflate" "--deflate-window 10 --deflate-mem 2" "--deflate-shared"; do
  port=$(free_port)
  # shellcheck disable=SC2086
  taskset -c 0 target/release/examples/echo-server --port "$port" --interface 127.0.0.1 ${mode#none} >/dev/null 2>&1 &
  srv=$!
  wait_port "$port"
  r0=$(rss "$srv")
  out=$( (ulimit -n "$(ulimit -Hn)"; taskset -c 1 timeout 120 target/release/examples/client-bench idle "ws://127.0.0.1:$port/" \
    --conns 2000 --hold 2 --json 1 --size 16384 --deflate 1 --warm 1) )
  r1=$(rss "$srv")
  est=$(sed -n 's/.* established=\([0-9]*\).*/\1/p' <<<"$out")
  echo "RESULT idle mode=\"$mode\" $(grep -o 'deflated=[0-9]*' <<<"$out") established=$est server_bytes_per_conn=$(( (r1 - r0) * 1024 / (est > 0 ? est : 1) ))"
  stop
done
