#!/usr/bin/env bash
# Mirror rooms across two test-servers through Redis, in a browser:
#
#   tests/redis/run.sh TEST_SERVER_BINARY   # built with --features redis
#
# Starts Debian's redis-server on a free loopback port (installed if missing), two
# test-servers on two ports with --redis, and runs the headless-Chromium test of the test
# page with page 1 on the first server and page 2 on the second (SECOND_URL): the stroke
# drawn on page 1 must reach page 2 through Redis. Every process started here is stopped
# by PID. Logs in $ARTIFACTS/redis/.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SERVER=${1:?usage: $0 TEST_SERVER_BINARY}
ART=${ARTIFACTS:-$REPO/artifacts}
OUT="$ART/redis"
mkdir -p "$OUT"
if ! command -v redis-server >/dev/null; then
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server </dev/null
fi
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >"$OUT/redis.log" 2>&1 </dev/null &
pids+=($!)
wait_port "$rport"
ports=()
for name in a b; do
  p=$(free_port)
  "$SERVER" --port "$p" --interface 127.0.0.1 --resource-path "$REPO/www" --redis "redis://127.0.0.1:$rport/" \
    >"$OUT/test-server-$name.log" 2>&1 </dev/null &
  pids+=($!)
  wait_port "$p"
  ports+=("$p")
done
# the page's mirror room is the default one; both servers share it through Redis
ARTIFACTS="$OUT" SECOND_URL="http://127.0.0.1:${ports[1]}/" \
  node "$REPO/tests/browser/browser-test.mjs" "http://127.0.0.1:${ports[0]}/"
