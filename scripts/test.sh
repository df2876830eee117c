#!/usr/bin/env bash
# The test command (README "Testing"). Installs what the suites need on a
# fresh Debian machine, then runs every test. A missing dependency fails the
# run with a message saying what to install; nothing is skipped silently.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root_apt() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    if [ ! -f /var/lib/apt/lists/.jwtgate-updated ]; then
      apt-get update -qq && touch /var/lib/apt/lists/.jwtgate-updated
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "test.sh: please install: $*" >&2
    exit 1
  fi
}

# Python: AuthX and flask-jwt-extended mint and check real tokens in the
# compatibility suites.
command -v python3 >/dev/null || need_root_apt python3 python3-venv
JWTGATE_PYTHON="$(bash scripts/python-env.sh | tail -n 1)"
export JWTGATE_PYTHON

# redis-server: the redis store's conformance suite, tests/redis_multi.rs and
# tests/redis_tls.rs start private servers on free loopback ports (no
# persistence; redis_tls needs TLS support, which Debian's package has).
command -v redis-server >/dev/null || need_root_apt redis-server

# curl: tests/ops_tls.rs checks HTTP/2 over TLS with a real client.
command -v curl >/dev/null || need_root_apt curl

"$JWTGATE_PYTHON" tests/python/selftest.py
cargo test --all-targets --locked

# Real browser: Debian's chromium driven by Playwright (Python) through
# `jwtgate demo` (tests/browser/demo_flow.py). browser-env.sh installs both
# and prints the paths; the assignment (not eval "$(...)") keeps its failure
# fatal under set -e.
BROWSER_ENV=$(bash scripts/browser-env.sh)
eval "$BROWSER_ENV"
cargo build --locked --bin jwtgate
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps --locked \
  | "$JWTGATE_PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
"$JWTGATE_PYTHON" tests/browser/demo_flow.py "$TARGET_DIR/debug/jwtgate"

# The peer comparison's jwtgate part, briefly, so the script does not rot
# (the full comparison is `bash benches/compare/run.sh`, not a test).
bash benches/compare/run.sh --smoke

# The profile-guided build (scripts/pgo-build.sh) end to end, on the dev
# profile with a short training mix, so it does not rot either.
bash scripts/pgo-build.sh --smoke "$TARGET_DIR/pgo-smoke/jwtgate" > /dev/null
