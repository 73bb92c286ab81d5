#!/usr/bin/env bash
# Instructions per echoed message, under valgrind --tool=callgrind, for wsreactor's
# echo-server and peers; plus the top functions by Ir (the profile) for the first server.
#
#   bench/callgrind.sh                          # wsreactor, tungstenite-mio, fastwebsockets
#   bench/callgrind.sh --dur 6 --short 1 --conns 100 --depth 16 --size 16 --top 10
#   bench/callgrind.sh --rev HEAD               # wsreactor from a committed revision (git archive to /tmp)
#   bench/callgrind.sh wsreactor 'mine=/path/to/server --port {PORT}'   # choose servers
#   bench/callgrind.sh --tls                    # over TLS 1.3 (wsload --tls): wsreactor (echo-server
#                                               # --ssl --cert --key) and tokio-tungstenite-tls
#
# Servers are NAME or NAME=CMD with {PORT}; known names: wsreactor (this repo's
# target/release/examples/echo-server), tungstenite-mio, fastwebsockets, tokio-tungstenite,
# lws, lws-bigbuf (built by ../shared/bench/run.sh into /tmp/wsbench).
#
# Method. Each server runs twice under callgrind (server pinned to CPU 0, wsload on CPU 1)
# with the same load shape, scenario b by default (16 B text, 100 connections, 16 messages
# in flight each), once for --short seconds and once for --dur seconds. Both runs pay the
# same fixed costs: process start-up, 100 handshakes, the in-flight tail drained after the
# measuring window, 100 close handshakes, exit. So
#
#     Ir per message = (Ir_long - Ir_short) / (msgs_long - msgs_short)
#
# cancels them without toggling collection from outside (callgrind_control -i on/off
# would race with the load generator's window). msgs are wsload's counted echoes. The same
# difference is taken for the call counts of syscall wrappers (read/write/recv/send/
# writev/epoll_wait/...) and of the allocator and memcpy/memmove, to give syscalls and
# allocations per message. Callgrind counts user-space instructions only: kernel time
# (the syscalls themselves) is not in Ir, which is why the syscall counts are printed.
# Under callgrind the server runs ~50x slower, but scenario b keeps a saturated server
# natively too, so batching per read/write is of the same kind; still, read the results
# as a comparison between servers measured the same way, not as native costs.
#
# Outputs: /tmp/wsreactor-callgrind/<stamp>/{NAME}-{short,long}.out, summary.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${WSBENCH_BUILD:-/tmp/wsbench}
WSLOAD=$BUILD/target/release/wsload
DUR=6
SHORT=1
CONNS=100
DEPTH=16
SIZE=16
TOP=10
REV=""
TLS=0
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SERVERS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dur) DUR=$2; shift ;;
    --short) SHORT=$2; shift ;;
    --conns|-c) CONNS=$2; shift ;;
    --depth|-p) DEPTH=$2; shift ;;
    --size|-s) SIZE=$2; shift ;;
    --top) TOP=$2; shift ;;
    --rev) REV=$2; shift ;;
    --tls) TLS=1 ;;
    -h|--help) sed -n 2,33p "$0"; exit 0 ;;
    -*) echo "callgrind.sh: unknown option $1" >&2; exit 2 ;;
    *) SERVERS+=("$1") ;;
  esac
  shift
done
if [ ${#SERVERS[@]} -eq 0 ]; then
  if [ $TLS = 1 ]; then SERVERS=(wsreactor tokio-tungstenite-tls); else SERVERS=(wsreactor tungstenite-mio fastwebsockets); fi
fi
CERT=$BUILD/tls/cert.pem KEY=$BUILD/tls/key.pem
if [ $TLS = 1 ] && [ ! -f "$CERT" ]; then
  mkdir -p "$BUILD/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$KEY" -out "$CERT" 2>/dev/null
fi

if ! command -v valgrind >/dev/null || ! command -v callgrind_annotate >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq valgrind
fi
[ -x "$WSLOAD" ] || { echo "no $WSLOAD: run bench/compare.sh once (it builds wsload and the peers)" >&2; exit 1; }

SRC=$ROOT
if [ -n "$REV" ]; then
  sha=$(git -C "$ROOT" rev-parse --short "$REV^{commit}")
  SRC=/tmp/wsreactor-src-$sha
  [ -f "$SRC/Cargo.toml" ] || { mkdir -p "$SRC"; git -C "$ROOT" archive "$sha" | tar -x -C "$SRC"; }
fi
(cd "$SRC" && cargo build --release --example echo-server -q)

server_cmd() {
  case "$1" in
    *=*) echo "${1#*=}" ;;
    wsreactor) if [ $TLS = 1 ]; then echo "$SRC/target/release/examples/echo-server --port {PORT} --interface 127.0.0.1 --cert $CERT --key $KEY";
               else echo "$SRC/target/release/examples/echo-server --port {PORT} --interface 127.0.0.1"; fi ;;
    tokio-tungstenite-tls) echo "$BUILD/target/release/tokio-tungstenite-tls-echo {PORT} $CERT $KEY" ;;
    tungstenite-mio) echo "$BUILD/target/release/tungstenite-mio-echo {PORT}" ;;
    fastwebsockets) echo "$BUILD/target/release/fastwebsockets-echo {PORT}" ;;
    tokio-tungstenite) echo "$BUILD/target/release/tokio-tungstenite-echo {PORT}" ;;
    lws) echo "$BUILD/lws-echo {PORT}" ;;
    lws-bigbuf) echo "env LWS_ECHO_BUF=65536 $BUILD/lws-echo {PORT}" ;;
    *) echo "callgrind.sh: unknown server $1" >&2; return 1 ;;
  esac
}

