#!/usr/bin/env bash
# wsreactor vs peers, one command, on the shared harness (../shared/bench/run.sh).
#
#   bench/compare.sh                                  # l a b c d e (+ static if test-server exists), 3 reps x 5 s
#   bench/compare.sh --quick                          # smoke test: 1 rep x 2 s, 2000 idle conns
#   bench/compare.sh --reps 3 --dur 5 --scenarios "l a b c d e"
#   bench/compare.sh --scenarios e --idle-n 10000     # RSS per idle connection only
#   bench/compare.sh --peers "tungstenite-mio fastwebsockets"   # override the peer list
#   bench/compare.sh --tls                            # TLS: tb tc td te against the TLS peers
#                                                     # (wsreactor-tls = echo-server --cert --key)
#   bench/compare.sh --rev HEAD                       # benchmark a committed revision instead of
#                                                     # the working tree (exported with `git archive`
#                                                     # to /tmp/wsreactor-src-REV and built there, so a
#                                                     # half-edited tree does not get in the way)
#
# What it does:
#   1. installs missing system packages (libwebsockets-dev wrk nginx; needs root or sudo),
#      non-interactively; skipped when everything is present;
#   2. builds the release examples: echo-server, and test-server if examples/test-server.rs
#      exists (it is then also run as the static-file server, `--resource-path {WWW}`);
#   3. runs run.sh with wsreactor plus the peers, results to /tmp/wsreactor-vs-peers.md
#      (override with --results FILE). The harness itself builds wsload and the peers into
#      /tmp/wsbench on the first run (a few minutes); later runs pass --no-build
#      automatically when wsload and the Rust peers already exist (force with --build).
#
# Every other option is passed through to run.sh: --quick --reps N --dur S --scenarios
# "LIST" --idle-n N --idle-hold S --no-build --results FILE. The harness is read-only;
# everything it writes goes under /tmp (WSBENCH_BUILD, default /tmp/wsbench).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$(cd "$ROOT/../shared/bench" && pwd) || { echo "no ../shared/bench next to $ROOT" >&2; exit 1; }
BUILD=${WSBENCH_BUILD:-/tmp/wsbench}

PEERS="wsreactor tungstenite-mio fastwebsockets lws-bigbuf tokio-tungstenite"
RESULTS=/tmp/wsreactor-vs-peers.md
SCEN=""
FORCE_BUILD=0
REV=""
TLS=0
PASS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --peers) PEERS=$2; shift ;;
    --results) RESULTS=$2; shift ;;
    --scenarios) SCEN=$2; shift ;;
    --build) FORCE_BUILD=1 ;;
    --rev) REV=$2; shift ;;
    --tls) TLS=1 ;;
    --reps|--dur|--idle-n|--idle-hold) PASS+=("$1" "$2"); shift ;;
    --quick|--no-build) PASS+=("$1") ;;
    -h|--help) sed -n 2,26p "$0"; exit 0 ;;
    *) echo "compare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# ---- 1. system packages (only what is missing)
missing=()
pkg-config --exists libwebsockets 2>/dev/null || missing+=(libwebsockets-dev)
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v taskset >/dev/null || missing+=(util-linux)
command -v ss >/dev/null || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  echo "compare.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || echo "compare.sh: apt-get install failed; run.sh skips what it cannot use" >&2
fi

# ---- 2. build our servers
if [ -n "$REV" ]; then
  sha=$(git -C "$ROOT" rev-parse --short "$REV^{commit}")
  SRC=/tmp/wsreactor-src-$sha
  if [ ! -f "$SRC/Cargo.toml" ]; then
    mkdir -p "$SRC"
    git -C "$ROOT" archive "$sha" | tar -x -C "$SRC"
  fi
  echo "compare.sh: benchmarking $REV ($sha) from $SRC" >&2
  ROOT=$SRC
fi
cd "$ROOT"
EX=(--example echo-server)
HAVE_TS=0
if [ -f examples/test-server.rs ]; then EX+=(--example test-server); HAVE_TS=1; fi
cargo build --release "${EX[@]}"

SERVERS=(--server "wsreactor=$ROOT/target/release/examples/echo-server --port {PORT} --interface 127.0.0.1")
if [ $TLS = 1 ]; then
  SERVERS=(--server "wsreactor-tls=$ROOT/target/release/examples/echo-server --port {PORT} --interface 127.0.0.1 --cert {CERT} --key {KEY}")
  [ "$PEERS" = "wsreactor tungstenite-mio fastwebsockets lws-bigbuf tokio-tungstenite" ] \
    && PEERS="wsreactor-tls tokio-tungstenite-tls lws-tls node-ws-tls"
  [ -z "$SCEN" ] && SCEN="tb tc td te"
  [ "$RESULTS" = /tmp/wsreactor-vs-peers.md ] && RESULTS=/tmp/wsreactor-vs-peers-tls.md
fi
if [ "$HAVE_TS" = 1 ]; then
  # not in --peers: run.sh only uses it for the static-file scenario ({WWW} in the command).
  # -d 3 (warnings only): no log line per request, as nginx runs with access_log off.
  SERVERS+=(--server "wsreactor-http=$ROOT/target/release/examples/test-server --port {PORT} --interface 127.0.0.1 --resource-path {WWW} -d 3")
fi
if [ -z "$SCEN" ]; then
  SCEN="l a b c d e"
  [ "$HAVE_TS" = 1 ] && SCEN="$SCEN static"
fi

# ---- 3. run (run.sh builds wsload + peers into $BUILD unless they exist already)
have_no_build=0
for a in "${PASS[@]:-}"; do [ "$a" = --no-build ] && have_no_build=1; done
if [ "$FORCE_BUILD" = 0 ] && [ "$have_no_build" = 0 ] \
   && [ -x "$BUILD/target/release/wsload" ] && [ -x "$BUILD/target/release/tungstenite-mio-echo" ] \
   && [ -x "$BUILD/target/release/fastwebsockets-echo" ] && [ -x "$BUILD/target/release/tokio-tungstenite-echo" ] \
   && { [ -x "$BUILD/lws-echo" ] || ! pkg-config --exists libwebsockets 2>/dev/null; }; then
  PASS+=(--no-build)
fi

exec "$BENCH/run.sh" "${SERVERS[@]}" --peers "$PEERS" --scenarios "$SCEN" --results "$RESULTS" "${PASS[@]}"
