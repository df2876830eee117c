#!/usr/bin/env bash
# Profile-guided release build of jwtgate, then a BOLT post-link pass over it.
#
# PGO: rustc builds an instrumented binary (-Cprofile-generate), which serves
# a training mix in front of a real upstream; llvm-profdata merges the counts;
# rustc builds again with them (-Cprofile-use). The code is the same; LLVM
# lays it out and inlines by what the mix ran.
#
# BOLT (LLVM's post-link optimizer) then redoes the layout of the linked
# binary, across crates and std alike: hot basic blocks in a row (ext-tsp),
# hot functions next to their callers (cdsort), cold blocks and landing pads
# split out of the hot text, identical functions folded. Fewer i-cache and
# iTLB misses on the request path: mostly where the code sits changes.
# BOLT needs a profile of the binary it rewrites, and this VM has no hardware
# perf counters (no `perf record -b` / perf2bolt), so it is taken in
# instrumentation mode: `llvm-bolt -instrument` writes a counting copy, which
# serves the same training mix; its runtime writes one .fdata per process as
# it exits (a gateway exits cleanly on SIGTERM), merge-fdata merges them, and
# llvm-bolt rewrites the profile-use binary with them. That binary is linked
# with --emit-relocs, which BOLT needs to move functions.
# The result is checked: --version, and one authorized request served through
# it to the upstream. BENCHMARKS.md has what the profile-guided build is worth.
#
#   scripts/pgo-build.sh [OUT]          release build, binary copied to OUT
#                                       (default: TARGET_DIR/pgo/jwtgate); ~11 min
#                                       on 2 cores, of which BOLT's part (both
#                                       passes and its training) under 1 min
#   scripts/pgo-build.sh --smoke OUT    the same pipeline, BOLT included, on the
#                                       dev profile with a short mix (the test
#                                       command runs it); BOLT adds ~75 s
#
# The mix: bearer HS256, ES256 and RS256 access routes, an access cookie,
# requests with no token and with a forged one (401), POSTs with a 4 KiB
# body, and logins followed by implicit refreshes
# (one rotation and one redb commit each). The instrumented builds use their
# own target directories, so the normal release build is left alone.
#
# llvm-profdata must be the LLVM major version rustc was built with; it is
# taken from rustup's llvm-tools, or Debian's llvm-N (installed as root).
# BOLT reads machine code, not LLVM's profiles, so any version does: Debian's
# bolt-19 (llvm-bolt, merge-fdata) and libbolt-19-dev (the runtime that
# -instrument links in), installed as root; without them the script fails.
# Needs nginx (the upstream), wrk and curl, installed the same way.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
COMPARE="$ROOT/benches/compare"
SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
cd "$ROOT"
# The comparison's helpers: need, the upstream, ports, templates, logins.
# common.sh reads its templates from HERE.
HERE=$COMPARE
# shellcheck source=SCRIPTDIR/../benches/compare/common.sh
source "$COMPARE/common.sh"
need nginx wrk curl
fail() { echo "pgo-build.sh: $*" >&2; exit 1; }

HOST=$(rustc -vV | sed -n 's/^host: //p')
LLVM_MAJOR=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
PROFDATA="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
if [ ! -x "$PROFDATA" ]; then
  need "llvm-$LLVM_MAJOR"  # rustc's LLVM; or 'rustup component add llvm-tools'
  PROFDATA=$(command -v "llvm-profdata-$LLVM_MAJOR") ||
    fail "llvm-$LLVM_MAJOR did not provide llvm-profdata-$LLVM_MAJOR"
fi

# BOLT, looked for before the long builds. need() knows a package by its
# command, so it is called only for what is missing here. llvm-bolt takes
# its instrumentation runtime from ../lib beside its real path.
BOLT_V=19
first_exe() { local c; for c in "$@"; do command -v "$c" && return 0; done; return 1; }
bolt_tools() {
  LLVM_BOLT=$(first_exe "/usr/lib/llvm-$BOLT_V/bin/llvm-bolt" "llvm-bolt-$BOLT_V") &&
    MERGE_FDATA=$(first_exe "/usr/lib/llvm-$BOLT_V/bin/merge-fdata" "merge-fdata-$BOLT_V")
}
bolt_tools || need "bolt-$BOLT_V" || true  # the check below says what is missing
bolt_tools || fail "no llvm-bolt or merge-fdata: install Debian's bolt-$BOLT_V (apt-get install bolt-$BOLT_V)"
BOLT_RT="$(dirname "$(readlink -f "$LLVM_BOLT")")/../lib/libbolt_rt_instr.a"
[ -e "$BOLT_RT" ] || need "libbolt-$BOLT_V-dev" || true
[ -e "$BOLT_RT" ] ||
  fail "no BOLT instrumentation runtime ($BOLT_RT): install Debian's libbolt-$BOLT_V-dev (apt-get install libbolt-$BOLT_V-dev)"

TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
PROFILE=release
[ $SMOKE = 1 ] && PROFILE=dev
PROFILE_DIR=$([ $PROFILE = release ] && echo release || echo debug)
OUT=${1:-$TARGET_DIR/pgo/jwtgate}
WORK="$TARGET_DIR/pgo-work"
rm -rf "$WORK" && mkdir -p "$WORK/profiles" "$WORK/bolt"

# --target, even for the host: RUSTFLAGS then reach only the target's code,
# not build scripts or proc macros, whose runs would add profiles of their own.
build() { # build TARGET_SUBDIR RUSTFLAGS: the path of the binary built
  RUSTFLAGS="$2" cargo build --locked --profile "$PROFILE" --target "$HOST" \
    --target-dir "$TARGET_DIR/$1" --bin jwtgate >&2
  echo "$TARGET_DIR/$1/$HOST/$PROFILE_DIR/jwtgate"
}
echo "pgo-build.sh: instrumented build ($PROFILE)" >&2
INSTRUMENTED=$(build pgo-generate "-Cprofile-generate=$WORK/profiles")

# The training mix, in front of the comparison's upstream.
start_upstream
SECRET=training-secret-training-secret-0123456789
BIN=  # the jwtgate binary that gateway() starts
# Not called as $(gateway ...): a gateway started in that subshell would be
# neither stopped nor waited for, and its profile written after the merge.
gateway() { # gateway TEMPLATE NAME [KEY=VALUE...]: config rendered, $BIN started; its port in PORT
  PORT=$(free_port)
  render "$COMPARE/$1" "$WORK/$2.toml" "PORT=$PORT" "NAME=$2" "${@:3}"
  "$BIN" run -c "$WORK/$2.toml" > "$WORK/$2.out" 2>&1 &
  PIDS+=($!)
  GATEWAYS+=($!)
  wait_port "$PORT"
}
stop_gateways() { # SIGTERM, and wait: a profile is written as its process exits
  for p in "${GATEWAYS[@]}"; do
    kill "$p"
    wait "$p" || fail "a gateway exited with $? (log: $WORK/*.out)"
  done
  GATEWAYS=()
}
GATEWAYS=()
SECONDS_EACH=3; CONNS=16
[ $SMOKE = 1 ] && { SECONDS_EACH=1; CONNS=2; }
load() { # load PORT EXPECTED-STATUS [wrk options...] [-- script args...]: one phase of the mix
  local port=$1 expect=$2; shift 2
  local opts=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  local out; out=$(wrk -t1 -c"$CONNS" -d"${SECONDS_EACH}s" "${opts[@]}" "http://127.0.0.1:$port/api/x" "$@")
  if [ "$expect" = 200 ]; then
    ! grep -q "Non-2xx\|Socket errors" <<<"$out" ||
      { echo "pgo-build.sh: the training mix failed:" >&2; echo "$out" >&2; exit 1; }
  else
    grep -q "Non-2xx" <<<"$out" || { echo "pgo-build.sh: expected refusals, got none:" >&2; echo "$out" >&2; exit 1; }
  fi
}

# train BINARY DIR: the whole mix served by BINARY (every command it runs is
# a profiled process too); keys, configs, stores and logs in DIR, fresh.
# WORK is DIR for the mix: render() and gateway() write under $WORK.
train() {
  BIN=$1
  local WORK=$2
  mkdir -p "$WORK"
  cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = string.rep("x", 4096)
wrk.headers["Content-Type"] = "application/octet-stream"
LUA
  "$BIN" keygen --alg ES256 --out "$WORK/es256" >/dev/null
  "$BIN" keygen --alg RS256 --out "$WORK/rs256" >/dev/null

  gateway jwtgate.toml hs256 "KEY=secret = \"$SECRET\""
  local hs=$PORT token
  token=$("$BIN" token mint -c "$WORK/hs256.toml" --sub training)
  load "$hs" 200 -H "Authorization: Bearer $token"
  load "$hs" 200 -H "Cookie: access_token_cookie=$token"
  load "$hs" 200 -s "$WORK/post.lua" -H "Authorization: Bearer $token"
  load "$hs" 401
  load "$hs" 401 -H "Authorization: Bearer ${token%.*}.AAAA"
  local alg name
  for alg in ES256 RS256; do
    name=$(tr '[:upper:]' '[:lower:]' <<<"$alg")
    gateway jwtgate.toml "$name" "KEY=algorithm = \"$alg\"
private_key = \"$WORK/$name/signing.pem\""
    load "$PORT" 200 -H "Authorization: Bearer $("$BIN" token mint -c "$WORK/$name.toml" --sub training)"
  done

  # Logins, then every request rotates (benches/compare/refresh.lua).
  gateway jwtgate-refresh.toml refresh "SECRET=$SECRET"
  logins "$PORT" $((CONNS + 1)) "$WORK/refresh.tokens"
  load "$PORT" 200 -s "$COMPARE/refresh.lua" -- "$WORK/refresh.tokens"
  stop_gateways
}
train "$INSTRUMENTED" "$WORK/train-pgo"

