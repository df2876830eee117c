#!/usr/bin/env bash
# Create (or reuse) the Python virtualenv the interop tests run AuthX and
# flask-jwt-extended from, and print its python's path as the LAST line of
# stdout (progress goes to stderr), so callers can do:
#
#     PY=$(scripts/python-env.sh | tail -n1)
#
# Idempotent: the venv at ${JWTGATE_PYENV:-target/pyenv} (relative paths are
# taken from the repo root) is reinstalled only when the hash of
# tests/python/requirements.txt + the interpreter version differs from the
# stamp written by the last successful install. Concurrent callers (parallel
# cargo tests) serialise on a lock file. Exits non-zero with a message on
# any failure.
#
# Environment:
#   JWTGATE_PYENV   venv directory (default target/pyenv)
#   JWTGATE_PYTHON  interpreter to build the venv from (default python3)
set -euo pipefail

die() { echo "python-env.sh: error: $*" >&2; exit 1; }
log() { echo "python-env.sh: $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REQ="$ROOT/tests/python/requirements.txt"
VENV=${JWTGATE_PYENV:-target/pyenv}
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
PY=${JWTGATE_PYTHON:-python3}

[ -f "$REQ" ] || die "missing $REQ"
command -v "$PY" >/dev/null 2>&1 || die "'$PY' not found on PATH (install Python 3.9+, e.g. apt-get install -y python3)"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' \
  || die "'$PY' is $("$PY" --version 2>&1); Python >= 3.9 is required"

mkdir -p "$(dirname "$VENV")"

# Serialise concurrent callers; flock is util-linux, present on Debian.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$VENV.lock"
  flock 9
fi

hash_of() {
  { cat "$REQ"; "$PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1
}
WANT=$(hash_of)
STAMP="$VENV/.jwtgate-requirements.sha256"
VPY="$VENV/bin/python"

if [ -x "$VPY" ] && "$VPY" -c 'import sys' >/dev/null 2>&1 \
   && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  log "up to date: $VENV"
  echo "$VPY"
  exit 0
fi

make_venv() { rm -rf "$VENV" && "$PY" -m venv "$VENV" >&2; }

if ! { [ -x "$VPY" ] && "$VPY" -m pip --version >/dev/null 2>&1; }; then
  log "creating venv at $VENV with $("$PY" --version 2>&1)"
  if ! make_venv; then
    # Debian's system python ships venv/ensurepip in a separate package.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      ver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
      log "'$PY -m venv' failed; installing python3-venv (python$ver-venv) with apt-get"
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv "python$ver-venv"; } >&2 \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2 \
        || die "apt-get install python3-venv failed"
      make_venv || die "'$PY -m venv $VENV' still fails after installing python3-venv"
    else
      die "'$PY -m venv $VENV' failed; install the venv module (Debian/Ubuntu: apt-get install python3-venv) and retry"
    fi
  fi
fi

rm -f "$STAMP"
log "installing $REQ"
"$VPY" -m pip install --disable-pip-version-check --no-input -q -r "$REQ" >&2 \
  || die "pip install -r $REQ failed (is PyPI reachable?)"
"$VPY" -m pip check --disable-pip-version-check >&2 || die "pip check reports broken requirements"
"$VPY" -c 'import authx, flask_jwt_extended, fastapi, flask, uvicorn, jwt, freezegun' \
  || die "installed venv cannot import the test libraries"
echo "$WANT" >"$STAMP"
log "ready: $VENV"
echo "$VPY"
