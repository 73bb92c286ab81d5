#!/usr/bin/env bash
# A server behind nginx, as a WebSocket reverse proxy: what README's "Scaling out" describes,
# in the shape tests/browser/run.sh starts a server in.
#
#   tests/nginx/serve.sh SERVER_BINARY --port PORT --interface 127.0.0.1 [SERVER ARGS...]
#
# Starts SERVER_BINARY (with the other arguments) on a free loopback port of its own, then
# nginx (Debian's, installed if missing) in the foreground (`daemon off`) with its own
# configuration, pid file, logs and temp paths under a temp dir, listening on 127.0.0.1:PORT
# and proxying everything, WebSocket upgrades included, to the server. SIGTERM/SIGINT or
# either process ending stops both, by PID. nginx's error and access logs are copied to
# $ARTIFACTS/nginx-error.log and nginx-access.log if ARTIFACTS is set.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 SERVER_BINARY --port PORT [ARGS...]" >&2; exit 2; }
SERVER=$1
shift
PORT=""
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT=$2; shift ;;
    --interface) shift ;; # the server listens on loopback; nginx takes the front
    *) ARGS+=("$1") ;;
  esac
  shift
done
[ -n "$PORT" ] || { echo "serve.sh: no --port" >&2; exit 2; }

NGINX=${NGINX:-/usr/sbin/nginx}
if [ ! -x "$NGINX" ]; then
  echo "== installing Debian nginx"
  SUDO=""
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nginx-light < /dev/null \
    || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nginx < /dev/null
  [ -x "$NGINX" ] || { echo "nginx not found at $NGINX after install" >&2; exit 2; }
  # The package's own service is not ours to run.
  $SUDO systemctl disable --now nginx >/dev/null 2>&1 || $SUDO service nginx stop >/dev/null 2>&1 || true
fi

TMP=$(mktemp -d /tmp/wsreactor-nginx.XXXXXX)
BACKEND=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SERVER_PID=""
NGINX_PID=""
stop() {
  local rc=$?
  [ -n "$NGINX_PID" ] && kill -TERM "$NGINX_PID" 2>/dev/null || true
  [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 1 50); do
    { [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; } || { [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; } || break
    sleep 0.1
  done
  [ -n "$NGINX_PID" ] && kill -KILL "$NGINX_PID" 2>/dev/null || true
  [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null || true
  if [ -n "${ARTIFACTS:-}" ]; then
    cp "$TMP/error.log" "$ARTIFACTS/nginx-error.log" 2>/dev/null || true
    cp "$TMP/access.log" "$ARTIFACTS/nginx-access.log" 2>/dev/null || true
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap stop EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

"$SERVER" --port "$BACKEND" --interface 127.0.0.1 "${ARGS[@]}" &
SERVER_PID=$!
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$BACKEND") 2>/dev/null; then break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "serve.sh: the server exited" >&2; exit 2; }
  sleep 0.1
done

USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"
mkdir -p "$TMP/body" "$TMP/proxy" "$TMP/fastcgi" "$TMP/uwsgi" "$TMP/scgi"
cat > "$TMP/nginx.conf" <<CONF
$USER_LINE
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/error.log info;
events { worker_connections 512; }
http {
    access_log $TMP/access.log;
    client_body_temp_path $TMP/body;
    proxy_temp_path $TMP/proxy;
    fastcgi_temp_path $TMP/fastcgi;
    uwsgi_temp_path $TMP/uwsgi;
    scgi_temp_path $TMP/scgi;
    # Upgrade requests pass the upgrade on; others close the upstream connection.
    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        ''      close;
    }
    server {
        listen 127.0.0.1:$PORT;
        location / {
            proxy_pass http://127.0.0.1:$BACKEND;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            # Idle WebSockets are kept open by the server's pings (30 s by default).
            proxy_read_timeout 120s;
        }
    }
}
CONF
echo "serve.sh: nginx on 127.0.0.1:$PORT -> $SERVER on 127.0.0.1:$BACKEND"
"$NGINX" -p "$TMP" -c "$TMP/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
# Either ending ends the other.
wait -n "$SERVER_PID" "$NGINX_PID"