shopt -s nullglob
profiles=("$WORK"/profiles/*.profraw)
[ ${#profiles[@]} -gt 0 ] || fail "the instrumented gateways wrote no profile"
"$PROFDATA" merge -o "$WORK/merged.profdata" "${profiles[@]}"
# Named by content: cargo tracks RUSTFLAGS, not the file they name, so a new
# profile at an old path would leave a build made with the old one.
mkdir -p "$TARGET_DIR/pgo-profiles"
MERGED="$TARGET_DIR/pgo-profiles/$(sha256sum "$WORK/merged.profdata" | cut -c1-16).profdata"
mv "$WORK/merged.profdata" "$MERGED"
# Every profile is new RUSTFLAGS, which cargo hashes into every artifact's
# name (build script outputs too): no earlier profile-use build is ever used
# again, and each stayed (~0.7 GB a release run, ~0.6 GB a smoke run). Those,
# and the profiles they were built with, go; the host's build scripts and
# proc macros (pgo-use/$PROFILE_DIR, no RUSTFLAGS) are kept.
find "$TARGET_DIR/pgo-profiles" -name '*.profdata' ! -path "$MERGED" -delete
rm -rf "${TARGET_DIR:?}/pgo-use/$HOST/$PROFILE_DIR"
"$PROFDATA" show --all-functions "$MERGED" > "$WORK/functions.txt"
grep -q Verifier "$WORK/functions.txt" ||
  fail "the merged profile counts no token verification: the mix did not run"

# --emit-relocs keeps the link's relocations in the binary: without them
# BOLT can reorder blocks only inside each function, not move functions.
# The smoke build keeps the dev profile's debug info: llvm-bolt drops it
# from what it writes (a warning says so; -update-debug-sections would
# rewrite it), at ~10% of BOLT's time (instrumenting the 320 MB dev binary:
# 55 s, 49 s stripped). BOLT's time there is the 25 MB of unoptimized code.
USE_FLAGS="-Cprofile-use=$MERGED -Clink-arg=-Wl,--emit-relocs"
echo "pgo-build.sh: optimized build ($PROFILE)" >&2
BUILT=$(build pgo-use "$USE_FLAGS")
"$BUILT" --version > /dev/null

# BOLT: an instrumented copy serves the same mix; one profile per process.
echo "pgo-build.sh: BOLT: instrumenting, training" >&2
# Its warnings are expected (~20 each run): aws-lc's hand-written assembly
# (FDE conflicts, entries it cannot patch, symbol sizes) is left as it is,
# and a dev binary's debug info is dropped.
bolt() { # bolt LOG ARGS...: llvm-bolt, its output in $WORK/bolt/LOG
  local log="$WORK/bolt/$1"; shift
  "$LLVM_BOLT" "$@" > "$log" 2>&1 || { tail -n 30 "$log" >&2; fail "llvm-bolt failed (log: $log)"; }
  echo "pgo-build.sh: llvm-bolt: $(grep -c BOLT-WARNING "$log") warnings (log: $log)" >&2
}
bolt instrument.log "$BUILT" -instrument -o "$WORK/bolt/jwtgate.inst" \
  --instrumentation-file="$WORK/bolt/prof" --instrumentation-file-append-pid
train "$WORK/bolt/jwtgate.inst" "$WORK/train-bolt"
fdata=("$WORK"/bolt/prof*.fdata)
[ ${#fdata[@]} -gt 0 ] || fail "the BOLT-instrumented gateways wrote no profile"
"$MERGE_FDATA" -o "$WORK/bolt/merged.fdata" "${fdata[@]}" 2> "$WORK/bolt/merge.log" ||
  { cat "$WORK/bolt/merge.log" >&2; fail "merge-fdata failed"; }
grep -q Verifier "$WORK/bolt/merged.fdata" ||
  fail "the BOLT profile counts no token verification: the mix did not run"

echo "pgo-build.sh: BOLT: optimizing" >&2
bolt optimize.log "$BUILT" -o "$WORK/bolt/jwtgate" -data="$WORK/bolt/merged.fdata" \
  -reorder-blocks=ext-tsp -reorder-functions=cdsort -split-functions -split-all-cold \
  -split-eh -icf=1 -use-gnu-stack
grep 'non-empty execution profile\|basic block reordering modified' "$WORK/bolt/optimize.log" |
  sed 's/^BOLT-INFO/pgo-build.sh: llvm-bolt/' >&2 || true

# The check: it starts, and it serves one authorized request to the upstream.
"$WORK/bolt/jwtgate" --version > /dev/null || fail "the BOLT-optimized binary does not run (--version)"
check() {
  BIN=$1
  local WORK=$2
  mkdir -p "$WORK"
  gateway jwtgate.toml hs256 "KEY=secret = \"$SECRET\""
  local token status
  token=$("$BIN" token mint -c "$WORK/hs256.toml" --sub check)
  status=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$PORT/api/x") || true
  [ "$status" = 200 ] || fail "the BOLT-optimized binary does not serve: HTTP $status for an authorized request (log: $WORK/hs256.out)"
  stop_gateways
}
check "$WORK/bolt/jwtgate" "$WORK/check"

mkdir -p "$(dirname "$OUT")"
cp "$WORK/bolt/jwtgate" "$OUT"
echo "$OUT"
