#!/usr/bin/env bash
# Interop checks of the example servers against other people's clients, plain and over TLS.
#
#   tests/interop/run.sh [EXAMPLES_DIR]      # default: REPO/target/release/examples
#
#   1. libwebsockets-test-client (Debian libwebsockets-test-server) against test-server,
#      plain and with --ssl against test-server --ssl: the dumb-increment and mirror
#      connections are established and both receive data.
#   2. Python `websockets` (in a venv) over wss:// against echo-server --cert/--key with a
#      self-signed certificate made here by openssl; the client trusts exactly that
#      certificate and checks the host name; text and binary messages are echoed.
#   3. openssl s_client against the same echo-server: handshake verifies, TLS 1.3, ALPN
#      http/1.1 when offered (none when not), and an HTTP request typed through it gets
#      404 (echo-server has no file server).
#   4. curl -k https:// against test-server --ssl gets 200 for /; plain http:// on the
#      same port gets 400.
#   5. Our test-client (the in-loop client role) against libwebsockets-test-server, plain
#      and with --ssl (certificate from ../shared/conformance/gen-cert.sh; test-client -k),
#      and against our test-server, plain and --ssl (-k): `test-client --count 5` gets 5
#      counter values and exits 0 in time; without -k the self-signed certificate is
#      refused (CLIENT_CONNECTION_ERROR, exit 1).
#   6. Our blocking client (examples/blocking-echo-check) against a Python `websockets`
#      echo server (tests/interop/ws_echo_server.py), ws:// and wss:// (--insecure, and
#      verified with --cafile against the server's certificate; without either the
#      self-signed certificate is refused): text, binary, ping and close.
#   6b. permessage-deflate with Python websockets both ways: its client offering every
#      parameter combination to echo-server --deflate, our client (client-bench --deflate)
#      against its server demanding each server-side combination.
#   6c. permessage-deflate with Node `ws` both ways (tests/interop/deflate_check.js): its
#      client offering every parameter combination (48) to echo-server --deflate, and our
#      blocking client (blocking-echo-check --deflate) against a ws server configured with
#      each server-side combination (36: server/client_no_context_takeover,
#      server/client_max_window_bits none/9/12), the parameters ws accepted checked.
#   7. The blocking client (blocking-echo-check --proxy) against our echo-server through
#      Debian's tinyproxy (HTTP CONNECT, basic auth, ConnectPort limited to the echo
#      servers' ports), ws:// and wss:// (TLS inside the tunnel, --insecure); a wrong
#      password and a port outside ConnectPort are refused with the proxy's status line.
#
# Installs what is missing (apt-get: libwebsockets-test-server, openssl, curl, python3-venv,
# nodejs and npm; npm: ws@8 into ARTIFACTS/interop/node;
# tinyproxy (run here in the foreground on a free port, not as the package's service);
# pip: websockets into ARTIFACTS/interop/venv). Every client runs under `timeout`; the
# servers are started here and stopped by their PIDs. Loopback only.
# Env: ARTIFACTS (logs; default REPO/artifacts). TEST_SERVER: the binary in EXAMPLES_DIR
# that checks 1, 4 and 5 run against (default test-server; scripts/test.sh also runs them
# against test-server-extpoll); ONLY_TEST_SERVER=1 runs only those checks (with our
# test-client, not against libwebsockets-test-server). Exit status: 0 all passed, 1 a check failed,
# 2 setup failure.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
EX=${1:-$REPO/target/release/examples}
TS=${TEST_SERVER:-test-server}
ONLY_TS=${ONLY_TEST_SERVER:-}
ART=${ARTIFACTS:-$REPO/artifacts}
OUT="$ART/interop"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# --- installs -------------------------------------------------------------------
need_apt=()
{ command -v libwebsockets-test-client && command -v libwebsockets-test-server; } >/dev/null || need_apt+=(libwebsockets-test-server)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
command -v tinyproxy >/dev/null || need_apt+=(tinyproxy)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [[ -z $ONLY_TS ]]; then
  command -v node >/dev/null || need_apt+=(nodejs)
  command -v npm >/dev/null || need_apt+=(npm)
