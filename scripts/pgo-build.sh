#!/usr/bin/env bash
# Profile-guided release build of jwtgate: rustc builds an instrumented
# binary (-Cprofile-generate), which serves a training mix in front of a
# real upstream; llvm-profdata merges the counts; rustc builds again with
# them (-Cprofile-use). The code is the same; LLVM lays it out and inlines
# by what the mix ran. BENCHMARKS.md has what it is worth.
#
#   scripts/pgo-build.sh [OUT]          release build, binary copied to OUT
#                                       (default: TARGET_DIR/pgo/jwtgate); ~10 min
#   scripts/pgo-build.sh --smoke OUT    the same pipeline on the dev profile with
#                                       a short mix (the test command runs it)
#
# The mix: bearer HS256, ES256 and RS256 access routes, an access cookie,
# requests with no token and with a forged one (401), POSTs with a 4 KiB
# body, and logins followed by implicit refreshes
# (one rotation and one redb commit each). The instrumented builds use their
# own target directories, so the normal release build is left alone.
#
# llvm-profdata must be the LLVM major version rustc was built with; it is
# taken from rustup's llvm-tools, or Debian's llvm-N (installed as root).
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
source "$COMPARE/common.sh"
need nginx wrk curl

HOST=$(rustc -vV | sed -n 's/^host: //p')
LLVM_MAJOR=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
PROFDATA="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
if [ ! -x "$PROFDATA" ]; then
  need "llvm-$LLVM_MAJOR"  # rustc's LLVM; or 'rustup component add llvm-tools'
  PROFDATA=$(command -v "llvm-profdata-$LLVM_MAJOR") ||
    { echo "pgo-build.sh: llvm-$LLVM_MAJOR did not provide llvm-profdata-$LLVM_MAJOR" >&2; exit 1; }
fi

TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
PROFILE=release
[ $SMOKE = 1 ] && PROFILE=dev
PROFILE_DIR=$([ $PROFILE = release ] && echo release || echo debug)
OUT=${1:-$TARGET_DIR/pgo/jwtgate}
WORK="$TARGET_DIR/pgo-work"
rm -rf "$WORK" && mkdir -p "$WORK/profiles"

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
"$INSTRUMENTED" keygen --alg ES256 --out "$WORK/es256" >/dev/null
"$INSTRUMENTED" keygen --alg RS256 --out "$WORK/rs256" >/dev/null
# Not called as $(gateway ...): a gateway started in that subshell would be
# neither stopped nor waited for, and its profile written after the merge.
gateway() { # gateway TEMPLATE NAME [KEY=VALUE...]: config rendered, gateway started; its port in PORT
  PORT=$(free_port)
  render "$COMPARE/$1" "$WORK/$2.toml" "PORT=$PORT" "NAME=$2" "${@:3}"
  "$INSTRUMENTED" run -c "$WORK/$2.toml" > "$WORK/$2.out" 2>&1 &
  PIDS+=($!)
  GATEWAYS+=($!)
  wait_port "$PORT"
}
stop_gateways() { # SIGTERM, and wait: a profile is written as its process exits
  for p in "${GATEWAYS[@]}"; do
    kill "$p"
    wait "$p" || { echo "pgo-build.sh: a training gateway exited with $? (log: $WORK/*.out)" >&2; exit 1; }
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
cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = string.rep("x", 4096)
wrk.headers["Content-Type"] = "application/octet-stream"
LUA

gateway jwtgate.toml hs256 "KEY=secret = \"$SECRET\""
HS=$PORT
TOKEN=$("$INSTRUMENTED" token mint -c "$WORK/hs256.toml" --sub training)
load "$HS" 200 -H "Authorization: Bearer $TOKEN"
load "$HS" 200 -H "Cookie: access_token_cookie=$TOKEN"
load "$HS" 200 -s "$WORK/post.lua" -H "Authorization: Bearer $TOKEN"
load "$HS" 401
load "$HS" 401 -H "Authorization: Bearer ${TOKEN%.*}.AAAA"
for alg in ES256 RS256; do
  name=$(tr '[:upper:]' '[:lower:]' <<<"$alg")
  gateway jwtgate.toml "$name" "KEY=algorithm = \"$alg\"
private_key = \"$WORK/$name/signing.pem\""
  load "$PORT" 200 -H "Authorization: Bearer $("$INSTRUMENTED" token mint -c "$WORK/$name.toml" --sub training)"
done

# Logins, then every request rotates (benches/compare/refresh.lua).
gateway jwtgate-refresh.toml refresh "SECRET=$SECRET"
logins "$PORT" $((CONNS + 1)) "$WORK/refresh.tokens"
load "$PORT" 200 -s "$COMPARE/refresh.lua" -- "$WORK/refresh.tokens"
stop_gateways

shopt -s nullglob
profiles=("$WORK"/profiles/*.profraw)
[ ${#profiles[@]} -gt 0 ] || { echo "pgo-build.sh: the instrumented gateways wrote no profile" >&2; exit 1; }
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
  { echo "pgo-build.sh: the merged profile counts no token verification: the mix did not run" >&2; exit 1; }

echo "pgo-build.sh: optimized build ($PROFILE)" >&2
BUILT=$(build pgo-use "-Cprofile-use=$MERGED")
mkdir -p "$(dirname "$OUT")"
cp "$BUILT" "$OUT"
"$OUT" --version > /dev/null
echo "$OUT"