OUT=/tmp/wsreactor-callgrind/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
port_listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q LISTEN; }
PORT=$((40000 + RANDOM % 10000))
SRV=""
cleanup() { [ -n "$SRV" ] && kill -KILL "$SRV" 2>/dev/null; true; }
trap cleanup EXIT

# one callgrind run: name label seconds -> sets RUN_MSGS RUN_IR
one_run() {
  local name=$1 label=$2 secs=$3 cmd res msgs ir
  while port_listening $PORT; do PORT=$((PORT + 1)); done
  cmd=$(server_cmd "$name"); cmd=${cmd//\{PORT\}/$PORT}
  local n=${name%%=*}
  # exec so that $SRV is valgrind's (= the server's) pid: the signal reaches it directly
  taskset -c "$SERVER_CPU" bash -c "ulimit -n \$(ulimit -Hn); exec valgrind --tool=callgrind -q \
      --callgrind-out-file=$OUT/$n-$label.out $( [[ $cmd == env\ * ]] && echo "--trace-children=yes" ) $cmd" \
      >"$OUT/$n-$label.log" 2>&1 &
  SRV=$!
  for _ in $(seq 1 300); do port_listening $PORT && break; kill -0 $SRV 2>/dev/null || break; sleep 0.1; done
  port_listening $PORT || { echo "$n did not start, see $OUT/$n-$label.log" >&2; return 1; }
  sleep 0.5
  res=$(taskset -c "$CLIENT_CPU" "$WSLOAD" echo --port $PORT -c "$CONNS" -p "$DEPTH" -s "$SIZE" -d "$secs" $( [ $TLS = 1 ] && echo --tls ) -q 2>>"$OUT/wsload.err" | grep "^RESULT" | tail -1 || true)
  echo "$n $label $res" >>"$OUT/wsload.txt"
  sleep 0.5
  # SIGTERM (not SIGINT: a background job of a script starts with SIGINT ignored): the
  # servers die of it and valgrind writes the profile on the way out
  kill -TERM $SRV 2>/dev/null
  for _ in $(seq 1 300); do kill -0 $SRV 2>/dev/null || break; sleep 0.1; done
  kill -0 $SRV 2>/dev/null && echo "warning: $n did not exit on SIGTERM; killed, no profile" >&2
  kill -KILL $SRV 2>/dev/null || true
  wait $SRV 2>/dev/null || true
  SRV=""
  PORT=$((PORT + 1))
  msgs=$(echo "$res" | sed -n 's/.* msgs=\([0-9]*\) .*/\1/p')
  errs=$(echo "$res" | sed -n 's/.* errors=\([0-9]*\).*/\1/p')
  [ "${errs:-1}" = 0 ] || echo "warning: $n $label: wsload errors=${errs:-?} (see $OUT/wsload.err)" >&2
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$OUT/$n-$label.out" 2>/dev/null)
  RUN_MSGS=${msgs:-0}; RUN_IR=${ir:-0}
}

# call counts of interesting functions in a callgrind file, as "name count" lines
calls() {
  python3 - "$1" <<'PY'
import re, sys, collections
names = {}; cur = None; counts = collections.Counter()
pat = re.compile(r'^c?fn=\((\d+)\)(?: (.*))?$')
for line in open(sys.argv[1], errors='replace'):
    if line.startswith(('fn=', 'cfn=')):
        m = pat.match(line.rstrip('\n'))
        if m:
            i, nm = m.groups()
            if nm: names[i] = nm
            if line.startswith('cfn='): cur = names.get(i, i)
        else:
            if line.startswith('cfn='): cur = line[4:].strip()
    elif line.startswith('calls=') and cur is not None:
        counts[cur] += int(line.split()[0][6:])
groups = {
    'read':   r'^(__libc_read|__GI___libc_read|read|__read|__read_nocancel)$',
    'recv':   r'^(__libc_recv|recv|recvfrom|__libc_recvfrom|recvmsg|__libc_recvmsg|__GI___recv|__recv)$',
    'write':  r'^(__libc_write|__GI___libc_write|write|__write|__write_nocancel)$',
    'send':   r'^(__libc_send|send|sendto|__libc_sendto|sendmsg|__libc_sendmsg|__GI___send|__send)$',
    'writev': r'^(writev|__writev|__GI___writev|readv)$',
    'epoll_wait': r'^(epoll_wait|epoll_pwait|__epoll_wait|epoll_pwait2)$',
    'epoll_ctl':  r'^(epoll_ctl|__epoll_ctl)$',
    'malloc': r'^(malloc|__libc_malloc|__GI___libc_malloc)$',
    'realloc': r'^(realloc|__libc_realloc|__GI___libc_realloc)$',
    'free':   r'^(free|__libc_free|__GI___libc_free|cfree)$',
    'memcpy/memmove': r'^(__memcpy|memcpy|memmove|__memmove)\w*$|^__mem(cpy|move)_\w+$',
}
out = collections.Counter()
for fn, c in counts.items():
    base = fn.split("'")[0]
    for g, rx in groups.items():
        if re.match(rx, base):
            out[g] += c
for g in groups:
    print(g, out[g])
PY
}

printf '%-20s %10s %12s %14s %10s\n' server msgs "Ir/msg" "Ir fixed" "runs" | tee "$SUMMARY"
declare -A PER=()
for s in "${SERVERS[@]}"; do
  n=${s%%=*}
  one_run "$s" short "$SHORT" || continue; m1=$RUN_MSGS; i1=$RUN_IR
  one_run "$s" long "$DUR" || continue; m2=$RUN_MSGS; i2=$RUN_IR
  if [ "$m2" -le "$m1" ]; then echo "$n: no message difference ($m1 vs $m2)" | tee -a "$SUMMARY"; continue; fi
  per=$(awk -v a="$i1" -v b="$i2" -v x="$m1" -v y="$m2" 'BEGIN{printf "%.0f", (b-a)/(y-x)}')
  fixed=$(awk -v a="$i1" -v x="$m1" -v p="$per" 'BEGIN{printf "%.0f", a - x*p}')
  PER[$n]=$per
  printf '%-20s %10s %12s %14s %10s\n' "$n" "$((m2 - m1))" "$per" "$fixed" "${SHORT}s/${DUR}s" | tee -a "$SUMMARY"
  # per-message call counts (long - short)
  paste <(calls "$OUT/$n-short.out") <(calls "$OUT/$n-long.out") \
    | awk -v d="$((m2 - m1))" -v n="$n" '{printf "    %-16s %-15s %.3f per msg\n", n, $1, ($4-$2)/d}' | tee -a "$SUMMARY"
done

# callgrind_annotate's function table: the first $TOP rows after the "file:function" header,
# with the build paths shortened
top_fns() {
  awk -v top="$TOP" '/file:function/ {on=1; next} on && /^-+$/ {next} on && NF && n < top {print; n++}' \
    | sed -E 's#\[[^]]*\]$##; s#/tmp/[^ ]*/src/#src/#; s#/rustc/[0-9a-f]+/library/#std:#'
}

first=${SERVERS[0]%%=*}
if [ -n "${PER[$first]:-}" ]; then
  echo | tee -a "$SUMMARY"
  for n in "${!PER[@]}"; do
    [ "$n" = "$first" ] && continue
    awk -v a="${PER[$first]}" -v b="${PER[$n]}" -v f="$first" -v n="$n" 'BEGIN{printf "%s / %s Ir per msg = %.2f\n", f, n, a/b}' | tee -a "$SUMMARY"
  done
  echo | tee -a "$SUMMARY"
  echo "== top $TOP functions by Ir (self), $first, ${DUR}s run ($OUT/$first-long.out)" | tee -a "$SUMMARY"
  callgrind_annotate --inclusive=no --threshold=100 "$OUT/$first-long.out" 2>/dev/null \
    | top_fns | tee -a "$SUMMARY"
  echo | tee -a "$SUMMARY"
  echo "== top $TOP by inclusive Ir" | tee -a "$SUMMARY"
  callgrind_annotate --inclusive=yes --threshold=100 "$OUT/$first-long.out" 2>/dev/null \
    | top_fns | tee -a "$SUMMARY"
  echo | tee -a "$SUMMARY"
  echo "== callers of memcpy/memmove, $first" | tee -a "$SUMMARY"
  callgrind_annotate --tree=caller --inclusive=yes --threshold=100 "$OUT/$first-long.out" 2>/dev/null \
    | awk '/^ *$/ {n=0; next} {b[n++]=$0} /\* .*mem(cpy|move)/ {for (i=0; i<n-1 && i<5; i++) print b[i]; print}' \
    | sed -E 's#\[[^]]*\]$##; s#/tmp/[^ ]*/src/#src/#; s#/rustc/[0-9a-f]+/library/#std:#' | tee -a "$SUMMARY"
fi
echo "files: $OUT" | tee -a "$SUMMARY"
