#!/usr/bin/env bash
# The C ABI's checks (called by scripts/test.sh; about a minute):
#   1. clippy and unit tests of wsreactor-c, the release build of libwsreactor_c.{so,a}
#   2. the headers against the library's exports (tests/check-headers.sh)
#   3. C programs built with gcc against the library: the wsServer echo example (shared
#      and static), tests/threads.c (sends from threads, broadcast, ping, stale handles),
#      the lws-style dumb-increment example; each driven by Python `websockets` (a venv)
#      through tests/test_wsserver.py and tests/test_lws.py
#   4. the Guile 3 echo server (examples/echo.scm, (system foreign)), tested like the C one
# Installs what is missing (apt-get: gcc, guile-3.0, python3-venv; pip: websockets).
# Loopback only; servers are started on free ports and stopped by PID.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ART=${ARTIFACTS:-$ROOT/artifacts}/capi
mkdir -p "$ART"
cd "$ROOT"
step() { printf '\n==> capi: %s\n' "$*"; }

need_apt=()
command -v gcc >/dev/null || need_apt+=(gcc libc6-dev)
command -v guile >/dev/null || need_apt+=(guile-3.0)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if ((${#need_apt[@]})); then
  step "apt-get install ${need_apt[*]}"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" </dev/null
fi
VENV="$ART/venv"
if ! "$VENV/bin/python" -c 'import websockets' 2>/dev/null; then
  step "pip install websockets (venv $VENV)"
  python3 -m venv "$VENV"
  timeout 300 "$VENV/bin/pip" install -q --disable-pip-version-check websockets </dev/null
fi
PY="$VENV/bin/python"

step "cargo clippy / test -p wsreactor-c, cargo build --release -p wsreactor-c"
cargo clippy -p wsreactor-c --all-targets -- -D warnings
cargo test -p wsreactor-c --quiet
cargo build --release -p wsreactor-c
LIB="$ROOT/target/release"
ls -l "$LIB/libwsreactor_c.so" "$LIB/libwsreactor_c.a"

step "headers against the exports"
"$HERE/tests/check-headers.sh" "$LIB/libwsreactor_c.so"

step "gcc: examples and tests against the library"
BIN="$ART/bin"; mkdir -p "$BIN"
CFLAGS=(-Wall -Wextra -Werror -O2 -I"$HERE/include")
gcc "${CFLAGS[@]}" "$HERE/examples/echo.c" -L"$LIB" -lwsreactor_c -Wl,-rpath,"$LIB" -o "$BIN/echo"
gcc "${CFLAGS[@]}" "$HERE/examples/echo.c" "$LIB/libwsreactor_c.a" -lpthread -ldl -lm -o "$BIN/echo-static"
gcc "${CFLAGS[@]}" -pthread "$HERE/tests/threads.c" -L"$LIB" -lwsreactor_c -Wl,-rpath,"$LIB" -o "$BIN/threads"
gcc "${CFLAGS[@]}" -pthread "$HERE/examples/dumb-increment.c" -L"$LIB" -lwsreactor_c -Wl,-rpath,"$LIB" -o "$BIN/dumb-increment"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
start() { # LOG CMD... ; sets $port
  local log=$1; shift
  port=$(free_port)
  WSREACTOR_INTERFACE=127.0.0.1 "$@" "$port" >"$ART/$log.log" 2>&1 &
  pids+=($!)
  wait_port "$port"
}
stop_last() { kill "${pids[-1]}" 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true; }

step "wsServer API: C echo server (shared library), Python websockets client"
start echo "$BIN/echo"; timeout 60 "$PY" "$HERE/tests/test_wsserver.py" echo "$port"; stop_last
step "wsServer API: C echo server (static library)"
start echo-static "$BIN/echo-static"; timeout 60 "$PY" "$HERE/tests/test_wsserver.py" echo "$port"; stop_last
step "wsServer API from C threads: sends, broadcast, ping threshold, stale handles"
start threads "$BIN/threads"; timeout 60 "$PY" "$HERE/tests/test_wsserver.py" threads "$port"; stop_last
if grep -q 'ERROR' "$ART/threads.log"; then cat "$ART/threads.log"; exit 1; fi

step "lws-style API: C dumb-increment server (libwebsocket_service), Python websockets client"
DI_FILE="$HERE/examples/dumb-increment.c"
start dumb-increment "$BIN/dumb-increment" "$DI_FILE"; timeout 60 "$PY" "$HERE/tests/test_lws.py" "$port" "$DI_FILE"; stop_last
step "lws-style API: the same with its own poll() loop (EXTERNAL_POLL, *_POLL_FD, libwebsocket_service_fd)"
start dumb-increment-poll "$BIN/dumb-increment" --poll "$DI_FILE"; timeout 60 "$PY" "$HERE/tests/test_lws.py" "$port" "$DI_FILE"; stop_last
if grep -q 'ERROR' "$ART"/dumb-increment*.log; then cat "$ART"/dumb-increment*.log; exit 1; fi
if [[ -f "$HERE/examples/echo.scm" ]]; then
  step "Guile 3 echo server on the wsServer API through (system foreign)"
  start guile-echo env WSREACTOR_LIB="$LIB/libwsreactor_c.so" guile --no-auto-compile "$HERE/examples/echo.scm"
  timeout 60 "$PY" "$HERE/tests/test_wsserver.py" echo "$port"; stop_last
  if grep -q 'ERROR' "$ART/guile-echo.log"; then cat "$ART/guile-echo.log"; exit 1; fi
fi
step "all passed"
