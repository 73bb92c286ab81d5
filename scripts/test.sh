#!/usr/bin/env bash
# Runs every test of wsreactor, installing what is missing first.
#
#   scripts/test.sh            # everything: fmt, clippy, rustdoc, unit + integration tests (incl. the
#                              # proptest fuzz), Autobahn sections 1-7 and 10 against
#                              # echo-server, and the headless-Chromium test of the test page
#   SKIP_BROWSER=1 scripts/test.sh   # without the browser test
#
# Needs: cargo (rustup), python3 with venv (conformance), node/npm + Debian chromium
# (browser test; installed here with apt-get when missing). Network use: 127.0.0.1 only,
# plus package registries for the installs. Servers started here are stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${WSREACTOR_SHARED:-$ROOT/../shared}
ART=${ARTIFACTS:-$ROOT/artifacts}
mkdir -p "$ART"
step() { printf '\n==> %s\n' "$*"; }

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [[ -z "${SKIP_BROWSER:-}" ]]; then
  [[ -x /usr/bin/chromium ]] || need_apt+=(chromium)
  command -v npm >/dev/null || need_apt+=(nodejs npm)
fi
if ((${#need_apt[@]})); then
  step "apt-get install ${need_apt[*]}"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --check
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
step "cargo doc (rustdoc warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
step "cargo test (unit, integration over loopback, proptest fuzz, doc tests)"
cargo test --all-targets
cargo test --doc
step "build release examples"
cargo build --release --examples

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

if [[ -d "$SHARED/conformance" ]]; then
  step "Autobahn conformance, sections 1-7 and 10 (--fast), against echo-server"
  port=$(free_port)
  target/release/examples/echo-server --port "$port" --interface 127.0.0.1 >"$ART/echo-server.log" 2>&1 &
  pids+=($!)
  wait_port "$port"
  "$SHARED/conformance/run.sh" --fast -q -o "$ART/autobahn" "ws://127.0.0.1:$port"
  python3 - "$ART/autobahn/summary.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
c = d["counts"]
print("conformance:", c)
bad = c.get("FAILED", 0) + c.get("NON-STRICT", 0) + len(d.get("not_run") or [])
sys.exit(1 if bad else 0)
PY
else
  echo "!! $SHARED/conformance not found: conformance run skipped" >&2
  exit 1
fi

if [[ -z "${SKIP_BROWSER:-}" && -f examples/test-server.rs ]]; then
  step "browser test: headless Chromium drives www/test.html on test-server"
  ARTIFACTS="$ART" tests/browser/run.sh "$ROOT/target/release/examples/test-server" "$ROOT/www"
fi
step "all tests passed"
