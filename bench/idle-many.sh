#!/usr/bin/env bash
# Many idle WebSocket connections in one context: server RSS per connection, and whether
# every connection is still alive at the end.
#
#   bench/idle-many.sh                      # as many as the fd limit allows (up to 100,000)
#   bench/idle-many.sh -n 19000 --sources 4 --hold 10
#   bench/idle-many.sh 'NAME=CMD {PORT}'    # another server (listening on all interfaces)
#
# The connections are spread over --sources destination addresses 127.0.0.1..127.0.0.K
# (the server listens on the wildcard address), one `wsload idle` per address, so that no
# single (source, destination) pair runs out of ephemeral ports (about 28,000 each).
# RSS per connection = (VmRSS with N established - VmRSS before) / N, read 1 s after the
# last handshake, as ../shared/bench/run.sh does for scenario e.
#
# Limits: one process needs one descriptor per connection. The server and each wsload
# raise their soft RLIMIT_NOFILE to the hard limit; raising the hard limit needs
# CAP_SYS_RESOURCE. Where the hard limit is below the target the run is capped at
# (hard limit - 500) and says so.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${WSBENCH_BUILD:-/tmp/wsbench}
WSLOAD=$BUILD/target/release/wsload
N=100000
SOURCES=4
HOLD=5
SERVER=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N=$2; shift ;;
    --sources) SOURCES=$2; shift ;;
    --hold) HOLD=$2; shift ;;
    -h|--help) sed -n 2,18p "$0"; exit 0 ;;
    *=*) SERVER=$1 ;;
    *) echo "idle-many.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$WSLOAD" ] || { echo "no $WSLOAD: run bench/compare.sh once (it builds wsload)" >&2; exit 1; }

# Try for the target; keep what the system allows.
ulimit -Hn "$((N + 1000))" 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
hard=$(ulimit -Hn)
if [ "$((N + 500))" -gt "$hard" ]; then
  echo "idle-many.sh: fd hard limit is $hard (raising it needs CAP_SYS_RESOURCE): $N capped to $((hard - 500))" >&2
  N=$((hard - 500))
fi

if [ -z "$SERVER" ]; then
  (cd "$ROOT" && cargo build --release --example echo-server -q)
  SERVER="wsreactor=$ROOT/target/release/examples/echo-server --port {PORT}"
fi
name=${SERVER%%=*}
PORT=$((40000 + RANDOM % 10000))
cmd=${SERVER#*=}; cmd=${cmd//\{PORT\}/$PORT}
OUT=/tmp/wsreactor-idle/$(date +%Y%m%d-%H%M%S); mkdir -p "$OUT"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

taskset -c 0 bash -c "exec $cmd" >"$OUT/server.log" 2>&1 &
SRV=$!; pids+=("$SRV")
for _ in $(seq 1 100); do ss -Hltn "sport = :$PORT" | grep -q LISTEN && break; sleep 0.1; done
sleep 0.5
rss() { awk '/^VmRSS/ {print $2}' "/proc/$SRV/status"; }
before=$(rss)

per=$((N / SOURCES))
loads=()
for i in $(seq 1 "$SOURCES"); do
  c=$per; [ "$i" = "$SOURCES" ] && c=$((N - per * (SOURCES - 1)))
  taskset -c 1 "$WSLOAD" idle --host "127.0.0.$i" --port "$PORT" -c "$c" -d "$HOLD" -q \
    >"$OUT/idle-$i.txt" 2>"$OUT/idle-$i.err" &
  loads+=($!); pids+=($!)
done
t0=$(date +%s.%N)
for f in $(seq 1 "$SOURCES"); do
  for _ in $(seq 1 3000); do
    grep -q IDLE_READY "$OUT/idle-$f.txt" 2>/dev/null && break
    kill -0 "${loads[$((f - 1))]}" 2>/dev/null || break
    sleep 0.1
  done
done
t1=$(date +%s.%N)
sleep 1
after=$(rss)
conns=$(ls "/proc/$SRV/fd" | wc -l)
for p in "${loads[@]}"; do wait "$p" || true; done
est=0; alive=0; errs=0
for f in $(seq 1 "$SOURCES"); do
  r=$(grep '^RESULT' "$OUT/idle-$f.txt" | tail -1 || true)
  e=$(echo "$r" | sed -n 's/.* established=\([0-9]*\).*/\1/p'); est=$((est + ${e:-0}))
  a=$(echo "$r" | sed -n 's/.*alive_at_end=\([0-9]*\).*/\1/p'); alive=$((alive + ${a:-0}))
  x=$(echo "$r" | sed -n 's/.*errors=\([0-9]*\).*/\1/p'); errs=$((errs + ${x:-0}))
done
kill -TERM "$SRV" 2>/dev/null || true
printf 'RESULT server=%s target=%d sources=%d established=%d alive_at_end=%d errors=%d server_fds_at_peak=%d setup_s=%.1f rss_before_kb=%d rss_after_kb=%d bytes_per_conn=%d\n' \
  "$name" "$N" "$SOURCES" "$est" "$alive" "$errs" "$conns" "$(echo "$t1 - $t0" | bc)" "$before" "$after" \
  "$(( est > 0 ? (after - before) * 1024 / est : 0 ))" | tee "$OUT/result.txt"