fi
if ((${#need_apt[@]})); then
  echo "== apt-get install ${need_apt[*]}"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" </dev/null
fi
if [[ -z $ONLY_TS ]]; then
VENV="$OUT/venv"
if ! "$VENV/bin/python" -c 'import websockets' 2>/dev/null; then
  echo "== pip install websockets (venv $VENV)"
  python3 -m venv "$VENV"
  timeout 300 "$VENV/bin/pip" install -q --disable-pip-version-check websockets </dev/null
fi
fi
if [[ -z $ONLY_TS ]]; then
NODE_DIR="$OUT/node"
if ! NODE_PATH="$NODE_DIR/node_modules" node -e 'require("ws")' 2>/dev/null; then
  echo "== npm install ws@8 ($NODE_DIR)"
  mkdir -p "$NODE_DIR"
  (cd "$NODE_DIR" && timeout 300 npm install --no-audit --no-fund --loglevel=error --prefix "$NODE_DIR" ws@8 </dev/null)
fi
fi
for b in echo-server "$TS" test-client blocking-echo-check client-bench; do
  [[ -x "$EX/$b" ]] || { echo "no $EX/$b (cargo build --release --examples)" >&2; exit 2; }
done

# --- servers --------------------------------------------------------------------
pids=()
TMP=$(mktemp -d "${TMPDIR:-/tmp}/wsreactor-interop.XXXXXX")
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start LOGNAME BINARY ARGS...: starts on a free port (in $port) and waits until it accepts
start() {
  local log="$OUT/$1.log"; shift
  port=$(free_port)
  "$@" --port "$port" --interface 127.0.0.1 >"$log" 2>&1 </dev/null &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { echo "server $* exited; log:" >&2; tail -n 20 "$log" >&2; exit 2; }
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server $* never accepted on $port" >&2
  exit 2
}

failures=()
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures+=("$1"); }

# --- 1. libwebsockets-test-client -------------------------------------------------
# -d 1055 = err|warn|notice|info|debug|user. The client logs each dumb-increment message
# at info ("rx LEN 'NUMBER'") but no mirror message, so mirror messages are counted from
# the debug line lws prints for every whole frame it receives, minus the dumb ones. The
# stream is filtered here (it is ~40 MB in 5 s); the counts go into the kept log.
lws_client() { # NAME PORT [--ssl]
  local name=$1 p=$2; shift 2
  local log="$OUT/$name.log" rc=0
  set +e
  timeout 5 libwebsockets-test-client 127.0.0.1 --port="$p" -d 1055 "$@" 2>&1 </dev/null | awk '
    /LWS_CALLBACK_CLIENT_WRITEABLE/ { w++; next }
    /spilling as we have the whole frame/ { f++; next }
    / I: rx [0-9]+ / { r++; if (r <= 3) print; next }
    / D: |lws_issue_raw/ { next }
    { print }
    END { printf "COUNTS mirror_sent=%d frames_received=%d dumb_received=%d mirror_received=%d\n", w, f, r, f - r }' >"$log"
  rc=${PIPESTATUS[0]}
  set -e
  local counts est_d est_m errs
  counts=$(grep '^COUNTS' "$log" || true)
  est_d=$(grep -c 'dumb: LWS_CALLBACK_CLIENT_ESTABLISHED' "$log" || true)
  est_m=$(grep -c 'mirror: LWS_CALLBACK_CLIENT_ESTABLISHED' "$log" || true)
  errs=$(grep -E '\] E: ' "$log" | grep -v 'E: Exiting' | head -3 || true)
  local dumb mirror
  dumb=$(sed -n 's/.*dumb_received=\([0-9-]*\).*/\1/p' <<<"$counts")
  mirror=$(sed -n 's/.*mirror_received=\([0-9-]*\).*/\1/p' <<<"$counts")
  local why=""
  [[ $rc == 124 ]] || why+=" client exited with $rc (expected to run until the 5 s timeout);"
  [[ $est_d -ge 1 ]] || why+=" dumb-increment never established;"
  [[ $est_m -ge 1 ]] || why+=" mirror never established;"
  [[ ${dumb:-0} -ge 10 ]] || why+=" only ${dumb:-0} dumb-increment messages received;"
  [[ ${mirror:-0} -ge 100 ]] || why+=" only ${mirror:-0} mirror messages received;"
  [[ -z $errs ]] || why+=" errors: $errs;"
  if [[ -z $why ]]; then
    pass "$name: dumb-increment and mirror established ($est_d, $est_m); ${counts#COUNTS }"
  else
    fail "$name:$why (log $log)"
  fi
}

# --no-deflate: libwebsockets' test client (4.1.6) takes permessage-deflate when offered,
# then, on our mirror flood with deflate on, never services its dumb-increment socket
# again (0 counter messages in 5 s; its own test server does not negotiate deflate, so it
# is not tested against it there). Deflate interop is checked with Chromium, Python
# websockets and Autobahn instead.
start test-server-plain "$EX/$TS" --resource-path "$REPO/www" --no-deflate
ts_plain_port=$port
lws_client lws-test-client-plain "$port"
start test-server-ssl "$EX/$TS" --resource-path "$REPO/www" --ssl --no-deflate
ts_ssl_port=$port
lws_client lws-test-client-ssl "$port" --ssl
grep -q 'Selfsigned certs allowed' "$OUT/lws-test-client-ssl.log" && grep -q 'TLSv1.3' "$OUT/lws-test-client-ssl.log" ||
  fail "lws-test-client-ssl: log does not show a TLS 1.3 connection (log $OUT/lws-test-client-ssl.log)"

# --- 4. curl against test-server --ssl ---------------------------------------------
code=$(timeout 10 curl -sk -o "$OUT/curl-https-index.html" -w '%{http_code}' "https://127.0.0.1:$ts_ssl_port/" || true)
if [[ $code == 200 ]] && grep -q '<html' "$OUT/curl-https-index.html"; then
  pass "curl -k https://127.0.0.1:$ts_ssl_port/ -> 200 ($(wc -c <"$OUT/curl-https-index.html") bytes)"
else
  fail "curl -k https:// -> ${code:-no answer}, expected 200 with the test page"
fi
code=$(timeout 10 curl -s -o "$OUT/curl-plain-on-tls.html" -w '%{http_code}' "http://127.0.0.1:$ts_ssl_port/" || true)
if [[ $code == 400 ]]; then
  pass "curl http:// on the TLS port -> 400 ($(head -c 120 "$OUT/curl-plain-on-tls.html" | tr -d '\n'))"
else
  fail "curl http:// on the TLS port -> ${code:-no answer}, expected 400"
fi

if [[ -z $ONLY_TS ]]; then
# --- certificate for echo-server --cert/--key --------------------------------------
# Self-signed, no CA: a leaf (CA:FALSE) for localhost and 127.0.0.1.
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>"$TMP/openssl-req.log" ||
  { cat "$TMP/openssl-req.log" >&2; exit 2; }
cp "$TMP/cert.pem" "$OUT/echo-server-cert.pem"
start echo-server-tls "$EX/echo-server" --cert "$TMP/cert.pem" --key "$TMP/key.pem"
echo_port=$port

# --- 2. Python websockets over wss:// ------------------------------------------------
if timeout 40 "$VENV/bin/python" "$HERE/ws_client.py" "wss://127.0.0.1:$echo_port/" "$TMP/cert.pem" \
  >"$OUT/python-websockets.log" 2>&1 </dev/null; then
  pass "python websockets $("$VENV/bin/python" -c 'import websockets; print(websockets.__version__)') over wss://: $(grep -c '^ok ' "$OUT/python-websockets.log") messages echoed; $(head -1 "$OUT/python-websockets.log")"
else
  fail "python websockets over wss://: $(grep -E 'FAIL|Error|error' "$OUT/python-websockets.log" | head -3) (log $OUT/python-websockets.log)"
fi

# --- 3. openssl s_client -------------------------------------------------------------
sc=(openssl s_client -connect "127.0.0.1:$echo_port" -servername localhost -CAfile "$TMP/cert.pem" -verify_return_error)
timeout 10 "${sc[@]}" -alpn http/1.1 </dev/null >"$OUT/s_client-alpn.log" 2>&1 || true
why=""
grep -q 'Verification: OK' "$OUT/s_client-alpn.log" || why+=" certificate not verified;"
grep -Eq '^(New|Reused), TLSv1.3,' "$OUT/s_client-alpn.log" || why+=" not TLS 1.3 ($(grep -E '^(New|Reused),' "$OUT/s_client-alpn.log"));"
grep -q '^ALPN protocol: http/1.1' "$OUT/s_client-alpn.log" || why+=" ALPN http/1.1 not selected;"
if [[ -z $why ]]; then
  pass "openssl s_client -alpn http/1.1: $(grep -E '^(New|Reused),' "$OUT/s_client-alpn.log"), $(grep '^ALPN protocol' "$OUT/s_client-alpn.log"), verification OK"
else
  fail "openssl s_client -alpn http/1.1:$why (log $OUT/s_client-alpn.log)"
fi
timeout 10 "${sc[@]}" </dev/null >"$OUT/s_client-noalpn.log" 2>&1 || true
if grep -q '^No ALPN negotiated' "$OUT/s_client-noalpn.log" && grep -Eq '^(New|Reused), TLSv1.3,' "$OUT/s_client-noalpn.log"; then
  pass "openssl s_client without -alpn: TLS 1.3, no ALPN negotiated"
else
  fail "openssl s_client without -alpn: expected TLS 1.3 and 'No ALPN negotiated' (log $OUT/s_client-noalpn.log)"
fi
printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
  timeout 10 "${sc[@]}" -quiet -ign_eof >"$OUT/s_client-http.log" 2>&1 || true
status=$(grep -m1 -E '^HTTP/1\.[01] [0-9]{3}' "$OUT/s_client-http.log" | tr -d '\r' || true)
if [[ $status == "HTTP/1.1 404"* ]]; then
  pass "HTTP request through openssl s_client: $status"
else
  fail "HTTP request through openssl s_client: got '${status:-no status line}', expected HTTP/1.1 404 (log $OUT/s_client-http.log)"
fi

fi
# --- 5. our test-client against libwebsockets-test-server and our test-server --------
# test_client NAME PORT ARGS...: --count 5 must exit 0 within 10 s with 5 counter values
test_client() {
  local name=$1 p=$2; shift 2
  local log="$OUT/$name.log" rc=0
  timeout 10 "$EX/test-client" 127.0.0.1 --port "$p" --count 5 "$@" >"$log" 2>&1 </dev/null || rc=$?
  local got
  got=$(grep -c '^dumb-increment-protocol: [0-9][0-9]*$' "$log" || true)
  if [[ $rc == 0 && $got -ge 5 ]] && grep -q '^lws-mirror-protocol: established' "$log"; then
    pass "$name: $got counter values, mirror established; $(tail -n 1 "$log" | sed 's/^test-client: //')"
  else
    fail "$name: exit $rc, $got counter values: $(grep -E 'ERROR|error|closed' "$log" | head -3) (log $log)"
  fi
}
if [[ -z $ONLY_TS ]]; then
LWS_CERT_DIR="$TMP/lws-cert"
"$REPO/../shared/conformance/gen-cert.sh" "$LWS_CERT_DIR" >/dev/null 2>"$TMP/gen-cert.log" ||
  { cat "$TMP/gen-cert.log" >&2; exit 2; }
start lws-test-server-plain libwebsockets-test-server
test_client test-client-vs-lws-plain "$port"
# The Debian package's own certificate is RSA-1024, which OpenSSL 3 refuses: give it ours.
start lws-test-server-ssl libwebsockets-test-server --ssl -C "$LWS_CERT_DIR/tls-cert.pem" -K "$LWS_CERT_DIR/tls-key.pem"
test_client test-client-vs-lws-ssl "$port" --ssl -k
grep -q "using TLS mode" "$OUT/lws-test-server-ssl.log" ||
  fail "lws-test-server-ssl: its log does not say it serves TLS (log $OUT/lws-test-server-ssl.log)"
fi
test_client test-client-vs-test-server-plain "$ts_plain_port"
test_client test-client-vs-test-server-ssl "$ts_ssl_port" --ssl -k
# verifying (no -k): test-server's start-up certificate is self-signed, so it is refused
rc=0
timeout 10 "$EX/test-client" 127.0.0.1 --port "$ts_ssl_port" --ssl --count 5 >"$OUT/test-client-verify-refused.log" 2>&1 </dev/null || rc=$?
if [[ $rc == 1 ]] && grep -q 'CLIENT_CONNECTION_ERROR: .*certificate' "$OUT/test-client-verify-refused.log"; then
  pass "test-client --ssl without -k refuses the self-signed certificate: $(grep -m1 CLIENT_CONNECTION_ERROR "$OUT/test-client-verify-refused.log")"
else
  fail "test-client --ssl without -k: exit $rc, expected 1 with a certificate error (log $OUT/test-client-verify-refused.log)"
fi

if [[ -z $ONLY_TS ]]; then
# --- 6. the blocking client against Python websockets -------------------------------
py_echo() { # LOGNAME [CERT KEY]: starts ws_echo_server.py on a free port (in $port)
  local log="$OUT/$1.log"; shift
  port=$(free_port)
  "$VENV/bin/python" "$HERE/ws_echo_server.py" "$port" "$@" >"$log" 2>&1 </dev/null &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { echo "ws_echo_server.py exited; log:" >&2; tail -n 20 "$log" >&2; exit 2; }
    grep -q '^listening' "$log" && return 0
    sleep 0.1
  done
  echo "ws_echo_server.py never listened" >&2
  exit 2
}
blocking_check() { # NAME URL [--insecure]
  local name=$1; shift
  if timeout 30 "$EX/blocking-echo-check" "$@" >"$OUT/$name.log" 2>&1 </dev/null; then
    pass "$name: $(grep -c '^ok ' "$OUT/$name.log") checks ok against python websockets $("$VENV/bin/python" -c 'import websockets; print(websockets.__version__)')"
  else
    fail "$name: $(grep -m1 FAIL "$OUT/$name.log") (log $OUT/$name.log)"
  fi
}
py_echo python-echo-plain
blocking_check blocking-client-plain "ws://127.0.0.1:$port/"

# --- 6b. permessage-deflate with Python websockets, both directions -------------------
# Its client offers each parameter combination (48) to echo-server --deflate; then our
# client (client-bench, 10 connections offering deflate) echoes 16 KiB JSON-like text for
# a second with a websockets server demanding each server-side combination.
start echo-server-deflate "$EX/echo-server" --deflate
if timeout 120 "$VENV/bin/python" "$HERE/deflate_check.py" client "ws://127.0.0.1:$port/" \
  >"$OUT/python-deflate-client.log" 2>&1 </dev/null; then
  pass "python websockets client, permessage-deflate: $(grep -c '^ok ' "$OUT/python-deflate-client.log") parameter combinations negotiated and echoed"
else
  fail "python-deflate-client: $(grep -m1 -E 'FAIL|Error' "$OUT/python-deflate-client.log") (log $OUT/python-deflate-client.log)"
fi
for combo in "0 0 - -" "1 0 - -" "0 1 - -" "1 1 - -" "0 0 10 -" "0 0 - 9" "1 1 9 12"; do
  name="python-deflate-server-${combo// /_}"
  port=$(free_port)
  # shellcheck disable=SC2086
  "$VENV/bin/python" "$HERE/deflate_check.py" server "$port" $combo >"$OUT/$name.log" 2>&1 </dev/null &
  pids+=($!)
  for _ in $(seq 1 100); do grep -q '^deflate echo' "$OUT/$name.log" && break; sleep 0.1; done
  out=$(timeout 30 "$EX/client-bench" echo "ws://127.0.0.1:$port/" --conns 10 --depth 2 --size 16384 --secs 1 --json 1 --deflate 1 2>&1 </dev/null || true)
  if grep -q 'deflated=10 msgs=[1-9]' <<<"$out" && grep -q 'failed=0' <<<"$out"; then
    pass "our client, permessage-deflate, python websockets server (sNCT cNCT sMWB cMWB = $combo): $(grep -o 'msgs=[0-9]*' <<<"$out") echoed"
  else
    fail "$name: $out"
  fi
  kill "${pids[-1]}" 2>/dev/null || true
done
# --- 6c. permessage-deflate with Node ws, both directions -----------------------------
# Its client offers each parameter combination (48) to echo-server --deflate; then our
# blocking client offers deflate to ws servers, one per server-side combination, and the
# parameters each one accepted are checked against its configuration.
start echo-server-deflate-node "$EX/echo-server" --deflate
ws_version=$(NODE_PATH="$NODE_DIR/node_modules" node -p 'require("ws/package.json").version')
if NODE_PATH="$NODE_DIR/node_modules" timeout 90 node "$HERE/deflate_check.js" client "ws://127.0.0.1:$port/" \
  >"$OUT/node-deflate-client.log" 2>&1 </dev/null; then
  pass "node ws $ws_version client, permessage-deflate: $(grep -c '^ok ' "$OUT/node-deflate-client.log") parameter combinations negotiated and echoed"
else
  fail "node-deflate-client: $(grep -m1 FAIL "$OUT/node-deflate-client.log") (log $OUT/node-deflate-client.log)"
fi
combos=()
for a in 0 1; do for b in 0 1; do for c in - 9 12; do for d in - 9 12; do combos+=("$a $b $c $d"); done; done; done; done
NODE_PATH="$NODE_DIR/node_modules" node "$HERE/deflate_check.js" server "${combos[@]}" \
  >"$OUT/node-deflate-server.log" 2>&1 </dev/null &
pids+=($!)
for _ in $(seq 1 100); do [[ $(grep -c '^listen' "$OUT/node-deflate-server.log") == "${#combos[@]}" ]] && break; sleep 0.1; done
node_ok=0 node_bad=()
while read -r _ p a b c d; do
  rc=0
  timeout 20 "$EX/blocking-echo-check" "ws://127.0.0.1:$p/" --deflate >"$OUT/node-deflate-server-$p.log" 2>&1 </dev/null || rc=$?
  neg=$(grep -m1 "^neg $p " "$OUT/node-deflate-server.log" || true)
  if [[ $rc == 0 && $neg == "neg $p deflate snct=$a cnct=$b smwb=$c cmwb=$d" ]]; then
    node_ok=$((node_ok + 1))
  else
    node_bad+=("[$a $b $c $d: rc $rc, ${neg:-no connection}]")
  fi
done < <(grep '^listen' "$OUT/node-deflate-server.log")
if [[ $node_ok == "${#combos[@]}" ]]; then
  pass "our client, permessage-deflate, node ws $ws_version servers: $node_ok of ${#combos[@]} combinations (sNCT cNCT sMWB cMWB) negotiated as configured and echoed"
else
  fail "node-deflate-server: $node_ok of ${#combos[@]} ok; ${node_bad[*]:0:3} (logs $OUT/node-deflate-server*.log)"
fi
kill "${pids[-1]}" 2>/dev/null || true
py_echo python-echo-tls "$LWS_CERT_DIR/tls-cert.pem" "$LWS_CERT_DIR/tls-key.pem"
blocking_check blocking-client-tls "wss://localhost:$port/" --insecure
blocking_check blocking-client-tls-cafile "wss://localhost:$port/" --cafile "$LWS_CERT_DIR/tls-cert.pem"
# without the CA file (web PKI roots) the self-signed certificate must be refused
rc=0
timeout 30 "$EX/blocking-echo-check" "wss://localhost:$port/" >"$OUT/blocking-client-tls-unverified.log" 2>&1 </dev/null || rc=$?
if [[ $rc == 1 ]] && grep -q '^FAIL' "$OUT/blocking-client-tls-unverified.log"; then
  pass "blocking-client-tls-unverified: the self-signed certificate is refused without --cafile ($(grep -m1 '^FAIL' "$OUT/blocking-client-tls-unverified.log" | cut -c1-100))"
else
  fail "blocking-client-tls-unverified: exit $rc, expected 1 (log $OUT/blocking-client-tls-unverified.log)"
fi

# --- 7. the blocking client through tinyproxy (HTTP CONNECT) ---------------------------
start echo-server-plain "$EX/echo-server"
echo_plain_port=$port
proxy_port=$(free_port)
cat >"$TMP/tinyproxy.conf" <<EOF
Port $proxy_port
Listen 127.0.0.1
Timeout 30
LogLevel Info
MaxClients 10
Allow 127.0.0.1
ConnectPort $echo_plain_port
ConnectPort $echo_port
BasicAuth wsreactor s3cret-pw
EOF
# as root it refuses to run without a user to drop to
[[ $(id -u) != 0 ]] || printf 'User nobody\nGroup nogroup\n' >>"$TMP/tinyproxy.conf"
tinyproxy -d -c "$TMP/tinyproxy.conf" >"$OUT/tinyproxy.log" 2>&1 </dev/null &
pids+=("$!")
for i in $(seq 1 100); do
  kill -0 "${pids[-1]}" 2>/dev/null || { echo "tinyproxy exited; log:" >&2; tail -n 20 "$OUT/tinyproxy.log" >&2; exit 2; }
  (exec 3<>"/dev/tcp/127.0.0.1/$proxy_port") 2>/dev/null && break
  ((i < 100)) || { echo "tinyproxy never accepted on $proxy_port" >&2; exit 2; }
  sleep 0.1
done
TP_VERSION=$(tinyproxy -v 2>&1 | head -1)
proxy_check() { # NAME URL PROXY [--insecure]
  local name=$1 url=$2 via=$3; shift 3
  if timeout 30 "$EX/blocking-echo-check" "$url" --proxy "$via" "$@" >"$OUT/$name.log" 2>&1 </dev/null &&
    grep -q "through the proxy" "$OUT/$name.log"; then
    pass "$name: $(grep -c '^ok ' "$OUT/$name.log") checks ok through $TP_VERSION"
  else
    fail "$name: $(grep -m1 FAIL "$OUT/$name.log") (log $OUT/$name.log)"
  fi
}
# the password percent-encoded in the proxy URL ("%2D" is "-")
proxy_check blocking-client-tinyproxy-plain "ws://127.0.0.1:$echo_plain_port/" "http://wsreactor:s3cret%2Dpw@127.0.0.1:$proxy_port"
proxy_check blocking-client-tinyproxy-tls "wss://localhost:$echo_port/" "http://wsreactor:s3cret-pw@127.0.0.1:$proxy_port" --insecure
grep -q "CONNECT localhost:$echo_port HTTP/1.1" "$OUT/tinyproxy.log" ||
  fail "tinyproxy-log: no 'CONNECT localhost:$echo_port' in it (log $OUT/tinyproxy.log)"
proxy_refused() { # NAME URL PROXY STATUS-REGEX: exit 1, the proxy's status line in the error
  local name=$1 url=$2 via=$3 want=$4 rc=0
  timeout 30 "$EX/blocking-echo-check" "$url" --proxy "$via" >"$OUT/$name.log" 2>&1 </dev/null || rc=$?
  if [[ $rc == 1 ]] && grep -Eq "^FAIL the proxy .* refused the tunnel .*: HTTP/1\.[01] $want" "$OUT/$name.log"; then
    pass "$name: $(grep -m1 FAIL "$OUT/$name.log" | sed 's/^FAIL //')"
  else
    fail "$name: exit $rc, expected 1 with the proxy's $want (log $OUT/$name.log)"
  fi
}
# tinyproxy answers a wrong password with 401 (not 407), a port outside ConnectPort with 403
proxy_refused tinyproxy-wrong-password "ws://127.0.0.1:$echo_plain_port/" "http://wsreactor:wrong@127.0.0.1:$proxy_port" "40[17]"
proxy_refused tinyproxy-port-not-allowed "ws://127.0.0.1:$proxy_port/" "http://wsreactor:s3cret-pw@127.0.0.1:$proxy_port" 403

fi
# --- result --------------------------------------------------------------------------
if ((${#failures[@]})); then
  echo "interop: ${#failures[@]} check(s) failed"
  exit 1
fi
echo "interop: all checks passed"
