#!/usr/bin/env bash
# Make sure the real-browser test (tests/browser/demo_flow.py) can run, and
# print what it needs as shell assignments on stdout (progress on stderr):
#
#     ENV=$(bash scripts/browser-env.sh) && eval "$ENV"
#     "$JWTGATE_PYTHON" tests/browser/demo_flow.py target/debug/jwtgate
#
# - Chromium: Debian's `chromium` package. `playwright install` cannot
#   download browsers on a closed network, so the test drives the system
#   browser through Playwright's executable_path. Installed with apt-get when
#   /usr/bin/chromium is missing (root only; otherwise exit 1 saying so).
# - Playwright: the Python client, pinned in tests/python/requirements.txt and
#   installed into the venv by scripts/python-env.sh.
#
# Idempotent: a second run installs nothing. Exits non-zero with a message on
# any failure; nothing is skipped.
#
# Environment:
#   JWTGATE_CHROMIUM  browser binary to use (default /usr/bin/chromium)
set -euo pipefail

die() { echo "browser-env.sh: error: $*" >&2; exit 1; }
log() { echo "browser-env.sh: $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHROMIUM=${JWTGATE_CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$CHROMIUM" ]; then
  if [ "$CHROMIUM" != /usr/bin/chromium ]; then
    die "JWTGATE_CHROMIUM=$CHROMIUM is not an executable file"
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "$CHROMIUM is missing: install chromium (Debian: apt-get install -y chromium) and retry"
  fi
  # The same once-per-machine stamp scripts/test.sh uses for apt-get update.
  if [ ! -f /var/lib/apt/lists/.jwtgate-updated ]; then
    log "apt-get update"
    apt-get update -qq >&2 && touch /var/lib/apt/lists/.jwtgate-updated \
      || die "apt-get update failed (is the Debian mirror reachable?)"
  fi
  log "installing chromium with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2 \
    || die "apt-get install chromium failed"
  [ -x "$CHROMIUM" ] || die "apt-get installed chromium but $CHROMIUM is still missing"
fi
# The Debian wrapper script prints a harmless shell warning on stderr; the
# version line on stdout is what proves the binary loads.
VERSION=$("$CHROMIUM" --version 2>/dev/null) || die "$CHROMIUM --version failed: the browser does not start"
case "$VERSION" in
  Chromium*|*Chrome*) log "browser: $VERSION" ;;
  *) die "$CHROMIUM --version printed '$VERSION', not a Chromium version" ;;
esac

PY=$(bash "$ROOT/scripts/python-env.sh" | tail -n 1) || die "scripts/python-env.sh failed"
[ -x "$PY" ] || die "scripts/python-env.sh printed '$PY', not an interpreter"
PW=$("$PY" -c 'import playwright.sync_api, importlib.metadata as m; print(m.version("playwright"))') \
  || die "the venv at $PY cannot import playwright: is it pinned in tests/python/requirements.txt?"
log "playwright (python) $PW"

printf 'export JWTGATE_PYTHON=%q\n' "$PY"
printf 'export JWTGATE_CHROMIUM=%q\n' "$CHROMIUM"
