#!/usr/bin/env bash
# echo-server --threads 1 against --threads 2 (one context per thread on one port,
# SO_REUSEPORT), scenario b (16 B echo, 100 connections, 16 in flight each), neither server
# nor load generator pinned: on this 2-core machine they share both cores, so the load
# generator (wsload, T client threads) takes CPU the second context could use; the figure
# is what a second context buys when the clients run on the same host.
#
#   bench/threads.sh [--reps 3] [--dur 5] [--load-threads 2]
# Prints one RESULT line per run (interleaved: 1, 2, 1, 2, ...) and the medians.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WSLOAD=${WSBENCH_BUILD:-/tmp/wsbench}/target/release/wsload
REPS=3; DUR=5; LT=2
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=$2; shift ;;
    --dur) DUR=$2; shift ;;
    --load-threads) LT=$2; shift ;;
    *) echo "threads.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$WSLOAD" ] || { echo "no $WSLOAD: run bench/compare.sh once (it builds wsload)" >&2; exit 1; }
(cd "$ROOT" && cargo build --release --example echo-server -q)
SRV=""
trap '[ -n "$SRV" ] && kill -KILL "$SRV" 2>/dev/null || true' EXIT
declare -A res
for r in $(seq 1 "$REPS"); do
  for t in 1 2; do
    PORT=$((40000 + RANDOM % 10000))
    "$ROOT/target/release/examples/echo-server" --port "$PORT" --interface 127.0.0.1 --threads "$t" 2>/dev/null &
    SRV=$!
    for _ in $(seq 1 100); do ss -Hltn "sport = :$PORT" | grep -q LISTEN && break; sleep 0.1; done
    out=$("$WSLOAD" echo --port "$PORT" -c 100 -p 16 -s 16 -t "$LT" -d "$DUR" -q 2>/dev/null | grep '^RESULT' | tail -1)
    kill -TERM "$SRV"; wait "$SRV" || true; SRV=""
    rate=$(echo "$out" | sed -n 's/.*msgs_per_s=\([0-9.]*\).*/\1/p')
    echo "RESULT threads=$t rep=$r msgs_per_s=${rate:-?} ($out)"
    res[$t]="${res[$t]:-} ${rate:-0}"
  done
done
for t in 1 2; do
  m=$(echo ${res[$t]} | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "MEDIAN threads=$t msgs_per_s=$m"
done
