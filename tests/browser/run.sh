#!/usr/bin/env bash
# Headless-browser test of the wsreactor test server and www/test.html.
#
#   tests/browser/run.sh [--ssl] SERVER_BINARY [RESOURCE_DIR]
#
# SERVER_BINARY is either a path to an executable (spaces allowed) or, if it is not
# an executable file, a command string split on whitespace (no quoting), e.g.
#   tests/browser/run.sh target/debug/examples/test-server
#   tests/browser/run.sh "python3 /tmp/mockserver/server.py"
# The server is started as
#   SERVER... --port PORT --interface 127.0.0.1 --resource-path RESOURCE_DIR
# on a free port (RESOURCE_DIR defaults to the repo's www/), and always killed on exit.
# Pass a built binary rather than "cargo run ...", so the PID killed is the server's.
# --ssl: the server also gets --ssl (a self-signed certificate made at its start-up) and the
# page is opened at https://127.0.0.1:PORT/ (Chromium ignores certificate errors; the page
# must open wss:// itself); the log is browser-server-https.log, the screenshots
# browser-https-page*.png.
#
# Env: ARTIFACTS (screenshots + server log; default REPO/artifacts), CHROMIUM
# (default /usr/bin/chromium), TEST_TIMEOUT_MS (node script bound, default 60000).
# Exit status: the node script's (0 = all passed), or non-zero on a setup failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

SCHEME=http
TLS_ARGS=()
if [ "${1:-}" = "--ssl" ]; then
  SCHEME=https
  TLS_ARGS=(--ssl)
  shift
fi
if [ $# -lt 1 ] || [ -z "$1" ]; then
  echo "usage: $0 [--ssl] SERVER_BINARY [RESOURCE_DIR]" >&2
  exit 2
fi
if [ -x "$1" ] && [ -f "$1" ]; then
  SERVER_CMD=("$1")
else
  read -r -a SERVER_CMD <<< "$1"
fi
RESOURCE_DIR=${2:-$REPO/www}
RESOURCE_DIR=$(cd "$RESOURCE_DIR" && pwd)
export ARTIFACTS=${ARTIFACTS:-$REPO/artifacts}
mkdir -p "$ARTIFACTS"
ARTIFACTS=$(cd "$ARTIFACTS" && pwd)
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

# --- Chromium (Debian package) -------------------------------------------------
if [ ! -x "$CHROMIUM" ]; then
  echo "== installing Debian chromium"
  SUDO=""
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium < /dev/null
  [ -x "$CHROMIUM" ] || { echo "chromium not found at $CHROMIUM after install" >&2; exit 2; }
fi

# --- playwright-core ------------------------------------------------------------
if [ ! -d "$HERE/node_modules/playwright-core" ]; then
  echo "== npm ci in tests/browser"
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error < /dev/null)
fi

# --- free port on 127.0.0.1 -----------------------------------------------------
PORT=$(node -e '
  const s = require("net").createServer();
  s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });')

# --- server ---------------------------------------------------------------------
if [ "$SCHEME" = https ]; then SERVER_LOG="$ARTIFACTS/browser-server-https.log"; else SERVER_LOG="$ARTIFACTS/browser-server.log"; fi
SERVER_PID=""
cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    # the server runs in its own process group (setsid): signal that group, by the server's PID
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      kill -KILL -- "-$SERVER_PID" 2>/dev/null || kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== starting: ${SERVER_CMD[*]} --port $PORT --interface 127.0.0.1 --resource-path $RESOURCE_DIR ${TLS_ARGS[*]:-}"
if command -v setsid >/dev/null; then
  setsid "${SERVER_CMD[@]}" --port "$PORT" --interface 127.0.0.1 --resource-path "$RESOURCE_DIR" ${TLS_ARGS[@]+"${TLS_ARGS[@]}"} \
    > "$SERVER_LOG" 2>&1 < /dev/null &
else
  "${SERVER_CMD[@]}" --port "$PORT" --interface 127.0.0.1 --resource-path "$RESOURCE_DIR" ${TLS_ARGS[@]+"${TLS_ARGS[@]}"} \
    > "$SERVER_LOG" 2>&1 < /dev/null &
fi
SERVER_PID=$!

# wait (bounded, ~10 s) until the port accepts connections
ready=0
for _ in $(seq 1 100); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "server exited before accepting connections; log ($SERVER_LOG):" >&2
    tail -n 30 "$SERVER_LOG" >&2 || true
    exit 2
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then ready=1; break; fi
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  echo "server did not accept on 127.0.0.1:$PORT within 10 s; log ($SERVER_LOG):" >&2
  tail -n 30 "$SERVER_LOG" >&2 || true
  exit 2
fi

# --- the test -------------------------------------------------------------------
set +e
node "$HERE/browser-test.mjs" "$SCHEME://127.0.0.1:$PORT/"
status=$?
set -e
if [ "$status" != 0 ]; then
  echo "== browser test failed (exit $status); server log tail ($SERVER_LOG):"
  tail -n 30 "$SERVER_LOG" || true
fi
exit "$status"
