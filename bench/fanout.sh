#!/usr/bin/env bash
# Topics' fan-out: server CPU per delivered message and memory per subscriber, beside
# scenario b's server CPU per echoed message in the same run.
#
#   bench/fanout.sh [--reps N]
#   bench/fanout.sh --callgrind     # instructions per delivered message (repeatable), beside b's
#
# Per rep, interleaved: (b) examples/echo-server under `wsload echo -c 100 -p 16 -s 16`
# for 5 s, server CPU (utime+stime from /proc/PID/stat) / echoed messages; then
# examples/fanout-bench with 1,000 and 10,000 `wsload idle` subscribers on one topic,
# 16-byte messages published from the loop in bursts of 16 (~200,000 deliveries/s) for
# 5 s: server CPU / delivered messages, and VmRSS growth per subscriber; and 10,000
# connections that subscribe to nothing (the idle baseline). Server on CPU 0, load on CPU 1.
#
# --callgrind: fanout-bench under valgrind --tool=callgrind at 1,000 subscribers (4 and 24
# bursts of 16) and 10,000 (2 and 8 bursts), `--bursts` publishing back to back; Ir per
# delivered message = (Ir_long - Ir_short) / (delivered_long - delivered_short), which
# cancels start-up and the handshakes (the method of bench/callgrind.sh); then
# bench/callgrind.sh wsreactor for scenario b's Ir per echoed message in the same run.
# Callgrind counts user-space instructions only: the write per subscriber per burst is
# kernel time, in the CPU figures of the default mode, not here.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WSLOAD=${WSLOAD:-/tmp/wsbench/target/release/wsload}
REPS=1
CALLGRIND=0
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=$2; shift ;;
    --callgrind) CALLGRIND=1 ;;
    -h|--help) sed -n 2,21p "$0"; exit 0 ;;
    *) echo "fanout.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$WSLOAD" ] || { echo "fanout.sh: no wsload at $WSLOAD (build ../shared/bench/loadgen, or set WSLOAD)" >&2; exit 2; }
cd "$ROOT"
cargo build --release -q --example echo-server --example fanout-bench
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
ulimit -n "$(ulimit -Hn)"
if [ $CALLGRIND = 1 ]; then
  OUT=/tmp/wsreactor-callgrind/fanout-$(date +%Y%m%d-%H%M%S)
  mkdir -p "$OUT"
  # one run: N BURSTS -> "delivered Ir"
  cg_run() {
    local n=$1 b=$2 port f
    port=$(free_port)
    f=$OUT/fanout-$n-$b
    taskset -c 0 valgrind --tool=callgrind -q --callgrind-out-file="$f.out" \
      target/release/examples/fanout-bench --port "$port" --subscribers "$n" --bursts "$b" >"$f.log" 2>&1 &
    local srv=$!
    for _ in $(seq 600); do ss -Hltn "sport = :$port" | grep -q LISTEN && break; sleep 0.1; done
    taskset -c 1 "$WSLOAD" idle --port "$port" -c "$n" -d 900 -q >/dev/null 2>&1 &
    local cli=$!
    wait "$srv" || true
    kill "$cli" 2>/dev/null || true; wait "$cli" 2>/dev/null || true
    echo "$(sed -n 's/.* delivered=\([0-9]*\).*/\1/p' "$f.log") $(awk '/^(summary|totals):/ {print $2; exit}' "$f.out")"
  }
  for spec in "1000 4 24" "10000 2 8"; do
    set -- $spec
    read -r d1 i1 <<<"$(cg_run "$1" "$2")"
    read -r d2 i2 <<<"$(cg_run "$1" "$3")"
    echo "fanout $1 subscribers: delivered $d1/$d2 Ir_per_delivered=$(awk -v a="$i1" -v b="$i2" -v x="$d1" -v y="$d2" 'BEGIN{printf "%.1f", (b-a)/(y-x)}')"
  done
  "$ROOT/bench/callgrind.sh" wsreactor | grep -E '^(server|wsreactor) '
  echo "files: $OUT"
  exit 0
fi
for r in $(seq "$REPS"); do
  port=$(free_port)
  taskset -c 0 target/release/examples/echo-server --port "$port" --interface 127.0.0.1 >/dev/null 2>&1 &
  srv=$!
  wait_port "$port"
  t0=$(cpu_ticks "$srv")
  line=$(taskset -c 1 timeout 60 "$WSLOAD" echo --port "$port" -c 100 -p 16 -s 16 -d 5 -q | grep '^RESULT')
  t1=$(cpu_ticks "$srv")
  kill "$srv"; wait "$srv" 2>/dev/null || true
  msgs=$(sed -n 's/.* msgs=\([0-9]*\).*/\1/p' <<<"$line")
  echo "rep $r b: echoed=$msgs server_cpu_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print (b-a)/100}') us_per_echoed=$(awk -v a="$t0" -v b="$t1" -v m="$msgs" 'BEGIN{printf "%.3f", (b-a)*1e4/m}')"
  for spec in "1000" "10000" "10000 --no-subscribe"; do
    set -- $spec
    n=$1; shift
    port=$(free_port)
    out=$(mktemp)
    taskset -c 0 target/release/examples/fanout-bench --port "$port" --subscribers "$n" --secs 5 "$@" >"$out" 2>&1 &
    srv=$!
    wait_port "$port"
    taskset -c 1 timeout 120 "$WSLOAD" idle --port "$port" -c "$n" -d 30 -q >/dev/null 2>&1 &
    cli=$!
    wait "$srv" || true
    kill "$cli" 2>/dev/null || true; wait "$cli" 2>/dev/null || true
    echo "rep $r fanout $n $*: $(grep '^RESULT' "$out" || cat "$out")"
    rm -f "$out"
  done
done
