#!/usr/bin/env bash
# Instructions per echoed message with permessage-deflate, fixed work: echo-server --deflate
# under callgrind (CPU 0), our client (client-bench --deflate 1 --json 1, 10 connections,
# depth 4, 16 KiB JSON-like text) on CPU 1 ending after --count N1 and then N2 echoes;
# Ir per message = (Ir_N2 - Ir_N1) / (msgs_N2 - msgs_N1). A fixed count (not a duration)
# keeps the figure independent of the machine's load. N1 must be past the warm-up (the first
# messages of a connection with context takeover cost more while its window fills): with
# N1=40 N2=120 the figure came out twice the steady one.
#
#   bench/callgrind-deflate.sh [SERVER_BINARY ...]   # default target/release/examples/echo-server
#   N1=200 N2=1000 EXTRA="--deflate-shared" bench/callgrind-deflate.sh
#
# Outputs: /tmp/wsreactor-callgrind-deflate/<stamp>/{TAG}-{N}.out, summary.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N1=${N1:-200}; N2=${N2:-1000}; EXTRA=${EXTRA:---deflate}
cd "$ROOT"
cargo build --release -q --example echo-server --example client-bench
CB=$ROOT/target/release/examples/client-bench
[ $# -gt 0 ] || set -- "$ROOT/target/release/examples/echo-server"
OUT=/tmp/wsreactor-callgrind-deflate/$(date +%Y%m%d-%H%M%S); mkdir -p "$OUT"
SRV=""; trap '[ -n "$SRV" ] && kill -KILL $SRV 2>/dev/null; true' EXIT
one() { # binary tag count -> "msgs ir"
  local port=$((45000 + RANDOM % 5000))
  # shellcheck disable=SC2086
  taskset -c 0 valgrind --tool=callgrind -q --callgrind-out-file="$OUT/$2-$3.out" "$1" --port $port --interface 127.0.0.1 $EXTRA >"$OUT/$2-$3.log" 2>&1 &
  SRV=$!
  for _ in $(seq 300); do ss -Hltn "sport = :$port" | grep -q LISTEN && break; sleep 0.1; done
  sleep 0.5
  local res; res=$(taskset -c 1 "$CB" echo "ws://127.0.0.1:$port/" --conns 10 --depth 4 --size 16384 --json 1 --deflate 1 --count "$3" | grep RESULT)
  sleep 0.5; kill -TERM $SRV; wait $SRV || true; SRV=""
  echo "$(sed -n 's/.* msgs=\([0-9]*\).*/\1/p' <<<"$res") $(callgrind_annotate "$OUT/$2-$3.out" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')"
}
i=0
for bin in "$@"; do
  i=$((i + 1)); tag=s$i
  read -r m1 i1 < <(one "$bin" $tag "$N1")
  read -r m2 i2 < <(one "$bin" $tag "$N2")
  echo "$bin $EXTRA: $(( (i2 - i1) / (m2 - m1) )) Ir per message (msgs $m1 $m2)" | tee -a "$OUT/summary.txt"
done
